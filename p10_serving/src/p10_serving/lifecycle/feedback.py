"""Labelled feedback: class labels checked, and the training example a retrain learns from (rows live in the store)."""

from __future__ import annotations

import numpy as np

from dlm_core.predictors import BadInput, Predictor

CLASSIFIERS = ("image-classification", "text-classification")


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
