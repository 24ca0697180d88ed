"""Seeding and data-order generators. One seed gives the same numbers on CPU, run after run."""

from __future__ import annotations

import os
import random

import numpy as np


def seed_everything(seed: int, deterministic: bool = True) -> None:
    """Seed python, numpy and (when installed) torch; optionally ask torch for deterministic kernels."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def data_rng(seed: int, *stream: int) -> np.random.Generator:
    """An independent numpy generator for one purpose, e.g. data_rng(seed, epoch) for an epoch's order.

    Deriving the order from (seed, epoch) instead of a running generator makes resumed runs
    see exactly the batches an uninterrupted run would have seen.
    """
    return np.random.default_rng([seed, *stream])


def torch_generator(seed: int, *stream: int):
    """A torch.Generator seeded from (seed, *stream), for DataLoader shuffling and sampling."""
    import torch

    g = torch.Generator()
    g.manual_seed(int(data_rng(seed, *stream).integers(0, 2**62)))
    return g
