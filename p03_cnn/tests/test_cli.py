import json
import os
import subprocess
import sys

import numpy as np

BIN = os.path.dirname(sys.executable)


def run(cmd, timeout=300, **kw):
    env = {**os.environ, "DLM_NO_PROGRESS": "1"}
    return subprocess.run([os.path.join(BIN, cmd[0]), *cmd[1:]], env=env, capture_output=True, text=True,
                          timeout=timeout, **kw)


def one_error_line(proc):
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_bad_config_is_one_line():
    assert "--lr" in one_error_line(run(["run_cnn_train", "--lr", "-1"]))
    assert "--dataset" in one_error_line(run(["run_cnn_train", "--dataset", "cifar"]))


def test_predict_errors_and_resize(tiny_run, tmp_path):
    from PIL import Image

    path, _ = tiny_run
    assert "does not exist" in one_error_line(run(["run_cnn_predict", str(path), str(tmp_path / "nope.png")]))
    text = tmp_path / "notes.png"
    text.write_text("not an image at all")
    assert "not a readable image" in one_error_line(run(["run_cnn_predict", str(path), str(text)]))
    assert "does not exist" in one_error_line(run(["run_cnn_predict", str(tmp_path / "norun"), str(text)]))
    # a wrong-size colour image is converted and resized per preprocess.json, not rejected
    big = tmp_path / "big.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 60, 3), dtype=np.uint8)).save(big)
    ok = run(["run_cnn_predict", str(path), str(big)])
    assert ok.returncode == 0, ok.stderr
    assert "resized from 60x90" in ok.stdout


def test_evaluate_cli_writes_report(tiny_run):
    path, _ = tiny_run
    proc = run(["run_cnn_evaluate", str(path)])
    assert proc.returncode == 0, proc.stderr
    assert "test_acc:" in proc.stdout
    for name in ("confusion.png", "wrong.png", "filters.png", "loss.png", "accuracy.png", "report.md"):
        assert (path / name).is_file(), name
    report = (path / "report.md").read_text()
    assert "Receptive field" in report and "| stage3.block1.conv2 | 3 | 1 | 4 | 25 |" in report


def test_bad_process_count_is_one_line():
    assert "--procs" in one_error_line(run(["run_cnn_train", "--procs", "2", "--batch-size", "63"]))
    assert "--procs" in one_error_line(run(["run_cnn_train", "--procs", "-1"]))


def test_a_failing_rank_ends_the_job_with_its_error(tmp_path):
    proc = run(["run_cnn_train", "--preset", "tiny", "--procs", "2", "--device", "cpu", "--init-from",
                str(tmp_path / "missing"), "--run-dir", str(tmp_path / "r")], timeout=120)
    assert "missing" in one_error_line(proc)  # both ranks fail alike; rank 0's line is shown, once


def test_ddp_two_cpu_processes(tmp_path):
    """run_cnn_train starts the two ranks itself (--procs 2; on a 2-core CPU the default's 128-image batch gets
    two by default), each `python -m p03_cnn.train`, what torchrun starts too."""
    run_dir = tmp_path / "ddp"
    proc = run(["run_cnn_train", "--preset", "tiny", "--procs", "2", "--device", "cpu", "--no-baseline",
                "--run-dir", str(run_dir)], timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "world size 2" in proc.stdout and proc.stdout.count("epoch: 1 ") == 1  # rank 0 prints, rank 1 not
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and rows[0]["epoch"] == 1  # rank 0 logged once, not twice
    assert (run_dir / "checkpoints" / "best.pt").is_file() and (run_dir / "evaluation.json").is_file()
