"""The console scripts end to end: train, detect on files, clear one-line errors (exit 2), export + parity.

One real subprocess checks what a shell user sees (exit code 2, one stderr line); the other calls go through
the same `main` functions in-process (the same cli_entry wrapper) to keep the suite fast.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from p07_autoencoder.cli import detector_main, export_main, train_main


def call(main, *args, capsys):
    """Run a console main in-process -> (exit code, stdout, stderr)."""
    try:
        code = main(list(args)) or 0
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err


def assert_one_line_error(code, err, needle):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], err


@pytest.fixture(scope="module")
def shuttle_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("shuttle")
    os.environ["DLM_RUNS"] = str(root)
    try:
        train_main(["--dataset", "shuttle", "--preset", "quick", "--max-train", "600", "--max-test", "500",
                    "--epochs", "2"])
    finally:
        del os.environ["DLM_RUNS"]
    return next((root / "p07_autoencoder").iterdir())


def test_train_prints_threshold_and_baselines(shuttle_run):
    spec = json.loads((shuttle_run / "preprocess.json").read_text())
    assert len(spec["mean"]) == 9 and spec["threshold"] > 0
    res = json.loads((shuttle_run / "results.json").read_text())
    assert {"autoencoder", "isolation_forest", "pca_reconstruction"} <= set(res)


def test_detector_flags_the_absurd_row(shuttle_run, tmp_path, capsys):
    spec = json.loads((shuttle_run / "preprocess.json").read_text())
    rows = np.tile(np.array(spec["mean"]), (5, 1))
    rows[-1] += 50 * np.array(spec["std"])          # one absurd row
    good = tmp_path / "rows.csv"
    good.write_text(",".join(spec["features"]) + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    code, out, err = call(detector_main, str(shuttle_run), "--input", str(good), "--output",
                          str(tmp_path / "s.csv"), capsys=capsys)
    assert code == 0, err
    assert "anomalies_detected: 1 of 5" in out and "4:" in out
    assert (tmp_path / "s.csv").read_text().splitlines()[-1].endswith(",1")


def test_detector_bad_columns_and_shapes_one_line_exit_2(shuttle_run, tmp_path, capsys):
    bad_cols = tmp_path / "bad.csv"
    bad_cols.write_text("a,b,c\n1,2,3\n")
    assert_one_line_error(*call(detector_main, str(shuttle_run), "--input", str(bad_cols), capsys=capsys)[::2],
                          "columns")
    np.save(tmp_path / "bad.npy", np.zeros((4, 7)))
    assert_one_line_error(*call(detector_main, str(shuttle_run), "--input", str(tmp_path / "bad.npy"),
                                capsys=capsys)[::2], "9 features")
    assert_one_line_error(*call(detector_main, str(tmp_path), capsys=capsys)[::2], "not a run directory")
    assert_one_line_error(*call(train_main, "--fpr", "2", capsys=capsys)[::2], "--fpr")


def test_shell_user_sees_one_error_line_and_exit_2(shuttle_run, tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((4, 7)))
    exe = Path(sys.executable).parent / "run_anomaly_detector"
    p = subprocess.run([str(exe), str(shuttle_run), "--input", str(tmp_path / "bad.npy")], capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 2 and len(p.stderr.strip().splitlines()) == 1 and "9 features" in p.stderr, p.stderr


def test_image_run_export_bundle_parity(tmp_path, capsys):
    code, out, err = call(train_main, "--dataset", "fashion-oneclass", "--normal-class", "7", "--preset", "quick",
                          "--max-train", "300", "--max-test", "300", "--epochs", "1", "--width", "8", capsys=capsys)
    assert code == 0, err
    run_dir = next((tmp_path / "runs/p07_autoencoder").iterdir())
    assert (run_dir / "topk_errors.png").is_file() and (run_dir / "false_positives.png").is_file()
    np.save(tmp_path / "imgs.npy", np.zeros((3, 28, 29), np.uint8))
    assert_one_line_error(*call(detector_main, str(run_dir), "--input", str(tmp_path / "imgs.npy"),
                                capsys=capsys)[::2], "28x28")

    code, out, err = call(export_main, str(run_dir), "--version", "c7", capsys=capsys)
    assert code == 0, err
    import torch

    from dlm_core.bundle import load_bundle
    from dlm_core.data import load_dataset
    from dlm_core.predictors import load_predictor
    from p07_autoencoder.evaluate import load_run
    from p07_autoencoder.model import Scorer

    b = load_bundle(tmp_path / "artifacts/fashion-anomaly/c7")
    # float32 ORT vs torch on the score (blurred error + the code's Mahalanobis term, values up to ~10): 1e-5 was
    # passed by the error alone and missed by 1.05e-5 once with the code term; the self-check below uses 1e-4 too
    assert b.manifest["metrics"]["values"]["onnx_parity_max_abs"] < 1e-4
    spec = json.loads((run_dir / "preprocess.json").read_text())
    assert b.manifest["postprocess"]["threshold"] == spec["threshold"]
    drift = b.npz("drift_reference.npz")
    assert drift["features"].shape[0] == b.manifest["drift"]["rows"] >= 500
    # the torch-free predictor on 100 held-out raw images: torch's errors, the same verdicts, any batch size
    pred = load_predictor(b.path)
    assert pred.self_check() <= 1e-4
    raw = load_dataset("fashion-mnist", seed=0).test.x[:100]
    cfg, _, ae = load_run(run_dir)
    with torch.no_grad():
        want = Scorer(ae, spec["error_blur"], spec["code_score"])(torch.from_numpy(raw[:, None] / np.float32(255)))
    want = want.numpy()
    got = pred.predict(list(raw))
    assert np.abs(np.array([r["score"] for r in got]) - want).max() <= 1e-5 * max(1.0, np.abs(want).max())
    assert [r["is_anomaly"] for r in got] == list(want > spec["threshold"])
    rows = [pred.prepare(x) for x in raw[:32]]
    for n in (1, 7):
        assert [r["score"] for r in pred.run(rows[:n]).results] == pytest.approx(
            [r["score"] for r in got[:n]], abs=1e-7)
