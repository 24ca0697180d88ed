"""gradcheck: compare the engine's gradients with central finite differences, in float64."""

from __future__ import annotations

import dataclasses

import numpy as np

from .tensor import Tensor, no_grad


@dataclasses.dataclass
class GradcheckResult:
    ok: bool
    max_abs_err: float
    max_rel_err: float
    worst: dict  # the worst entry: input, index, analytic, numeric

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        w = self.worst
        return (f"gradcheck {'ok' if self.ok else 'FAILED'}: max abs err {self.max_abs_err:.3g}, max rel err "
                f"{self.max_rel_err:.3g}; worst entry input {w.get('input')} index {w.get('index')}: "
                f"analytic {w.get('analytic', float('nan')):.8g} vs numeric {w.get('numeric', float('nan')):.8g}")


def gradcheck(fn, *inputs, eps: float = 1e-6, atol: float = 1e-6, rtol: float = 1e-4, seed: int = 0) -> GradcheckResult:
    """Check d fn(*inputs) / d inputs against central differences (f(x+eps) - f(x-eps)) / 2 eps.

    The inputs are copied to float64 tensors that require grad; fn may return any shape: it is reduced to
    the scalar sum(out * w) with fixed random weights w, so every output entry is checked. An entry passes
    when |analytic - numeric| <= atol + rtol * |numeric|. Returns a GradcheckResult (truthy when ok) that
    names the worst entry.
    """
    xs = [Tensor(np.array(x.data if isinstance(x, Tensor) else x, dtype=np.float64), requires_grad=True)
          for x in inputs]
    out = fn(*xs)
    weights = np.random.default_rng(seed).standard_normal(out.shape)

    def scalar(*args) -> float:
        with no_grad():
            return float(np.sum(fn(*args).data * weights))

    (out * weights).sum().backward()
    worst, max_abs, max_rel, ok = {}, 0.0, 0.0, True
    for i, x in enumerate(xs):
        analytic = x.grad if x.grad is not None else np.zeros_like(x.data)
        for idx in np.ndindex(x.shape):
            saved = x.data[idx]
            x.data[idx] = saved + eps
            plus = scalar(*xs)
            x.data[idx] = saved - eps
            minus = scalar(*xs)
            x.data[idx] = saved
            numeric = (plus - minus) / (2 * eps)
            err = abs(analytic[idx] - numeric)
            rel = err / max(abs(numeric), 1e-12)
            bad = err > atol + rtol * abs(numeric)
            ok &= not bad
            if err >= max_abs or not worst:
                worst = {"input": i, "index": idx, "analytic": float(analytic[idx]), "numeric": float(numeric)}
            max_abs, max_rel = np.maximum(max_abs, err), np.maximum(max_rel, rel)
    return GradcheckResult(bool(ok), float(max_abs), float(max_rel), worst)
