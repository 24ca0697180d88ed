"""Learning-rate schedules as plain functions of the step: lr_at(t) for t = 0, 1, 2, ...

Step t uses lr_at(t); this matches torch.optim.lr_scheduler when scheduler.step() is called after
every optimizer.step() (tests/test_parity.py checks each against torch over 200 steps).

    constant        lr
    step            lr * gamma ** (t // step_size)                      (StepLR)
    exponential     lr * gamma ** t                                     (ExponentialLR)
    cosine          lr_min + (lr - lr_min) * (1 + cos(pi * t / T)) / 2   (CosineAnnealingLR, T_max = T)
    warmup_cosine   linear ramp from lr * start_factor to lr over W steps, then cosine over T - W
                    (SequentialLR(LinearLR, CosineAnnealingLR))
"""

from __future__ import annotations

import math
from collections.abc import Callable

SCHEDULES = ("constant", "step", "exponential", "cosine", "warmup_cosine")


def make_schedule(name: str, lr: float, total_steps: int, step_size: int = 100, gamma: float = 0.5,
                  decay: float = 0.99, lr_min: float = 0.0, warmup: int = 50,
                  warmup_start: float = 0.01) -> Callable[[int], float]:
    """Return lr_at(t). `gamma` is StepLR's factor, `decay` ExponentialLR's, `warmup` the ramp length in steps."""
    if name == "constant":
        return lambda t: lr
    if name == "step":
        return lambda t: lr * gamma ** (t // step_size)
    if name == "exponential":
        return lambda t: lr * decay ** t
    if name == "cosine":
        return lambda t: _cosine(t, lr, lr_min, total_steps)
    if name == "warmup_cosine":
        def lr_at(t: int) -> float:
            if t < warmup:
                return lr * (warmup_start + (1 - warmup_start) * t / warmup)
            return _cosine(t - warmup, lr, lr_min, max(total_steps - warmup, 1))
        return lr_at
    raise ValueError(f"unknown schedule {name!r}; choose from {', '.join(SCHEDULES)}")


def _cosine(t: int, lr: float, lr_min: float, period: int) -> float:
    return lr_min + (lr - lr_min) * (1 + math.cos(math.pi * t / period)) / 2
