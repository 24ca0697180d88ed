"""Binarised images for a Bernoulli likelihood: dynamic binarisation for training, fixed for val/test."""

from __future__ import annotations

import numpy as np

from dlm_core.data import load_dataset
from dlm_core.seed import data_rng


def load_images(name: str, seed: int = 0, max_train: int = 0):
    """Grey levels in [0, 1] as float32 (N, 1, 28, 28) per split, plus labels and class names."""
    ds = load_dataset(name, seed=seed)
    to_float = lambda x: (x.astype(np.float32) / 255.0)[:, None]
    train_x, train_y = to_float(ds.train.x), ds.train.y
    if max_train:
        train_x, train_y = train_x[:max_train], train_y[:max_train]
    return {"train": (train_x, train_y), "val": (to_float(ds.val.x), ds.val.y),
            "test": (to_float(ds.test.x), ds.test.y), "classes": ds.classes}


def binarize(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each pixel is 1 with probability equal to its grey level (stochastic binarisation)."""
    return (rng.random(x.shape, dtype=np.float32) < x).astype(np.float32)


def fixed_binarization(x: np.ndarray, seed: int, split: str) -> np.ndarray:
    """One binarisation per split, the same in every run: evaluation numbers are comparable."""
    return binarize(x, data_rng(seed, {"val": 1, "test": 2}[split], 7))
