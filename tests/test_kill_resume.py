"""Every trainer survives a real kill: start its tiny run through its command line, SIGKILL it once it has an
epoch checkpoint on disk and has logged a metrics row past it, finish it with `<cli> --resume RUN` alone, and
require exactly what the same run gives uninterrupted: the same metrics rows, the same final results and
bit-for-bit the same checkpoints (weights, optimizer, RNG states, best-model tracking), wall-clock fields aside
(issue #22). On CPU: bitwise equality is what a resume owes there. No trainer has a test-only flag for this: the pause
that lets the kill land mid-run is injected from outside (PAUSE_AFTER_ROWS)."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]

# command and flags of a run short enough for a test that still checkpoints at least twice, so that a kill after
# the first checkpoint lands mid-run (the kill is asserted, never assumed)
TRAINERS = {
    "run_autodiff_demo": ["--hidden", "16", "--epochs", "4", "--batch-size", "64"],
    "run_loss_landscape": ["--preset", "quick", "--epochs", "3", "--grid", "3", "--hessian-iters", "3",
                           "--hidden", "32", "--layers", "1"],
    "run_cnn_train": ["--preset", "tiny", "--epochs", "3", "--dropout", "0.1", "--device", "cpu"],
    "run_rnn_train": ["--embed", "8", "--hidden", "16", "--layers", "1", "--dropout", "0.1", "--batch-size", "8",
                      "--seq-len", "16", "--max-steps", "30", "--eval-every", "10", "--log-every", "4",
                      "--val-chars", "2000", "--warmup-steps", "2", "--no-final-test"],
    "run_transformer_train": ["--train-limit", "200", "--vocab-size", "300", "--d-model", "32", "--heads", "2",
                              "--enc-layers", "1", "--dec-layers", "1", "--d-ff", "64", "--max-len", "40",
                              "--epochs", "3", "--warmup-steps", "5", "--val-sentences", "5", "--test-sentences",
                              "5", "--beam", "2", "--batch-size", "32", "--attention-samples", "1", "--no-export"],
    "run_contrastive_train": ["--preset", "tiny", "--epochs", "3", "--device", "cpu"],
    "run_anomaly_train": ["--preset", "quick", "--dataset", "shuttle", "--max-train", "400", "--max-test", "400",
                          "--epochs", "3", "--width", "8"],
    "run_vae_train": ["--epochs", "3", "--batch-size", "64", "--warmup-epochs", "2", "--max-train", "600",
                      "--channels", "8", "--hidden", "64", "--latent-dim", "4", "--iwae-k", "8", "--iwae-images",
                      "20", "--device", "cpu"],
    "run_dqn_train": ["--total-steps", "1000", "--hidden", "32", "--batch-size", "32", "--buffer-size", "2000",
                      "--learning-starts", "200", "--exploration-fraction", "0.2", "--eval-every", "500",
                      "--eval-episodes", "3", "--test-episodes", "3", "--checkpoint-every", "300", "--log-every",
                      "250", "--target-every", "100", "--max-episode-steps", "200", "--no-early-stop", "--seed", "3"],
    "dlm demo": ["--epochs", "4", "--hidden", "32"],
}
CHECKPOINT = re.compile(r"^(epoch-\d+|best)\.(pt|npz)$")
EPOCH = re.compile(r"^epoch-\d+\.(pt|npz)$")  # what a resume starts from
FINAL = ("results.json", "train.json")  # written once the run is over: a killed run must have neither
WALL_CLOCK = re.compile(r"seconds|minutes|elapsed|_per_s$|^tok_s$|^sps$|^run_dir$|^sec$")


def command(name: str) -> list[str]:
    return [str(BIN / name.split()[0]), *name.split()[1:]]


def env_for(root: Path) -> dict:
    return {**os.environ, "DLM_THREADS": "1", "DLM_NO_PROGRESS": "1", "DLM_RUNS": str(root / "runs"),
            "DLM_ARTIFACTS": str(root / "artifacts"), "PYTHONHASHSEED": "0"}


def the_run(root: Path) -> Path | None:
    found = sorted((root / "runs").glob("*/*/config.json"))
    assert len(found) <= 1, found
    return found[0].parent if found else None


def finish(cmd: list[str], root: Path) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, env=env_for(root), cwd=REPO, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, (cmd, r.stdout[-2000:], r.stderr[-3000:])
    return r


# Loaded (as sitecustomize) by the run that gets killed, and only by it: once the run has an epoch checkpoint,
# every metrics row it logs is followed by a pause. The run's numbers do not change; a run whose epochs take
# milliseconds cannot race past the kill, and the kill lands after a row logged past the checkpoint (which the
# resume must drop and log again), whatever the load on the machine.
PAUSE_AFTER_ROWS = """
import re, time
from dlm_core.runs import RunDir

_log = RunDir.log


def _paused_log(self, **metrics):
    _log(self, **metrics)
    folder = self.checkpoint_dir
    if folder.is_dir() and any(re.match(r"epoch-\\d+\\.(pt|npz)$", p.name) for p in folder.iterdir()):
        time.sleep(0.5)


RunDir.log = _paused_log
"""


def start_and_kill(cmd: list[str], root: Path) -> Path:
    """Start the run; SIGKILL it once it has an epoch checkpoint and has logged a row after it."""
    hook = root / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(PAUSE_AFTER_ROWS)
    env = env_for(root)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(hook), env.get("PYTHONPATH")]))
    log = open(root / "killed.log", "w")
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 240
    rows_at_checkpoint = None
    try:
        while True:
            run = the_run(root)
            if run is not None and (run / "checkpoints").is_dir() and any(
                    EPOCH.match(p.name) for p in (run / "checkpoints").iterdir()):
                n = len((run / "metrics.jsonl").read_text().splitlines())
                if rows_at_checkpoint is None:
                    rows_at_checkpoint = n
                elif n > rows_at_checkpoint:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"no row after a checkpoint before the trainer ended (rc {proc.poll()}):\n"
                            f"{(root / 'killed.log').read_text()[-3000:]}")
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        log.close()
    assert proc.returncode == -signal.SIGKILL, "the trainer ended before the kill: this run proves nothing"
    assert not any((run / f).exists() for f in FINAL), "the trainer finished before the kill"
    return run


def last_epoch(run: Path) -> int:
    return max(int(re.findall(r"\d+", p.name)[0]) for p in (run / "checkpoints").iterdir() if EPOCH.match(p.name))


def timeless(obj):
    """obj without wall-clock fields (seconds, throughput, run folder), JSON text fields parsed."""
    if isinstance(obj, dict):
        return {k: timeless(v) for k, v in obj.items() if not WALL_CLOCK.search(str(k))}
    if isinstance(obj, (list, tuple)):
        return [timeless(v) for v in obj]
    if isinstance(obj, str) and obj.startswith("{"):
        try:
            return timeless(json.loads(obj))
        except json.JSONDecodeError:
            return obj
    return obj


def differences(a, b, where: str = "") -> list[str]:
    """Paths at which two checkpoint structures differ (tensors and arrays bit for bit)."""
    import torch

    if isinstance(a, dict) and isinstance(b, dict):
        if set(a) != set(b):
            return [f"{where}: keys {sorted(set(a) ^ set(b))}"]
        return [d for k in a for d in differences(a[k], b[k], f"{where}/{k}")]
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        if len(a) != len(b):
            return [f"{where}: length {len(a)} != {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        same = a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
        return [] if same else [where]
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        return [] if a.dtype == b.dtype and np.array_equal(a, b) else [where]
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return []
    return [] if type(a) is type(b) and a == b else [f"{where}: {a!r} != {b!r}"]


def load_state(path: Path):
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    import torch

    return timeless(torch.load(path, map_location="cpu", weights_only=True))


def rows(run: Path) -> list[str]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [json.dumps(timeless(json.loads(x)), sort_keys=True) for x in lines if x.strip()]


@pytest.mark.parametrize("name", list(TRAINERS), ids=[n.replace(" ", "_") for n in TRAINERS])
def test_killed_run_resumes_to_the_uninterrupted_result(name, tmp_path):
    flags = TRAINERS[name]
    ref_root, cut_root = tmp_path / "ref", tmp_path / "cut"
    ref_root.mkdir(), cut_root.mkdir()
    # the uninterrupted run goes beside the killed one (one thread each, so the two cores are used and neither
    # changes the other's numbers): the test's wall time is about two runs instead of three
    log = open(ref_root / "run.log", "w")
    reference = subprocess.Popen(command(name) + flags, env=env_for(ref_root), cwd=REPO, stdout=log,
                                 stderr=subprocess.STDOUT)
    try:
        cut = start_and_kill(command(name) + flags, cut_root)
        assert reference.wait(timeout=300) == 0, (ref_root / "run.log").read_text()[-3000:]
    finally:
        if reference.poll() is None:
            reference.kill()
        log.close()
    ref = the_run(ref_root)
    kept = sorted(p.name for p in (cut / "checkpoints").iterdir() if CHECKPOINT.match(p.name))
    assert last_epoch(cut) < last_epoch(ref), f"killed with {kept}: after the last checkpoint, nothing to resume"
    out = finish(command(name) + ["--resume", str(cut)], cut_root)
    assert "resumed from" in out.stdout, (kept, out.stdout[-2000:])

    assert rows(cut) == rows(ref)
    finals = sorted(p.name for p in ref.glob("*.json"))
    assert any(f in finals for f in FINAL), finals
    for f in finals:
        same = [json.dumps(timeless(json.loads((d / f).read_text())), sort_keys=True) for d in (cut, ref)]
        assert same[0] == same[1], f
    states = [p for p in [*(ref / "checkpoints").iterdir(), *ref.glob("*.pt")] if p.is_file() and (
        CHECKPOINT.match(p.name) or p.suffix == ".pt")]
    assert len(states) >= 2, states
    for p in states:
        other = cut / p.relative_to(ref)
        assert other.is_file(), f"{other.relative_to(cut)} missing after the resume (killed with {kept})"
        diff = differences(load_state(p), load_state(other))
        assert not diff, f"{p.relative_to(ref)} differs after a kill with {kept} and a resume: {diff[:8]}"
