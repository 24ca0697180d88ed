"""run_cnn_retrain: a server's retraining event -> a warm-started run on train + feedback -> a new bundle next to
the old one, and the result file the server waits for (also when the retrain fails)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlm_core.data import load_dataset
from dlm_core.errors import DlmError
from dlm_core.retrain import write_event

RUN = Path(sys.executable).parent / "run_cnn_retrain"


@pytest.fixture(scope="module")
def served(tiny_run, tmp_path_factory):
    from p03_cnn.export import export_run

    path, _ = tiny_run
    root = tmp_path_factory.mktemp("served")
    out = export_run(path, name="fashion-cnn", version="v1", n_reference=8, n_drift=500, root=root)
    return Path(out["bundle"])


def event_for(bundle: Path, root: Path, n: int, eid: str = "e1") -> Path:
    val = load_dataset("fashion-mnist").val
    x = np.clip(val.x[:n].astype(np.float32) + 60, 0, 255)  # brighter images: the "drifted" feedback
    return write_event(root, {"id": eid, "model": "fashion-cnn", "version": "v1", "task": "image-classification",
                              "bundle": str(bundle), "sha256": "x", "reason": "drift"}, x, val.y[:n])


def test_retrain_from_an_event_exports_a_bundle_next_to_the_old_one(served, tmp_path):
    from dlm_core.bundle import load_bundle
    from dlm_core.predictors import load_predictor

    event = event_for(served, tmp_path / "retrain", 500)
    r = subprocess.run([str(RUN), str(event), "--epochs", "1", "--runs-root", str(tmp_path / "runs")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    result = json.loads((tmp_path / "retrain" / "results" / "e1.json").read_text())
    new = Path(result["bundle"])
    assert new.parent == served.parent and new.name == "retrain-e1"
    m = load_bundle(new).manifest
    assert m["provenance"]["config"]["init_from"] == load_bundle(served).manifest["provenance"]["run_dir"]
    assert m["provenance"]["config"]["extra_data"].endswith("e1-train.npz") and m["drift"]["rows"] == 500
    # the new drift reference is the feedback (bright images), not the validation split
    p = load_predictor(new)
    assert p.bundle.npz("drift_reference.npz")["features"][:, 0].mean() > \
        load_predictor(served).bundle.npz("drift_reference.npz")["features"][:, 0].mean() + 0.1
    assert result["feedback_rows"] == 500 and result["epochs"] == 1


def test_a_failed_retrain_still_writes_the_result_the_server_waits_for(served, tmp_path):
    event = event_for(served, tmp_path / "retrain", 100, "small")  # < 500 rows: refused
    r = subprocess.run([str(RUN), str(event)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and r.stderr.startswith("error: 100 feedback rows")
    result = json.loads((tmp_path / "retrain" / "results" / "small.json").read_text())
    assert "retraining needs at least 500" in result["error"]
    r = subprocess.run([str(RUN), str(tmp_path / "nope.json")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "does not exist" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_extra_data_and_init_from_are_checked_before_training(tmp_path, tiny_run):
    import dataclasses

    from p03_cnn.config import PRESETS
    from p03_cnn.data import load_extra
    from p03_cnn.train import train

    bad = tmp_path / "bad.npz"
    np.savez(bad, x=np.zeros((3, 28, 28)), y=np.array([0, 1, 10]))
    with pytest.raises(DlmError, match="class indices 0..9"):
        load_extra(bad, 10)
    np.savez(bad, x=np.zeros((3, 27, 28)), y=np.array([0, 1, 2]))
    with pytest.raises(DlmError, match=r"need x \(N, 28, 28\)"):
        load_extra(bad, 10)
    with pytest.raises(DlmError, match="does not exist"):
        load_extra(tmp_path / "missing.npz", 10)
    run, _ = tiny_run
    cfg = dataclasses.replace(PRESETS["tiny"], width=4, init_from=str(run), device="cpu")
    with pytest.raises(DlmError, match="width 8"):
        train(cfg, run_dir=tmp_path / "mismatch")
