"""The training loop: mini-batches -> forward -> cross-entropy -> backward -> optimizer step, one line per epoch.

Checkpoints are numpy .npz files (the engine has no torch), written atomically after every epoch; --resume
continues from the newest one and replays exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path

import numpy as np

from dlm_core.errors import DlmError, check_finite
from dlm_core.io import atomic_path
from dlm_core.runs import RunDir, print_metrics, progress

from . import functional as F
from .config import Config
from .data import Data, batches, load_data
from .model import build_model
from .nn import Module
from .optim import SGD, Adam, Optimizer
from .tensor import Tensor, no_grad

PROJECT = "p01_autodiff"
_CKPT = re.compile(r"epoch-(\d+)\.npz$")


def make_optimizer(cfg: Config, model: Module) -> Optimizer:
    if cfg.optimizer == "adam":
        return Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


# --- checkpoints (numpy) -------------------------------------------------------------------------------
def save_checkpoint(run: RunDir, epoch: int, model: Module, opt: Optimizer, keep: int = 2) -> Path:
    path = run.checkpoint_dir / f"epoch-{epoch}.npz"
    arrays = {f"model/{k}": v for k, v in model.state_dict().items()}
    arrays.update({f"opt/{k}": v for k, v in opt.state_dict().items()})
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez(f, epoch=np.asarray(epoch), **arrays)
    for old in checkpoint_epochs(run)[:-keep]:
        (run.checkpoint_dir / f"epoch-{old}.npz").unlink(missing_ok=True)
    return path


def checkpoint_epochs(run: RunDir) -> list[int]:
    if not run.checkpoint_dir.is_dir():
        return []
    return sorted(int(m.group(1)) for p in run.checkpoint_dir.iterdir() if (m := _CKPT.search(p.name)))


def load_checkpoint(run: RunDir, model: Module, opt: Optimizer) -> int:
    """Restore the newest checkpoint into model and opt; returns its epoch (0 when there is none)."""
    epochs = checkpoint_epochs(run)
    if not epochs:
        return 0
    path = run.checkpoint_dir / f"epoch-{epochs[-1]}.npz"
    try:
        with np.load(path, allow_pickle=False) as z:
            model.load_state_dict({k[6:]: z[k] for k in z.files if k.startswith("model/")})
            opt.load_state_dict({k[4:]: z[k] for k in z.files if k.startswith("opt/")})
            return int(z["epoch"])
    except (OSError, ValueError, KeyError) as err:
        raise DlmError(f"cannot read checkpoint {path}: {err}; delete it to resume from the one before") from None


# --- the loop ------------------------------------------------------------------------------------------
def accuracy(model: Module, x: np.ndarray, y: np.ndarray, batch_size: int = 1024) -> float:
    with no_grad():
        pred = np.concatenate([model(Tensor(x[i:i + batch_size])).data.argmax(1) for i in range(0, len(x), batch_size)])
    return float((pred == y).mean())


def train(cfg: Config, run_dir: str | Path | None = None, resume: bool = False, data: Data | None = None,
          quiet: bool = False) -> dict:
    """Train the MLP of `cfg`; returns {'model', 'data', 'run', 'losses', 'val_acc'}. Writes the run dir."""
    random.seed(cfg.seed)  # not dlm_core.seed_everything: it would import torch. The model and the batches
    np.random.seed(cfg.seed)  # draw from generators derived from cfg.seed anyway.
    data = data if data is not None else load_data(cfg.dataset, cfg.seed, cfg.dtype, cfg.n_points, cfg.noise)
    run = RunDir.create(PROJECT, cfg) if run_dir is None else RunDir.at(run_dir, cfg)
    model = build_model(cfg, data.n_features, len(data.classes))
    opt = make_optimizer(cfg, model)
    start = 1
    if resume:
        done = load_checkpoint(run, model, opt)
        start = done + 1
        run.truncate_metrics(lambda r: r.get("epoch", 0) < start)
        if done and not quiet:
            print(f"resumed from epoch {done}", flush=True)

    losses = []
    step = (start - 1) * -(-len(data.y_train) // cfg.batch_size)
    for epoch in range(start, cfg.epochs + 1):
        t0 = time.perf_counter()
        total = 0.0
        bar = progress(batches(len(data.y_train), cfg.batch_size, cfg.seed, epoch), desc=f"epoch {epoch}")
        for idx in bar:
            logits = model(Tensor(data.x_train[idx]))
            loss = F.cross_entropy(logits, data.y_train[idx])
            step += 1
            value = loss.item()
            check_finite(value, step, cfg.lr)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += value * len(idx)
            bar.set_postfix(loss=f"{value:.3f}")
        row = {"epoch": epoch, "loss": total / len(data.y_train), "val_acc": accuracy(model, data.x_val, data.y_val),
               "seconds": time.perf_counter() - t0}
        losses.append(row["loss"])
        run.log(**row)
        if not quiet:
            print_metrics(**{k: v for k, v in row.items() if k != "seconds"})
        save_checkpoint(run, epoch, model, opt)
    return {"model": model, "data": data, "run": run, "losses": losses}
