"""The reference trainer: learns on real data and is reproducible (its resume after a real kill is tested with
every other trainer's in tests/test_kill_resume.py)."""

import json
import subprocess
import sys
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


def test_help_does_not_import_torch():
    code = ("import sys, contextlib, io\nfrom dlm_core.cli import main\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n    main(['--help'])\n"
            "print('torch' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.stdout.strip() == "False", proc.stderr
