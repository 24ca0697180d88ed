import subprocess
import sys

import pytest

from p04_rnn.evaluate import load_run
from p04_rnn.generate import filter_logits, generate


def run_cli(*args):
    code = "import sys; from p04_rnn.cli import generate_main; sys.exit(generate_main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_seeded_generation_is_deterministic(tiny_run):
    model, vocab, _ = load_run(tiny_run)
    a = generate(model, vocab, "ROMEO.\n", 80, temperature=1.0, top_p=0.95, seed=3)
    b = generate(model, vocab, "ROMEO.\n", 80, temperature=1.0, top_p=0.95, seed=3)
    c = generate(model, vocab, "ROMEO.\n", 80, temperature=1.0, top_p=0.95, seed=4)
    assert a == b and a != c and a.startswith("ROMEO.\n") and len(a) == 87


def test_top_k_and_top_p_filters():
    import torch

    logits = torch.log(torch.tensor([0.5, 0.3, 0.15, 0.05]))
    assert torch.isinf(filter_logits(logits, top_k=2)).tolist() == [False, False, True, True]
    assert torch.isinf(filter_logits(logits, top_p=0.75)).tolist() == [False, False, True, True]
    assert torch.isinf(filter_logits(logits, top_p=0.79)).tolist() == [False, False, True, True]
    assert torch.isinf(filter_logits(logits, top_p=0.85)).tolist() == [False, False, False, True]
    assert torch.isinf(filter_logits(logits, top_p=0.1)).tolist() == [False, True, True, True]
    assert not torch.isinf(filter_logits(logits, temperature=0.5)).any()


def test_cli_generates(tiny_run):
    out = run_cli(str(tiny_run), "--seed-text", "Once upon", "--length", "40", "--top-k", "20", "--seed", "1")
    assert out.returncode == 0, out.stderr
    assert "seed: 'Once upon'" in out.stdout and "\nOnce upon" in out.stdout


@pytest.mark.parametrize("args, message", [
    (["--temperature", "0"], "--temperature"),
    (["--temperature", "-1"], "--temperature"),
    (["--seed-text", ""], "--seed-text is empty"),
    (["--seed-text", "caf\u00e9 \u00fc"], "not in the training vocabulary"),
    (["--top-p", "0"], "--top-p"),
])
def test_cli_bad_input_is_one_line_exit_2(tiny_run, args, message):
    out = run_cli(str(tiny_run), *args)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], out.stderr


def test_cli_missing_run_dir(tmp_path):
    out = run_cli(str(tmp_path / "nope"))
    assert out.returncode == 2 and "vocab.json" in out.stderr and len(out.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [(["--lr", "-1"], "--lr"), (["--cell", "transformer"], "--cell"),
                                           (["--resume", "/nonexistent/run"], "not a run directory")])
def test_train_cli_bad_input_is_one_line_exit_2(args, message):
    code = "import sys; from p04_rnn.cli import train_main; sys.exit(train_main(sys.argv[1:]))"
    out = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], out.stderr
