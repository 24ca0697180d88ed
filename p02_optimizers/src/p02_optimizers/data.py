"""Real data for the network-landscape part: a core dataset, flattened to vectors, as torch tensors."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from dlm_core.data import load_dataset


@dataclasses.dataclass
class Data:
    x_train: object  # torch tensors on `device`
    y_train: object
    x_val: object
    y_val: object
    x_test: object
    y_test: object
    n_classes: int
    device: object
    raw: dict  # the numpy arrays (for the logistic-regression baseline)


def load_data(dataset: str, seed: int, device) -> Data:
    """Load a core dataset (digits: 8x8 in [0, 1]; mnist10k: 28x28 uint8), flatten and scale to [0, 1]."""
    ds = load_dataset(dataset, seed=seed)
    scale = 255.0 if ds.train.x.dtype == np.uint8 else 1.0
    arrays = {}
    for name in ("train", "val", "test"):
        split = getattr(ds, name)
        arrays[f"x_{name}"] = split.x.reshape(len(split.x), -1).astype(np.float32) / scale
        arrays[f"y_{name}"] = split.y.astype(np.int64)
    tensors = {k: torch.from_numpy(v).to(device) for k, v in arrays.items()}
    return Data(**tensors, n_classes=len(ds.classes), device=device, raw=arrays)
