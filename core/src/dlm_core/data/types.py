"""What loaders return: plain numpy arrays and strings, split train/val/test."""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class Split:
    x: np.ndarray
    y: np.ndarray

    def __len__(self) -> int:
        return len(self.x)


@dataclasses.dataclass
class ArrayDataset:
    """Images (N, H, W) uint8 or tabular (N, D) float32, with integer labels."""

    name: str
    train: Split
    val: Split
    test: Split
    classes: list[str]
    info: dict = dataclasses.field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclasses.dataclass
class TextDataset:
    """A corpus split into contiguous train/val/test strings (no line leaks across splits)."""

    name: str
    train: str
    val: str
    test: str
    info: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class SeriesDataset:
    """One univariate series with per-point anomaly labels; values[:train_end] is anomaly-free."""

    name: str
    values: np.ndarray
    labels: np.ndarray
    train_end: int
    info: dict = dataclasses.field(default_factory=dict)


def stratified_split(y: np.ndarray, sizes: tuple[float | int, float | int], seed: int):
    """Indices (rest, a, b) with `a` and `b` of the given sizes (fractions or counts), stratified by y."""
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    size_a, size_b = sizes
    n = len(y)
    n_a = size_a if isinstance(size_a, int) else int(round(size_a * n))
    n_b = size_b if isinstance(size_b, int) else int(round(size_b * n))
    rest, held = train_test_split(idx, test_size=n_a + n_b, stratify=y, random_state=seed)
    a, b = train_test_split(held, test_size=n_b, stratify=y[held], random_state=seed + 1)
    return np.sort(rest), np.sort(a), np.sort(b)
