"""The demo trainer: reaches the bar on digits, is deterministic, resumes exactly, fails clearly, no torch."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from p01_autodiff.config import Config
from p01_autodiff.train import train

BIN = Path(sys.executable).parent


def _run(args, env=None, **kw):
    return subprocess.run(args, capture_output=True, text=True, env={**os.environ, **(env or {})}, **kw)


def test_quick_demo_passes_095_on_digits_and_never_imports_torch(tmp_path):
    code = ("import sys; from p01_autodiff.cli import main; main(['--preset', 'quick', '--run-dir', sys.argv[1]]); "
            "print('torch imported:', 'torch' in sys.modules)")
    out = _run([sys.executable, "-c", code, str(tmp_path / "run")])
    assert out.returncode == 0, out.stderr
    assert "torch imported: False" in out.stdout
    assert out.stdout.count("loss: ") == 10
    result = json.loads((tmp_path / "run" / "results.json").read_text())
    assert result["test_accuracy"] >= 0.95, result
    for name in ("config.json", "metrics.jsonl", "loss.png", "report.md", "confusion.png"):
        assert (tmp_path / "run" / name).is_file(), name
    assert "logistic regression" in (tmp_path / "run" / "report.md").read_text()


def _tiny(**kw):
    return Config(**{"hidden": [16], "epochs": 2, "batch_size": 64, **kw})


def test_same_seed_same_losses(tmp_path):
    a = train(_tiny(), run_dir=tmp_path / "a", quiet=True)
    b = train(_tiny(), run_dir=tmp_path / "b", quiet=True)
    c = train(_tiny(seed=1), run_dir=tmp_path / "c", quiet=True)
    assert a["losses"] == b["losses"]
    assert a["losses"] != c["losses"]
    np.testing.assert_array_equal(a["model"].layers[0].weight.data, b["model"].layers[0].weight.data)


def test_resume_continues_exactly(tmp_path):
    full = train(_tiny(epochs=3), run_dir=tmp_path / "full", quiet=True)
    train(_tiny(epochs=1), run_dir=tmp_path / "cut", quiet=True)
    resumed = train(_tiny(epochs=3), run_dir=tmp_path / "cut", resume=True, quiet=True)
    assert resumed["losses"] == full["losses"][1:]
    rows = [json.loads(line) for line in (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    for p, q in zip(full["model"].parameters(), resumed["model"].parameters()):
        np.testing.assert_array_equal(p.data, q.data)


def test_spiral_draws_a_decision_boundary(tmp_path):
    out = _run([str(BIN / "run_autodiff_demo"), "--dataset", "spiral", "--n-points", "300", "--epochs", "3",
                "--hidden", "16", "--run-dir", str(tmp_path / "s")])
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "s" / "decision_boundary.png").stat().st_size > 5000
    assert "test_accuracy:" in out.stdout and "baseline_logreg:" in out.stdout


def test_help_lists_the_flags_without_loading_sklearn():
    """--help stays fast by what it does not import (scikit-learn, for the baseline), not by a timed assertion."""
    out = _run([str(BIN / "run_autodiff_demo"), "--help"])
    assert out.returncode == 0 and "--dataset" in out.stdout and "--resume" in out.stdout
    code = ("import sys, contextlib, io\nfrom p01_autodiff.cli import main\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n    main(['--help'])\n"
            "print('sklearn' in sys.modules)")
    assert _run([sys.executable, "-c", code]).stdout.strip() == "False"


def test_bad_inputs_exit_2_with_one_line(tmp_path):
    cases = [["--dataset", "cifar"], ["--lr", "-1"], ["--hidden", "0"], ["--device", "cuda"], ["--preset", "huge"],
             ["--epochs", "two"], ["--resume", str(tmp_path / "nope")]]
    for args in cases:
        out = _run([str(BIN / "run_autodiff_demo"), *args])
        assert out.returncode == 2, (args, out.stderr)
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), (args, out.stderr)


def test_cli_resume_matches_an_uninterrupted_run(tmp_path):
    cli = [str(BIN / "run_autodiff_demo"), "--hidden", "16", "--batch-size", "64"]
    assert _run([*cli, "--epochs", "3", "--run-dir", str(tmp_path / "full")]).returncode == 0
    assert _run([*cli, "--epochs", "1", "--run-dir", str(tmp_path / "cut")]).returncode == 0
    out = _run([str(BIN / "run_autodiff_demo"), "--resume", str(tmp_path / "cut"), "--epochs", "3"])
    assert out.returncode == 0, out.stderr
    assert "resumed from epoch 1" in out.stdout

    def losses(name):
        return [json.loads(line)["loss"] for line in (tmp_path / name / "metrics.jsonl").read_text().splitlines()]

    assert losses("cut") == losses("full")
    assert json.loads((tmp_path / "cut" / "config.json").read_text())["hidden"] == [16]
