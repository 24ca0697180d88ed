"""End to end on real data with a tiny config: train -> run dir, tokenizer, checkpoints, report, bundle;
resume == uninterrupted; the CLIs' clear errors (one stderr line, exit 2) and documented input handling."""

import json
import os
import subprocess
import sys

import pytest
import torch

from dlm_core.bundle import verify_bundle
from p05_transformer import data as D
from p05_transformer.config import TransformerConfig
from p05_transformer.train import train

TINY = dict(train_limit=200, vocab_size=300, d_model=32, heads=2, enc_layers=1, dec_layers=1, d_ff=64, max_len=40,
            epochs=2, warmup_steps=5, val_sentences=5, test_sentences=5, beam=2, batch_size=32, seed=3,
            attention_samples=1)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    os.environ["DLM_ARTIFACTS"] = str(tmp_path_factory.mktemp("artifacts"))
    run = tmp_path_factory.mktemp("runs") / "tiny"
    res = train(TransformerConfig(**TINY), run_dir=run)
    return run, res


def _cli(name, *args, env_extra=None):
    code = f"import sys; from p05_transformer.cli import {name}; sys.exit({name}(sys.argv[1:]))"
    env = {**os.environ, "DLM_THREADS": "1", **(env_extra or {})}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=300)


def test_training_writes_the_run_and_a_verified_bundle(tiny_run):
    run, res = tiny_run
    for f in ("config.json", "metrics.jsonl", "tokenizer.json", "report.md", "loss.png", "attention_0.png",
              "results.json", "checkpoints/best.pt"):
        assert (run / f).is_file(), f
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2] and rows[1]["train_loss"] < rows[0]["train_loss"]
    assert set(res["baselines"]) == {"copy_source", "ibm_model1"} and 0 <= res["test_chrf"] <= 100
    assert verify_bundle(res["bundle"]) == []


def test_bundle_translates_100_held_out_sentences_like_torch(tiny_run):
    from dlm_core.predictors import load_predictor
    from p05_transformer.decode import translate_ids
    from p05_transformer.evaluate import load_run

    run, res = tiny_run
    pred = load_predictor(res["bundle"])
    assert pred.self_check() <= 1e-4 and pred.manifest["postprocess"]["beam"] == TINY["beam"]
    model, tok, cfg, _ = load_run(run)
    _, _, test = D.load_pairs(cfg)
    english = [en for en, _ in test if len(D.encode(tok, en)) <= cfg.max_len][:100]
    want = translate_ids(model, [D.encode(tok, en) for en in english], cfg.max_len + 1, beam=cfg.beam,
                         alpha=cfg.length_alpha, no_repeat_ngram=cfg.no_repeat_ngram)
    got = pred.predict(english)
    assert [r["translation"] for r in got] == [D.decode(tok, w) for w in want]
    one = pred.predict(english[:1])  # batch of one == that row of the batch
    assert one[0] == got[0]


def test_resume_equals_uninterrupted(tiny_run, tmp_path):
    run, _ = tiny_run
    cfg = TransformerConfig(**{**TINY, "export": False})
    part = tmp_path / "part"
    train(TransformerConfig(**{**TINY, "export": False, "epochs": 1}), run_dir=part)
    train(cfg, run_dir=part, resume=True)
    a = torch.load(run / "checkpoints" / "epoch-2.pt", weights_only=True)["model"]
    b = torch.load(part / "checkpoints" / "epoch-2.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_budget_is_epochs_and_the_wall_clock_safety_net_marks_a_run_incomplete(tiny_run, tmp_path):
    assert TransformerConfig().max_minutes == 0  # the default result must not depend on the machine's load
    assert tiny_run[1]["complete"] is True and tiny_run[1]["epochs_run"] == TINY["epochs"]
    cut = train(TransformerConfig(**{**TINY, "export": False, "max_minutes": 1e-6}), run_dir=tmp_path / "cut")
    assert cut["complete"] is False and cut["epochs_run"] == 1
    assert "**Incomplete run**" in (tmp_path / "cut" / "report.md").read_text()


def test_translate_cli_output_attention_and_clear_errors(tiny_run, tmp_path):
    run, _ = tiny_run
    png = tmp_path / "att.png"
    ok = _cli("translate_main", "God is love.", "x ☃ y", "--run", str(run), "--beam", "2", "--attention", str(png))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count("input: ") == 2 and png.stat().st_size > 1000  # unknown characters become <unk>
    for args, needle in ((["  "], "empty input"), (["word " * 60], "at most 40"),
                         (["x", "--run", str(tmp_path)], "not a run directory")):
        bad = _cli("translate_main", *args, "--run", str(run)) if "--run" not in args else _cli("translate_main", *args)
        assert bad.returncode == 2 and needle in bad.stderr, bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1 and "Traceback" not in bad.stderr


def test_evaluate_cli_scores_the_test_split(tiny_run):
    run, _ = tiny_run
    out = _cli("evaluate_main", str(run), "--limit", "5", "--beam", "1")
    assert out.returncode == 0, out.stderr
    assert "bleu:" in out.stdout and "ibm_model1_bleu:" in out.stdout
    assert (run / "evaluate_test_beam1_alpha1.5_norepeat4.json").is_file()  # the config's decoding
    # decoding settings are chosen on validation: --split val scores val pairs, never test
    out = _cli("evaluate_main", str(run), "--limit", "5", "--beam", "2", "--length-alpha", "2",
               "--no-repeat-ngram", "3", "--split", "val")
    assert out.returncode == 0 and "val pairs: 5" in out.stdout, out.stderr
    res = json.loads((run / "evaluate_val_beam2_alpha2_norepeat3.json").read_text())
    assert res["config"]["length_alpha"] == 2 and res["config"]["no_repeat_ngram"] == 3
    _, val, test = D.load_pairs(TransformerConfig())
    assert [e["en"] for e in res["examples"]] == [en for en, _ in val[:5]] != [en for en, _ in test[:5]]


def test_export_cli_and_translate_from_the_bundle(tiny_run, tmp_path):
    run, res = tiny_run
    env = {"DLM_ARTIFACTS": str(tmp_path)}
    out = _cli("export_main", str(run), "--name", "tr", "--version", "v1", env_extra=env)
    assert out.returncode == 0, out.stderr
    again = _cli("export_main", str(run), "--name", "tr", "--version", "v1", env_extra=env)
    assert again.returncode == 2 and "already exists" in again.stderr
    from_bundle = _cli("translate_main", "God is love.", "--bundle", str(tmp_path / "tr" / "v1"))
    from_run = _cli("translate_main", "God is love.", "--run", str(run), "--beam", str(TINY["beam"]))
    assert from_bundle.returncode == 0, from_bundle.stderr
    assert from_bundle.stdout == from_run.stdout
    bad = _cli("translate_main", "word " * 60, "--bundle", str(tmp_path / "tr" / "v1"))
    assert bad.returncode == 2 and "at most 40" in bad.stderr


def test_checkpoint_averaging_serves_the_mean_of_the_last_k_epochs(tmp_path):
    from p05_transformer.evaluate import load_run

    run = tmp_path / "avg"
    res = train(TransformerConfig(**{**TINY, "epochs": 3, "average_last": 2, "export": False}), run_dir=run)
    ckpts = run / "checkpoints"
    assert res["complete"] and (ckpts / "averaged.pt").is_file()
    e2, e3 = (torch.load(ckpts / f"epoch-{e}.pt", weights_only=True)["model"] for e in (2, 3))
    assert not (ckpts / "epoch-1.pt").exists()  # keeps exactly the K it averages
    model, _, cfg, _ = load_run(run)  # the run's own final model: the mean, not the best epoch
    assert cfg.average_last == 2
    got = model.state_dict()
    assert any(not torch.equal(e2[k], e3[k]) for k in e3)
    assert all(torch.allclose(got[k], (e2[k] + e3[k]) / 2, atol=1e-6) for k in e3)
    best, _, _, _ = load_run(run, average_last=1)  # what --average-last 1 scores: the best epoch's weights
    best_state = torch.load(ckpts / "best.pt", weights_only=True)["model"]
    assert all(torch.equal(best.state_dict()[k], best_state[k]) for k in best_state)
    ok = _cli("evaluate_main", str(run), "--average-last", "2", "--limit", "3", "--split", "val", "--beam", "1",
              "--model-only")
    assert ok.returncode == 0 and "mean of the last 2 epochs" in ok.stdout, ok.stderr
    res = json.loads((run / "evaluate_val_beam1_alpha1.5_norepeat4_avg2.json").read_text())
    assert res["average_last"] == 2 and res["test_size"] == 3 and "baselines" not in res
    too_many = _cli("evaluate_main", str(run), "--average-last", "3", "--limit", "2", "--split", "val")
    assert too_many.returncode == 2 and "keeps 2" in too_many.stderr, too_many.stderr
    assert len(too_many.stderr.strip().splitlines()) == 1
