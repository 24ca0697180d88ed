"""--resume through the command line (the bug that once rewrote a run's config.json with the default config):
the saved config is the truth; a budget flag may change; a flag that changes the model is refused in one line
and the run folder is left byte for byte as it was."""

import json
import subprocess
import sys
from pathlib import Path

RUN = Path(sys.executable).parent / "run_contrastive_train"


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_keeps_the_saved_config_and_refuses_a_model_change(tmp_path):
    run = tmp_path / "run"
    first = subprocess.run([str(RUN), "--preset", "tiny", "--epochs", "1", "--run-dir", str(run)],
                           capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    saved = json.loads((run / "config.json").read_text())
    before = snapshot(run)
    refused = subprocess.run([str(RUN), "--resume", str(run), "--dim", "768"], capture_output=True, text=True,
                             timeout=600)
    assert refused.returncode == 2 and len(refused.stderr.strip().splitlines()) == 1
    assert f"--dim 768 would change it (saved: {saved['dim']})" in refused.stderr
    assert snapshot(run) == before  # nothing written
    preset = subprocess.run([str(RUN), "--resume", str(run), "--preset", "quick"], capture_output=True, text=True)
    assert preset.returncode == 2 and "drop --preset" in preset.stderr and snapshot(run) == before
    # a longer budget is allowed: the run continues from its checkpoint with its own model
    more = subprocess.run([str(RUN), "--resume", str(run), "--epochs", "2"], capture_output=True, text=True,
                          timeout=600)
    assert more.returncode == 0, more.stderr[-2000:]
    assert "resumed from epoch 1" in more.stdout
    after = json.loads((run / "config.json").read_text())
    assert after == {**saved, "epochs": 2}
    epochs = [json.loads(line).get("epoch") for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert max(e for e in epochs if e is not None) == 2
