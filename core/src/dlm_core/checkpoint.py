"""Checkpoints: atomic save, resume from the latest, load with weights_only=True.

A checkpoint is a dict of tensors and plain Python values (ints, floats, strings, lists, dicts),
which is exactly what torch.load(weights_only=True) accepts: no pickled code runs at load time.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path

from .errors import DlmError
from .io import atomic_path

_EPOCH_RE = re.compile(r"epoch-(\d+)\.pt$")


def save_checkpoint(path: str | os.PathLike, state: dict) -> Path:
    import torch

    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    import torch

    path = Path(path)
    if not path.is_file():
        raise DlmError(f"checkpoint {path} does not exist; pass a run directory or a .pt file written by a trainer")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # corrupted, or not a checkpoint at all
        raise DlmError(f"cannot read checkpoint {path}: {type(err).__name__}: {str(err).splitlines()[0]}") from None


def rng_state() -> dict:
    """Python, numpy and torch RNG states as weights_only-loadable values."""

    import numpy as np
    import torch

    state = {"python": list(random.getstate()[1]), "python_pos": random.getstate()[2],
             "numpy": _np_state(np.random.get_state()), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:

    import numpy as np
    import torch

    random.setstate((3, tuple(state["python"]), state["python_pos"]))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    torch.set_rng_state(state["torch"].cpu())  # a checkpoint loaded with map_location="cuda" holds them there
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def _np_state(st):
    kind, keys, pos, has_gauss, gauss = st
    return [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)]


class Checkpointer:
    """Per-epoch checkpoints in <run>/checkpoints/: epoch-N.pt (the last `keep` kept) and best.pt.

    save(epoch, state) after each epoch; latest() returns the newest state to resume from.
    A run killed mid-epoch loses at most that epoch.
    """

    def __init__(self, directory: str | os.PathLike, keep: int = 2, enabled: bool = True):
        self.dir = Path(directory)
        self.keep = keep
        self.enabled = enabled

    def save(self, epoch: int, state: dict, is_best: bool = False) -> Path | None:
        if not self.enabled:
            return None
        # best.pt first: once epoch-N.pt exists (what a resume starts from), the best up to epoch N is on disk too;
        # a kill between the two writes would otherwise leave a resumed run without its best checkpoint
        if is_best:
            save_checkpoint(self.dir / "best.pt", {**state, "epoch": epoch})
        path = save_checkpoint(self.dir / f"epoch-{epoch}.pt", {**state, "epoch": epoch})
        for old in self.epochs()[: -self.keep]:
            (self.dir / f"epoch-{old}.pt").unlink(missing_ok=True)
        return path

    def epochs(self) -> list[int]:
        if not self.dir.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.dir.iterdir() if (m := _EPOCH_RE.search(p.name)))

    def latest_path(self) -> Path | None:
        epochs = self.epochs()
        return self.dir / f"epoch-{epochs[-1]}.pt" if epochs else None

    def latest(self, map_location="cpu") -> dict | None:
        path = self.latest_path()
        return load_checkpoint(path, map_location) if path else None

    def best(self, map_location="cpu") -> dict:
        path = self.dir / "best.pt"
        if not path.exists():
            path = self.latest_path()
            if path is None:
                raise DlmError(f"no checkpoint in {self.dir}; train first")
        return load_checkpoint(path, map_location)


def resume_training(ckpt: Checkpointer, model, optimizer=None, run=None, scheduler=None,
                    epoch_key: str | tuple[str, ...] = "epoch", *, scaler=None, map_location="cpu",
                    quiet: bool = False) -> dict | None:
    """Continue a run from its latest checkpoint; returns that checkpoint (its "epoch" is the number it was saved
    under: the last finished epoch, or step) or None when there is none yet.

    Loads the weights into `model`, then the optimizer, scheduler and grad-scaler states and every RNG state the
    checkpoint holds (python, numpy, torch, cuda), and drops the metrics rows logged after the checkpoint (the
    resumed run logs them again). `model` and `optimizer` may be dicts of several by name (saved under "models"
    and "optimizers", e.g. p02's SGD and Adam pair). `epoch_key` names the metrics field that numbers a row; a
    tuple: the first of them a row has (rows with none are kept). The loop's own counters (best score, patience,
    data position...) are the trainer's to read back from the returned dict.
    """
    state = ckpt.latest(map_location)
    if state is None:
        return None
    if isinstance(model, dict):
        for name, m in model.items():
            m.load_state_dict(state["models"][name])
    else:
        model.load_state_dict(state["model"])
    if isinstance(optimizer, dict):
        for name, opt in optimizer.items():
            opt.load_state_dict(state["optimizers"][name])
    elif optimizer is not None and "optimizer" in state:
        optimizer.load_state_dict(state["optimizer"])
    if scheduler is not None and "scheduler" in state:
        scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and "scaler" in state:
        scaler.load_state_dict(state["scaler"])
    if "rng" in state:
        set_rng_state(state["rng"])
    keys = (epoch_key,) if isinstance(epoch_key, str) else tuple(epoch_key)
    if run is not None:
        run.truncate_metrics(lambda r: next((r[k] for k in keys if k in r), 0) <= state["epoch"])
    if not quiet:
        print(f"resumed from {keys[0]} {state['epoch']}", flush=True)
    return state
