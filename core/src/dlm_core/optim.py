"""Optimizer pieces the trainers share.

    opt = torch.optim.AdamW(decay_groups(model, cfg.weight_decay), lr=cfg.lr)
"""

from __future__ import annotations

from collections.abc import Callable


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
