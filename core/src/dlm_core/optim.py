"""Optimizer pieces the trainers share: the weight-decay split and the cosine learning-rate schedules.

    opt = torch.optim.AdamW(decay_groups(model, cfg.weight_decay), lr=cfg.lr)
    lr = warmup_cosine(step, total_steps, cfg.warmup_steps, cfg.lr)     # step 0, 1, ... (nanoGPT's get_lr)
    lr = cosine_decay(progress, peak=cfg.lr, floor=cfg.lr * 0.1)        # progress 0 -> 1

(p02 writes its schedules by hand: they are what it teaches.)
"""

from __future__ import annotations

import math
from collections.abc import Callable


def cosine_decay(progress: float, peak: float, floor: float = 0.0) -> float:
    """Half a cosine from `peak` at progress 0 down to `floor` at progress >= 1."""
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def warmup_cosine(step: int, total: int, warmup: int, peak: float, floor: float = 0.0) -> float:
    """The learning rate of 0-based `step`: a linear ramp peak * (step + 1) / warmup over the first `warmup`
    steps, then cosine_decay from peak to floor over the steps left until `total`. peak=1.0 gives a multiplier
    (for torch's LambdaLR)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return cosine_decay((step - warmup) / max(1, total - warmup), peak, floor)


def decay_groups(model, weight_decay: float, exempt: Callable[[str, object], bool] | None = None) -> list[dict]:
    """Two parameter groups: weight decay on the matrices (ndim >= 2: linear, conv, embedding weights), none on
    the vectors and scalars (biases, norm scales, temperatures), nor on any matrix `exempt(name, param)` names
    (a position table, an embedding...). Parameters that do not train (requires_grad False) are left out.
    Decaying a bias or a norm scale only pulls it toward 0, which nothing asks for."""
    decay, rest = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.ndim >= 2 and not (exempt is not None and exempt(name, p)) else rest).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
