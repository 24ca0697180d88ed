"""The console scripts end to end: train, detect on files, clear one-line errors (exit 2), export + parity."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

BIN = Path(sys.executable).parent


def run(*args, env_tmp):
    env = {**os.environ, "DLM_RUNS": str(env_tmp / "runs"), "DLM_ARTIFACTS": str(env_tmp / "artifacts"),
           "DLM_NO_PROGRESS": "1"}
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, env=env, timeout=300)


def assert_one_line_error(p, needle):
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], p.stderr


def test_shuttle_train_then_detect_and_bad_inputs(tmp_path):
    p = run("run_anomaly_train", "--dataset", "shuttle", "--preset", "quick", "--max-train", "600",
            "--max-test", "500", "--epochs", "2", env_tmp=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "threshold:" in p.stdout and "IsolationForest" in p.stdout
    run_dir = next((tmp_path / "runs/p07_autoencoder").iterdir())
    spec = json.loads((run_dir / "preprocess.json").read_text())
    assert len(spec["mean"]) == 9 and spec["threshold"] > 0

    rows = np.tile(np.array(spec["mean"]), (5, 1))
    rows[-1] += 50 * np.array(spec["std"])          # one absurd row
    good = tmp_path / "rows.csv"
    good.write_text(",".join(spec["features"]) + "\n" + "\n".join(",".join(map(str, r)) for r in rows) + "\n")
    p = run("run_anomaly_detector", str(run_dir), "--input", str(good), env_tmp=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "anomalies_detected: 1 of 5" in p.stdout

    bad_cols = tmp_path / "bad.csv"
    bad_cols.write_text("a,b,c\n1,2,3\n")
    assert_one_line_error(run("run_anomaly_detector", str(run_dir), "--input", str(bad_cols), env_tmp=tmp_path),
                          "columns")
    bad_shape = tmp_path / "bad.npy"
    np.save(bad_shape, np.zeros((4, 7)))
    assert_one_line_error(run("run_anomaly_detector", str(run_dir), "--input", str(bad_shape), env_tmp=tmp_path),
                          "9 features")
    assert_one_line_error(run("run_anomaly_detector", str(tmp_path), env_tmp=tmp_path), "not a run directory")
    assert_one_line_error(run("run_anomaly_train", "--fpr", "2", env_tmp=tmp_path), "--fpr")


def test_image_run_export_bundle_parity(tmp_path):
    p = run("run_anomaly_train", "--dataset", "fashion-oneclass", "--normal-class", "7", "--preset", "quick",
            "--max-train", "300", "--max-test", "300", "--epochs", "1", "--width", "8", env_tmp=tmp_path)
    assert p.returncode == 0, p.stderr
    run_dir = next((tmp_path / "runs/p07_autoencoder").iterdir())
    assert (run_dir / "topk_errors.png").is_file() and (run_dir / "false_positives.png").is_file()
    np.save(tmp_path / "imgs.npy", np.zeros((3, 28, 29), np.uint8))
    assert_one_line_error(run("run_anomaly_detector", str(run_dir), "--input", str(tmp_path / "imgs.npy"),
                              env_tmp=tmp_path), "28x28")

    p = run("run_anomaly_export", str(run_dir), env_tmp=tmp_path)
    assert p.returncode == 0, p.stderr
    import onnxruntime as ort

    from dlm_core.bundle import load_bundle

    b = load_bundle(tmp_path / "artifacts/p07_autoencoder/fashion-class7")
    assert b.json("metrics.json")["onnx_parity_max_abs"] < 1e-5
    sess = ort.InferenceSession(str(b.file("model.onnx")), providers=["CPUExecutionProvider"])
    ref_in, ref_out = np.load(b.file("reference_inputs.npy")), np.load(b.file("reference_outputs.npy"))
    out = sess.run(None, {sess.get_inputs()[0].name: ref_in[:5]})[0]      # a batch size not used at export
    assert out.shape == (5,) and np.allclose(out, ref_out[:5], atol=1e-5)
    assert b.json("preprocess.json")["threshold"] == json.loads((run_dir / "preprocess.json").read_text())["threshold"]
