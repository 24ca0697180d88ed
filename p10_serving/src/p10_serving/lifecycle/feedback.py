"""Labelled feedback: a bounded store per model of (training example, label, served version right?, version)."""

from __future__ import annotations

import collections

import numpy as np

from dlm_core.predictors import BadInput, Predictor

CLASSIFIERS = ("image-classification", "text-classification")


class FeedbackStore:
    """Labelled rows per model: the training example (raw), its label, and whether the version serving at the
    time got it right (for the live accuracy). Bounded; `count` only grows (episode onsets refer to it)."""

    def __init__(self, size: int):
        self.rows: collections.deque = collections.deque(maxlen=size)
        self.count = 0
        self.per_version: collections.Counter = collections.Counter()

    def add(self, xs: list, labels: list[int], correct: list[bool], version: str) -> None:
        for x, y, c in zip(xs, labels, correct):
            self.rows.append((x, y, c, version, self.count))
            self.count += 1
        self.per_version[version] += len(labels)

    def accuracy(self, version: str, window: int) -> tuple[float | None, int]:
        """Accuracy over the last `window` rows answered by `version` (None until there are that many)."""
        hits = [c for _, _, c, v, _ in reversed(self.rows) if v == version][:window]
        return (float(np.mean(hits)) if len(hits) >= window else None), len(hits)

    def since(self, start: int) -> list[tuple]:
        return [r for r in self.rows if r[4] >= start]


def class_indices(p: Predictor, labels: list) -> list[int]:
    """Class names or indices -> indices (BadInput naming the first bad one)."""
    if p.task not in CLASSIFIERS:
        raise BadInput(f"feedback takes class labels; {p.name} is a {p.task} model")
    names = list(p.post["labels"])
    ys = []
    for i, label in enumerate(labels):
        if isinstance(label, bool) or not isinstance(label, (int, str)):
            raise BadInput(f"labels[{i}]: a class name or index, got {label!r}")
        if isinstance(label, int):
            if not 0 <= label < len(names):
                raise BadInput(f"labels[{i}]: class index {label} outside 0..{len(names) - 1}")
            ys.append(label)
        elif label in names:
            ys.append(names.index(label))
        else:
            raise BadInput(f"labels[{i}]: unknown class {label!r}; one of {names}")
    return ys


def training_example(p: Predictor, row, item):
    """What a retrainer learns from: an image's pixels (H, W) in 0..255 (as the model saw them, after decoding
    and resizing), or a text as sent."""
    if p.task == "image-classification":
        return ((row * p.std + p.mean) / p.pre["scale"]).mean(0).astype(np.float32)
    return str(item)
