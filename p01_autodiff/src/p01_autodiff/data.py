"""Data: the core's digits (or MNIST-10k) flattened to [0, 1] floats, or a generated 2-D toy set (moons, spiral)."""

from __future__ import annotations

import dataclasses

import numpy as np

from dlm_core.data import load_dataset
from dlm_core.seed import data_rng


@dataclasses.dataclass
class Data:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str]

    @property
    def n_features(self) -> int:
        return self.x_train.shape[1]


def load_data(dataset: str, seed: int = 0, dtype: str = "float32", n_points: int = 1500, noise: float = 0.2) -> Data:
    if dataset in ("moons", "spiral"):
        x, y = (make_moons if dataset == "moons" else make_spiral)(n_points, noise, seed)
        train, val, test = _split(len(y), seed)
        classes = [str(c) for c in range(int(y.max()) + 1)]
        return Data(x[train].astype(dtype), y[train], x[val].astype(dtype), y[val], x[test].astype(dtype), y[test],
                    classes)
    ds = load_dataset(dataset, seed=seed)
    scale = 255.0 if ds.train.x.dtype == np.uint8 else 1.0

    def flat(split):
        return (split.x.reshape(len(split.x), -1).astype(np.float64) / scale).astype(dtype), split.y.astype(np.int64)

    (xtr, ytr), (xva, yva), (xte, yte) = flat(ds.train), flat(ds.val), flat(ds.test)
    return Data(xtr, ytr, xva, yva, xte, yte, list(ds.classes))


def _split(n: int, seed: int, val: float = 0.2, test: float = 0.2):
    order = data_rng(seed, 1234).permutation(n)
    n_val, n_test = int(n * val), int(n * test)
    return order[n_val + n_test:], order[:n_val], order[n_val:n_val + n_test]


def make_moons(n: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved half circles (like sklearn's make_moons), Gaussian noise of std `noise`."""
    rng = data_rng(seed, 1)
    n_out = n // 2
    t_out, t_in = np.linspace(0, np.pi, n_out), np.linspace(0, np.pi, n - n_out)
    x = np.concatenate([np.stack([np.cos(t_out), np.sin(t_out)], 1),
                        np.stack([1 - np.cos(t_in), 0.5 - np.sin(t_in)], 1)])
    y = np.concatenate([np.zeros(n_out, np.int64), np.ones(n - n_out, np.int64)])
    return x + rng.normal(0, noise, x.shape), y


def make_spiral(n: int, noise: float, seed: int, arms: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """`arms` interleaved spirals (the CS231n toy set); angle noise of std `noise` radians."""
    rng = data_rng(seed, 2)
    per = n // arms
    xs, ys = [], []
    for k in range(arms):
        r = np.linspace(0.0, 1.0, per)
        theta = np.linspace(k * 4.0, (k + 1) * 4.0, per) + rng.normal(0, noise, per)
        xs.append(np.stack([r * np.sin(theta), r * np.cos(theta)], 1))
        ys.append(np.full(per, k, np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def batches(n: int, batch_size: int, seed: int, epoch: int) -> list[np.ndarray]:
    """The epoch's shuffled mini-batches; derived from (seed, epoch) so a resumed run sees the same ones."""
    order = data_rng(seed, epoch).permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]
