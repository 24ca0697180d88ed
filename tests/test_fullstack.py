"""run_fullstack end to end, small: every stage is the real command (run_cnn_train, run_cnn_export, run_serve on
127.0.0.1, run_cnn_retrain started by the server), on real Fashion-MNIST. A shifted stream must raise the drift
alert, retrain, pass the gate, swap and recover; the same model on a stream with no shift must never retrain."""

import json
import shutil

import pytest

SMALL = ["--train-args", "--train-subset 2000 --eval-subset 500 --epochs 2", "--rate", "40", "--drift-window", "100",
         "--label-delay", "50", "--retrain-epochs", "1", "--max-minutes", "6"]


@pytest.fixture(scope="module")
def shifted(tmp_path_factory, fullstack):
    out = tmp_path_factory.mktemp("fullstack") / "shift"
    r = fullstack("--out", out, "--shift", "brightness:80", "--shift-after", 200, "--post-swap-rows", 200, *SMALL)
    return out, r


def test_a_shift_is_detected_retrained_gated_swapped_and_recovered(shifted):
    out, r = shifted
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((out / "fullstack.json").read_text())
    assert res["verdict"] == "ok" and res["errors"] == 0
    kinds = [e["kind"] for e in res["events"]]
    for kind in ("drift_alert", "episode", "retrain_started", "swap"):
        assert kind in kinds, kinds
    assert kinds.index("drift_alert") < kinds.index("retrain_started") < kinds.index("swap")
    swap = next(e for e in res["events"] if e["kind"] == "swap")
    assert swap["gate"]["passed"] and swap["version"].startswith("retrain-")
    seg = res["accuracy"]
    assert seg["before_shift"]["accuracy"] > seg["shifted_before_swap"]["accuracy"] + 0.2  # the shift hurts
    assert seg["after_swap"]["accuracy"] >= seg["shifted_before_swap"]["accuracy"] + 0.1  # and is repaired
    assert seg["after_swap"]["rows"] >= 150
    for name in ("report.md", "drift.png", "accuracy.png", "latency.png"):
        assert (out / name).stat().st_size > 1000
    # the retrained bundle sits in the run's own artifacts, next to the first one, and was built from feedback
    assert (out / "artifacts" / "fashion-cnn" / swap["version"] / "manifest.json").exists()
    started = next(e for e in res["events"] if e["kind"] == "retrain_started")
    event = json.loads((out / "retrain" / "events" / f"{started['id']}.json").read_text())
    assert event["feedback"]["rows"] >= 500 and "drift" in event["reason"]
    assert event["sha256"] == started["old_sha256"] and event["version"] == swap["old_version"] == "v1"


def test_the_same_model_on_an_unshifted_stream_never_retrains(shifted, tmp_path, fullstack):
    first, _ = shifted
    out = tmp_path / "control"
    out.mkdir()
    shutil.copytree(first / "train", out / "train")  # the same trained model: no training, no export
    shutil.copytree(first / "artifacts" / "fashion-cnn" / "v1", out / "artifacts" / "fashion-cnn" / "v1")
    # windows of 200 rows here (the last --drift-window wins): PSI's noise on 100-row windows makes a single
    # false alert window a few times more likely, and this test must not depend on luck
    r = fullstack("--out", out, "--no-shift", "--max-rows", 1600, *SMALL, "--drift-window", 200)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    res = json.loads((out / "fullstack.json").read_text())
    assert "train" not in res["stages"] and "export" not in res["stages"]
    assert res["rows_sent"] == 1600 and res["errors"] == 0
    kinds = [e["kind"] for e in res["events"]]
    assert "retrain_started" not in kinds and "swap" not in kinds and "episode" not in kinds, res["events"]
    judged = [d for d in res["drift"] if d["verdict"] is not None]
    assert len(judged) >= 5  # the monitor did judge windows; they stayed quiet


def test_bad_flags_get_one_line_and_exit_2(tmp_path, fullstack):
    r = fullstack("--out", tmp_path / "x", "--shift", "zoom:2")
    assert r.returncode == 2 and r.stderr.strip().startswith("error: --shift 'zoom:2'")
    assert len(r.stderr.strip().splitlines()) == 1
