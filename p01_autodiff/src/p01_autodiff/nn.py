"""A small nn on top of the engine: Module (parameters, state_dict), Linear (He / Xavier init), MLP."""

from __future__ import annotations

import numpy as np

from .tensor import Tensor


class Module:
    """Base class: parameters() finds every Tensor that requires grad among the attributes, recursively."""

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError

    def named_parameters(self, prefix: str = "") -> list[tuple[str, Tensor]]:
        out = []
        for name, value in vars(self).items():
            items = list(enumerate(value)) if isinstance(value, (list, tuple)) else [(None, value)]
            for i, v in items:
                full = f"{prefix}{name}" + (f".{i}" if i is not None else "")
                if isinstance(v, Tensor) and v.requires_grad:
                    out.append((full, v))
                elif isinstance(v, Module):
                    out.extend(v.named_parameters(full + "."))
        return out

    def parameters(self) -> list[Tensor]:
        return [p for _, p in self.named_parameters()]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    def state_dict(self) -> dict[str, np.ndarray]:
        return {name: p.data.copy() for name, p in self.named_parameters()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        params = dict(self.named_parameters())
        if set(params) != set(state):
            raise KeyError(f"state_dict keys differ: missing {sorted(set(params) - set(state))}, "
                           f"unexpected {sorted(set(state) - set(params))}")
        for name, p in params.items():
            if state[name].shape != p.shape:
                raise ValueError(f"{name}: shape {state[name].shape} in the state, {p.shape} in the model")
            p.data = np.array(state[name], dtype=p.dtype)


class Linear(Module):
    """y = x W + b with W of shape (in, out).

    He init (std sqrt(2/in)) suits ReLU: it keeps the activations' variance constant through the layers.
    Xavier init (std sqrt(2/(in+out))) suits tanh / sigmoid.
    """

    def __init__(self, n_in: int, n_out: int, bias: bool = True, init: str = "he", rng=None, dtype=np.float64):
        rng = rng if rng is not None else np.random.default_rng(0)
        if init == "he":
            std = np.sqrt(2.0 / n_in)
        elif init == "xavier":
            std = np.sqrt(2.0 / (n_in + n_out))
        else:
            raise ValueError(f"init {init!r}: use he or xavier")
        self.weight = Tensor((rng.standard_normal((n_in, n_out)) * std).astype(dtype), requires_grad=True)
        self.bias = Tensor(np.zeros(n_out, dtype=dtype), requires_grad=True) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        y = x @ self.weight
        return y + self.bias if self.bias is not None else y


ACTIVATIONS = {"relu": Tensor.relu, "tanh": Tensor.tanh, "sigmoid": Tensor.sigmoid}


class MLP(Module):
    """Linear layers with an activation between them (none after the last): sizes = [in, h1, ..., out]."""

    def __init__(self, sizes: list[int], activation: str = "relu", init: str | None = None, seed: int = 0,
                 dtype=np.float64):
        if len(sizes) < 2:
            raise ValueError("MLP needs at least [n_in, n_out]")
        if activation not in ACTIVATIONS:
            raise ValueError(f"activation {activation!r}: use one of {sorted(ACTIVATIONS)}")
        init = init or ("he" if activation == "relu" else "xavier")
        rng = np.random.default_rng(seed)
        self.activation = activation
        self.layers = [Linear(a, b, init=init, rng=rng, dtype=dtype) for a, b in zip(sizes[:-1], sizes[1:])]

    def forward(self, x: Tensor) -> Tensor:
        act = ACTIVATIONS[self.activation]
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i < len(self.layers) - 1:
                x = act(x)
        return x
