"""The reference trainer: learns on real data, is reproducible, and resumes after a real kill."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DLM = [sys.executable, "-m", "dlm_core.cli"]


def _final(run_dir):
    return json.loads((run_dir / "results.json").read_text())


def test_demo_learns_and_reproduces(tmp_path, dlm):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        proc = dlm("demo", "--epochs", "4", "--run-dir", str(d))
        assert proc.returncode == 0, proc.stderr
    ra, rb = _final(a), _final(b)
    assert ra["test_acc"] > 0.85 and ra["baseline_logreg_test_acc"] > 0.9
    assert ra["test_acc"] == rb["test_acc"]
    assert (a / "metrics.jsonl").read_text() != "" and [json.loads(x)["train_loss"] for x in
                                                        (a / "metrics.jsonl").read_text().splitlines()] == \
        [json.loads(x)["train_loss"] for x in (b / "metrics.jsonl").read_text().splitlines()]
    for f in ("config.json", "report.md", "loss.png", "val_acc.png", "checkpoints/epoch-4.pt"):
        assert (a / f).exists(), f


def test_killed_run_resumes_and_matches_uninterrupted(tmp_path, dlm):
    epochs = "6"
    ref = tmp_path / "ref"
    assert dlm("demo", "--epochs", epochs, "--run-dir", str(ref)).returncode == 0

    run = tmp_path / "killed"
    proc = subprocess.Popen([*DLM, "demo", "--epochs", epochs, "--epoch-delay", "0.7", "--run-dir", str(run)],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while not (run / "checkpoints" / "epoch-3.pt").exists():
        assert time.time() < deadline and proc.poll() is None, "trainer ended before epoch 3"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (run / "results.json").exists()
    done = [json.loads(x)["epoch"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert 3 <= max(done) < 6

    resumed = dlm("demo", "--resume", str(run))  # its own saved config: no flags repeated
    assert resumed.returncode == 0, resumed.stderr
    assert "resumed from epoch" in resumed.stdout
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4, 5, 6]
    ref_rows = [json.loads(x) for x in (ref / "metrics.jsonl").read_text().splitlines()]
    assert [r["train_loss"] for r in rows] == [r["train_loss"] for r in ref_rows]
    assert _final(run)["test_acc"] == _final(ref)["test_acc"]


def test_help_does_not_import_torch():
    code = ("import sys, contextlib, io\nfrom dlm_core.cli import main\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n    main(['--help'])\n"
            "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "False", proc.stderr
