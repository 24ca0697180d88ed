"""Optimizers that update the engine's parameters in place: SGD with momentum, and Adam (torch's formulas)."""

from __future__ import annotations

import numpy as np

from .tensor import Tensor


class Optimizer:
    def __init__(self, params, lr: float):
        self.params: list[Tensor] = list(params)
        if not self.params:
            raise ValueError("optimizer got no parameters")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        self.lr = lr
        self.state: dict[str, list] = {}

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict[str, np.ndarray]:
        out = {"lr": np.asarray(self.lr)}
        for key, arrays in self.state.items():
            for i, a in enumerate(arrays):
                out[f"{key}.{i}"] = np.asarray(a)
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.lr = float(state["lr"])
        for key, arrays in self.state.items():
            for i in range(len(arrays)):
                value = np.asarray(state[f"{key}.{i}"])
                arrays[i] = value.copy() if value.ndim else value.item()


class SGD(Optimizer):
    """v = momentum * v + (g + wd * p);  p -= lr * v   (torch.optim.SGD, dampening 0)."""

    def __init__(self, params, lr: float = 0.01, momentum: float = 0.0, weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.momentum, self.weight_decay = momentum, weight_decay
        self.state = {"velocity": [np.zeros_like(p.data) for p in self.params]}

    def step(self) -> None:
        for p, v in zip(self.params, self.state["velocity"]):
            if p.grad is None:
                continue
            g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
            if self.momentum:
                v *= self.momentum
                v += g
                g = v
            p.data -= self.lr * g


class Adam(Optimizer):
    """m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2;  p -= lr * m_hat / (sqrt(v_hat) + eps)  (torch.optim.Adam)."""

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0):
        super().__init__(params, lr)
        self.b1, self.b2 = betas
        self.eps, self.weight_decay = eps, weight_decay
        self.state = {"m": [np.zeros_like(p.data) for p in self.params],
                      "v": [np.zeros_like(p.data) for p in self.params], "t": [0]}

    def step(self) -> None:
        self.state["t"][0] += 1
        t = self.state["t"][0]
        c1, c2 = 1 - self.b1 ** t, 1 - self.b2 ** t
        for p, m, v in zip(self.params, self.state["m"], self.state["v"]):
            if p.grad is None:
                continue
            g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
            m *= self.b1
            m += (1 - self.b1) * g
            v *= self.b2
            v += (1 - self.b2) * (g * g)
            denom = np.sqrt(v / c2)
            denom += self.eps
            p.data -= (self.lr / c1) * m / denom
