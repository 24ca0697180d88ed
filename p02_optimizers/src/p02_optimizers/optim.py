"""Optimizers written by hand in numpy, one short class each, with the update rules of torch.optim.

The interface is deliberately tiny:

    opt = Adam([w, b], lr=1e-3)          # params: numpy float arrays, updated IN PLACE
    opt.step([dw, db])                   # one update from the gradients (same order as params)
    opt.lr = 0.5e-3                      # a schedule just sets opt.lr before each step (see schedules.py)

Each optimizer keeps a small state dict per parameter (momentum buffer, running averages ...).
The formulas follow torch.optim's defaults exactly (tests/test_parity.py checks 200 steps to 1e-8),
so what you read here is what `torch.optim.Adam` and friends really do.
"""

from __future__ import annotations

import math

import numpy as np


def clip_grad_norm(grads: list[np.ndarray], max_norm: float) -> tuple[list[np.ndarray], float]:
    """Scale all gradients together so their joint L2 norm is at most max_norm (torch.nn.utils.clip_grad_norm_).

    Returns the (possibly scaled) gradients and the norm before clipping.
    """
    total = float(np.sqrt(sum(float(np.sum(g * g)) for g in grads)))
    coef = min(max_norm / (total + 1e-6), 1.0)  # torch adds 1e-6 and clamps the coefficient at 1
    return [g * coef for g in grads], total


class Optimizer:
    """Base class: holds params, lr, optional gradient clipping and per-parameter state; subclasses define update."""

    def __init__(self, params: list[np.ndarray], lr: float, clip_norm: float | None = None):
        if lr < 0:
            raise ValueError(f"lr must be >= 0, got {lr}")
        self.params = list(params)
        self.lr = float(lr)
        self.clip_norm = clip_norm
        self.state: list[dict] = [{} for _ in self.params]
        self.t = 0  # number of steps taken
        self.last_grad_norm = 0.0

    def step(self, grads: list[np.ndarray]) -> None:
        self.t += 1
        grads = [np.asarray(g, dtype=p.dtype) for p, g in zip(self.params, grads, strict=True)]
        if self.clip_norm is not None:
            grads, self.last_grad_norm = clip_grad_norm(grads, self.clip_norm)
        for p, g, s in zip(self.params, grads, self.state):
            self.update(p, g, s)

    def update(self, p: np.ndarray, g: np.ndarray, s: dict) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class SGD(Optimizer):
    """p <- p - lr * g. Optional L2 weight decay (added to the gradient)."""

    def __init__(self, params, lr, weight_decay: float = 0.0, **kw):
        super().__init__(params, lr, **kw)
        self.weight_decay = weight_decay

    def update(self, p, g, s):
        if self.weight_decay:
            g = g + self.weight_decay * p
        p -= self.lr * g


class Momentum(Optimizer):
    """Heavy ball: a velocity that accumulates gradients, v <- mu*v + g; p <- p - lr*v (first v = g, as torch)."""

    nesterov = False

    def __init__(self, params, lr, momentum: float = 0.9, weight_decay: float = 0.0, **kw):
        super().__init__(params, lr, **kw)
        self.momentum = momentum
        self.weight_decay = weight_decay

    def update(self, p, g, s):
        if self.weight_decay:
            g = g + self.weight_decay * p
        if "v" not in s:
            s["v"] = g.copy()
        else:
            s["v"] = self.momentum * s["v"] + g
        # Nesterov: step along the gradient plus the velocity we are about to add ("look ahead")
        direction = g + self.momentum * s["v"] if self.nesterov else s["v"]
        p -= self.lr * direction


class Nesterov(Momentum):
    """Nesterov momentum in torch's form: p <- p - lr*(g + mu*v) with v updated first."""

    nesterov = True


class Adagrad(Optimizer):
    """Per-coordinate lr that shrinks with the sum of all past squared gradients: p <- p - lr*g/(sqrt(G)+eps)."""

    def __init__(self, params, lr, eps: float = 1e-10, weight_decay: float = 0.0, **kw):
        super().__init__(params, lr, **kw)
        self.eps = eps
        self.weight_decay = weight_decay

    def update(self, p, g, s):
        if self.weight_decay:
            g = g + self.weight_decay * p
        s["sum"] = s.get("sum", 0.0) + g * g
        p -= self.lr * g / (np.sqrt(s["sum"]) + self.eps)


class RMSprop(Optimizer):
    """Adagrad with a leaky memory: a running mean of squared gradients, v <- a*v + (1-a)*g^2."""

    def __init__(self, params, lr, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0, **kw):
        super().__init__(params, lr, **kw)
        self.alpha, self.eps, self.weight_decay = alpha, eps, weight_decay

    def update(self, p, g, s):
        if self.weight_decay:
            g = g + self.weight_decay * p
        s["v"] = self.alpha * s.get("v", 0.0) + (1 - self.alpha) * g * g
        p -= self.lr * g / (np.sqrt(s["v"]) + self.eps)


class Adam(Optimizer):
    """Momentum (m, mean of g) divided by RMS (v, mean of g^2), both bias-corrected for their zero start.

    weight_decay here is L2 (added to the gradient, then rescaled by v): the thing AdamW fixes.
    """

    decoupled = False

    def __init__(self, params, lr, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, **kw):
        super().__init__(params, lr, **kw)
        self.b1, self.b2 = betas
        self.eps, self.weight_decay = eps, weight_decay

    def update(self, p, g, s):
        if self.weight_decay and self.decoupled:
            p *= 1 - self.lr * self.weight_decay  # AdamW: shrink the weights directly, not through g
        elif self.weight_decay:
            g = g + self.weight_decay * p
        s["m"] = self.b1 * s.get("m", 0.0) + (1 - self.b1) * g
        s["v"] = self.b2 * s.get("v", 0.0) + (1 - self.b2) * g * g
        bias1 = 1 - self.b1 ** self.t
        bias2 = 1 - self.b2 ** self.t
        denom = np.sqrt(s["v"]) / math.sqrt(bias2) + self.eps  # math.sqrt: a Python float keeps float32 float32
        p -= (self.lr / bias1) * s["m"] / denom


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): p <- p*(1 - lr*wd), then the Adam step."""

    decoupled = True

    def __init__(self, params, lr, weight_decay: float = 0.01, **kw):
        super().__init__(params, lr, weight_decay=weight_decay, **kw)


OPTIMIZERS: dict[str, type[Optimizer]] = {
    "sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adagrad": Adagrad,
    "rmsprop": RMSprop, "adam": Adam, "adamw": AdamW,
}


def make_optimizer(name: str, params: list[np.ndarray], lr: float, **kw) -> Optimizer:
    return OPTIMIZERS[name](params, lr, **kw)
