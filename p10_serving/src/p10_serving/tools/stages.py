"""What run_fullstack's tasks share (fullstack.py runs the loop and holds the image task, fullstack_text.py the
text one): a stage run as a process, a console script's path, and the Task / Stream a task is made of."""

from __future__ import annotations

import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlm_core.errors import DlmError


class StageFailed(DlmError):
    pass


def stage(name: str, cmd: list[str], log: Path, env: dict | None = None) -> float:
    """Run one stage as a process (output to its log); its seconds, or StageFailed naming the log."""
    t0 = time.perf_counter()
    print(f"[{name}] {shlex.join(cmd)}  (log: {log})", flush=True)
    with open(log, "ab") as f:
        rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env).returncode
    if rc != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-3:]
        raise StageFailed(f"stage {name} failed (exit {rc}): {' | '.join(tail)}; see {log}")
    return time.perf_counter() - t0


def tool(name: str) -> str:
    """A console script of this environment (beside its python), else the bare name (found on PATH)."""
    bin_dir = Path(sys.executable).parent
    return str(bin_dir / name) if (bin_dir / name).exists() else name


@dataclass
class Stream:
    """The rows a replay sends: their labels (class indices into the bundle's labels) and row(i) -> (the request
    body of row i, whether it is shifted), built when the row is due (an image's shift is applied then)."""
    y: np.ndarray
    row: Callable[[int], tuple[dict, bool]]


@dataclass(frozen=True)
class Task:
    """What differs between the tasks: the served model's name, the shift (None: the control), the first bundle
    (train(args, out, env, stages) -> its folder), the stream (stream(args, classes)), the retraining hook's
    command (retrain_command(args, out)), a held-out evaluation of the old and the swapped-in bundle for the report
    (evaluate(bundle, events) -> dict, optional), and the defaults of --min-recovery and --min-feedback."""
    name: str
    model: str
    shift: str | None
    train: Callable
    stream: Callable
    retrain_command: Callable
    evaluate: Callable | None = None
    min_recovery: float = 0.1
    min_feedback: int = 640
