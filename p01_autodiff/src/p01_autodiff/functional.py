"""Losses and softmax built from the engine, with fused (stable and fast) local derivatives."""

from __future__ import annotations

import numpy as np

from .tensor import Tensor, tensor


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """x - logsumexp(x): the max is subtracted first so exp never overflows.

    d/dx: g - softmax(x) * sum(g) along the axis.
    """
    x = tensor(x)
    shifted = x.data - x.data.max(axis=axis, keepdims=True)
    out = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))

    def backward(g):
        return (g - np.exp(out) * g.sum(axis=axis, keepdims=True),)

    return Tensor._make(out, (x,), backward, "log_softmax")


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    return log_softmax(x, axis).exp()


def cross_entropy(logits: Tensor, targets) -> Tensor:
    """Mean negative log-likelihood of integer class targets under softmax(logits); logits (N, C).

    d/dlogits = (softmax(logits) - onehot(targets)) / N.
    """
    logits = tensor(logits)
    y = np.asarray(targets.data if isinstance(targets, Tensor) else targets).astype(np.intp)
    if logits.ndim != 2 or y.shape != (logits.shape[0],):
        raise ValueError(f"cross_entropy wants logits (N, C) and N integer targets, got {logits.shape} and {y.shape}")
    n = logits.shape[0]
    shifted = logits.data - logits.data.max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    rows = np.arange(n)
    loss = np.asarray(-logp[rows, y].mean(), dtype=logits.dtype)

    def backward(g):
        d = np.exp(logp)
        d[rows, y] -= 1
        return (d * (g / n),)

    return Tensor._make(loss, (logits,), backward, "cross_entropy")


def mse(pred: Tensor, target) -> Tensor:
    """Mean squared error; target may be a Tensor that requires grad too (shapes broadcast)."""
    diff = tensor(pred) - target
    return (diff * diff).mean()
