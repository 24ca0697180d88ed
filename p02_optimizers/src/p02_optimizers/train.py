"""The playground's loop: an optimizer walking a 2D surface (numpy only; the torch MLP is in network.py).

    run_path(cfg, surface, "adam")   -> PathResult (the whole trajectory, losses, lrs, steps to tolerance)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .config import PlaygroundConfig
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
