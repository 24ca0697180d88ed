"""The loops: an optimizer walking a 2D surface (numpy), and SGD vs Adam training a torch MLP on real data.

    run_path(cfg, surface, "adam")   -> PathResult (the whole trajectory, losses, lrs, steps to tolerance)
    train_pair(cfg, run, resume)     -> two MLPs (plain SGD, Adam) trained in lockstep from the same init
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from dlm_core.checkpoint import Checkpointer, resume_training, rng_state
from dlm_core.errors import check_finite
from dlm_core.runs import print_metrics, progress
from dlm_core.seed import data_rng

from .config import LandscapeConfig, PlaygroundConfig
from .model import MLP
from .optim import make_optimizer
from .schedules import make_schedule
from .surfaces import Surface

DIVERGED_NORM = 1e6  # a point this far out counts as diverged (the surfaces live within |x|, |y| < 6)


@dataclasses.dataclass
class PathResult:
    optimizer: str
    lr: float
    path: np.ndarray  # (n + 1, 2) points, path[0] = start
    losses: np.ndarray  # (n + 1,) loss at each point
    lrs: np.ndarray  # (n,) learning rate used at each step
    diverged_at: int | None  # step at which the loss went non-finite or the point flew off
    steps_to_tol: int | None  # first step with loss - f_min < tol
    distance: float  # distance from the last point to the nearest global minimum

    @property
    def final_loss(self) -> float:
        return float(self.losses[-1]) if self.diverged_at is None else float("nan")

    def row(self) -> dict:
        return {"optimizer": self.optimizer, "lr": self.lr, "final_loss": self.final_loss,
                "distance_to_minimum": self.distance, "steps_to_tol": self.steps_to_tol,
                "diverged_at": self.diverged_at, "x": float(self.path[-1, 0]), "y": float(self.path[-1, 1])}


def optimizer_kwargs(cfg: PlaygroundConfig, name: str) -> dict:
    kw: dict = {"clip_norm": cfg.clip}
    if name in ("momentum", "nesterov"):
        kw["momentum"] = cfg.momentum
    if name in ("adam", "adamw"):
        kw["betas"] = tuple(cfg.betas)
    if cfg.weight_decay is not None:
        kw["weight_decay"] = cfg.weight_decay
    return kw


def run_path(cfg: PlaygroundConfig, surface: Surface, name: str, lr: float | None = None) -> PathResult:
    """Walk `surface` with optimizer `name` for cfg.steps steps from cfg.start (or the surface's start)."""
    lr = lr if lr is not None else (cfg.lr if cfg.lr is not None else surface.lr[name])
    p = np.array(cfg.start or surface.start, dtype=np.float64)
    opt = make_optimizer(name, [p], lr, **optimizer_kwargs(cfg, name))
    lr_at = make_schedule(cfg.schedule, lr, cfg.steps, step_size=cfg.step_size, gamma=cfg.gamma, decay=cfg.decay,
                          lr_min=cfg.lr_min, warmup=cfg.warmup)
    rng = np.random.default_rng(cfg.seed)  # gradient noise; the same sequence for every optimizer
    path = np.empty((cfg.steps + 1, 2))
    losses = np.empty(cfg.steps + 1)
    lrs = np.empty(cfg.steps)
    path[0], losses[0] = p, surface.loss(p)
    n, diverged_at = cfg.steps, None
    with np.errstate(all="ignore"):
        for t in range(cfg.steps):
            opt.lr = lrs[t] = lr_at(t)
            g = surface.gradient(p)
            if cfg.noise:
                g = g + cfg.noise * rng.standard_normal(2)
            opt.step([g])
            path[t + 1], losses[t + 1] = p, surface.loss(p)
            if not np.isfinite(losses[t + 1]) or np.abs(p).max() > DIVERGED_NORM:
                n, diverged_at = t + 1, t + 1
                break
    path, losses, lrs = path[:n + 1], losses[:n + 1], lrs[:n]
    hits = np.flatnonzero(losses - surface.f_min < cfg.tol)
    return PathResult(name, lr, path, losses, lrs, diverged_at, int(hits[0]) if len(hits) else None,
                      surface.distance_to_minimum(path[-1]) if diverged_at is None else float("inf"))


# --- the real network ------------------------------------------------------------------------

def train_pair(cfg: LandscapeConfig, data, run, resume: bool = False) -> dict:
    """Train one MLP with plain SGD and one with Adam, same init, same batches; checkpoint both every epoch.

    Returns {"sgd": model, "adam": model}. `data` comes from data.load_data(cfg).
    """
    device = data.device
    torch.manual_seed(cfg.seed)
    init = MLP(data.x_train.shape[1], cfg.hidden, cfg.layers, data.n_classes)
    models = {"sgd": init, "adam": MLP(data.x_train.shape[1], cfg.hidden, cfg.layers, data.n_classes)}
    models["adam"].load_state_dict(init.state_dict())  # the same starting point for both
    models = {k: m.to(device) for k, m in models.items()}
    opts = {"sgd": torch.optim.SGD(models["sgd"].parameters(), lr=cfg.sgd_lr),
            "adam": torch.optim.Adam(models["adam"].parameters(), lr=cfg.adam_lr)}
    lrs = {"sgd": cfg.sgd_lr, "adam": cfg.adam_lr}
    ckpt = Checkpointer(run.checkpoint_dir)
    start_epoch = 1
    if resume and (state := resume_training(ckpt, models, opts, run)) is not None:
        start_epoch = state["epoch"] + 1

    loss_fn = torch.nn.CrossEntropyLoss()
    n = len(data.x_train)
    step = (start_epoch - 1) * -(-n // cfg.batch_size)
    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        order = data_rng(cfg.seed, epoch).permutation(n)
        batches = [order[i:i + cfg.batch_size] for i in range(0, n, cfg.batch_size)]
        totals = {k: 0.0 for k in models}
        bar = progress(batches, desc=f"epoch {epoch}")
        for idx in bar:
            step += 1
            xb, yb = data.x_train[idx], data.y_train[idx]
            for k, model in models.items():
                loss = loss_fn(model(xb), yb)
                check_finite(loss.item(), step, lrs[k])
                opts[k].zero_grad(set_to_none=True)
                loss.backward()
                opts[k].step()
                totals[k] += loss.item() * len(idx)
            bar.set_postfix(sgd=f"{totals['sgd'] / n:.3f}", adam=f"{totals['adam'] / n:.3f}")
        row: dict = {"epoch": epoch}
        for k, model in models.items():
            row[f"{k}_train_loss"] = totals[k] / n
            row[f"{k}_val_acc"] = accuracy(model, data.x_val, data.y_val)
        print_metrics(**row)
        run.log(**row, seconds=time.perf_counter() - t0)
        ckpt.save(epoch, {"epoch": epoch, "models": {k: m.state_dict() for k, m in models.items()},
                          "optimizers": {k: o.state_dict() for k, o in opts.items()}, "rng": rng_state(),
                          "config": dataclasses.asdict(cfg)})
    return models


def accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    model.train()
    return acc
