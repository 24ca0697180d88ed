"""The retraining hand-off between a server and a trainer (dlm-retrain-event/1): two JSON files in a folder.

The server (p10_serving) writes `events/<id>.json` when its retraining criteria fire, with the labelled feedback
the new model should learn from in `feedback/<id>-train.npz` (x: raw inputs, y: class indices). A retrainer
(`run_cnn_retrain EVENT`, started by the server itself or by a worker watching the folder) trains, exports a
bundle and writes `results/<id>.json`: {"bundle": path} or {"error": "..."}. The server then verifies that
bundle, gates it and swaps it in. Files are written atomically, so either side can die at any time and a
half-written file is never read.

    event:  schema, id, model, version, task, bundle (the serving bundle's path), sha256, reason, created,
            statistics (what fired), feedback {train, rows, gate_rows}, result (where the result goes)
    result: id, bundle | error, and whatever the trainer reports (run_dir, test metric, seconds)
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from .errors import DlmError
from .io import atomic_path, read_json, write_json

SCHEMA = "dlm-retrain-event/1"
REQUIRED = ("id", "model", "version", "task", "bundle", "reason", "feedback", "result")


def folders(root: str | os.PathLike) -> dict[str, Path]:
    root = Path(root)
    out = {k: root / k for k in ("events", "feedback", "results", "logs")}
    for p in out.values():
        p.mkdir(parents=True, exist_ok=True)
    return out


def write_event(root: str | os.PathLike, event: dict, x: np.ndarray, y: np.ndarray) -> Path:
    """Save the feedback arrays, then the event that points at them (in that order: an event on disk is
    always complete). Fills in schema, created, feedback and result paths; returns the event's path."""
    dirs = folders(root)
    eid = event["id"]
    train = dirs["feedback"] / f"{eid}-train.npz"
    with atomic_path(train) as tmp:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, x=x, y=y)
    event = {"schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **event,
             "feedback": {**event.get("feedback", {}), "train": str(train.resolve()), "rows": int(len(y))},
             "result": str((dirs["results"] / f"{eid}.json").resolve())}
    path = dirs["events"] / f"{eid}.json"
    write_json(path, event)
    return path


def read_event(path: str | os.PathLike) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DlmError(f"retraining event {path} does not exist")
    event = read_json(path)
    if event.get("schema") != SCHEMA:
        raise DlmError(f"{path} is not a {SCHEMA} event (schema {event.get('schema')!r})")
    missing = [k for k in REQUIRED if k not in event]
    if missing:
        raise DlmError(f"retraining event {path} lacks {missing}")
    return event


def feedback(event: dict) -> tuple[np.ndarray, np.ndarray]:
    """The labelled feedback to train on: (x, y)."""
    path = Path(event["feedback"]["train"])
    if not path.is_file():
        raise DlmError(f"the event's feedback file {path} does not exist")
    with np.load(path) as f:
        return f["x"], f["y"]


def write_result(event: dict, **fields) -> Path:
    return write_json(event["result"], {"id": event["id"], **fields})


def pending(root: str | os.PathLike) -> list[Path]:
    """Events without a result yet, oldest first (what a worker picks up)."""
    dirs = folders(root)
    return sorted(p for p in dirs["events"].glob("*.json")
                  if not (dirs["results"] / p.name).exists())
