"""Looking at a trained network's loss landscape.

- filter_normalized_direction: a random direction with each filter (row of a weight matrix) rescaled to the
  norm of the same filter in the trained weights; biases get zero (Li et al., 2018, "Visualizing the Loss
  Landscape of Neural Nets"). This makes slices of differently-scaled solutions comparable.
- loss_slice: the loss on theta + a*d1 + b*d2 over a grid of (a, b).
- top_hessian_eigenvalue: power iteration on Hessian-vector products (double backprop), never forming H.
"""

from __future__ import annotations

import numpy as np
import torch


def filter_normalized_direction(model: torch.nn.Module, generator: torch.Generator) -> list[torch.Tensor]:
    direction = []
    for p in model.parameters():
        d = torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
        if p.dim() <= 1:
            d.zero_()  # biases: Li et al. leave them out of the direction
        else:
            rows_d = d.view(d.shape[0], -1)
            rows_p = p.detach().view(p.shape[0], -1)
            rows_d.mul_(rows_p.norm(dim=1, keepdim=True) / (rows_d.norm(dim=1, keepdim=True) + 1e-10))
        direction.append(d)
    return direction


@torch.no_grad()
def loss_slice(model, loss_fn, x, y, d1, d2, span: float, grid: int) -> np.ndarray:
    """z[i, j] = loss(theta + a_j d1 + b_i d2) for a, b in linspace(-span, span, grid). Restores theta."""
    theta = [p.detach().clone() for p in model.parameters()]
    coords = np.linspace(-span, span, grid)
    z = np.empty((grid, grid))
    model.eval()
    try:
        for i, b in enumerate(coords):
            for j, a in enumerate(coords):
                for p, t, u, v in zip(model.parameters(), theta, d1, d2):
                    p.copy_(t + float(a) * u + float(b) * v)
                z[i, j] = float(loss_fn(model(x), y))
    finally:
        for p, t in zip(model.parameters(), theta):
            p.copy_(t)
        model.train()
    return z


def hvp(model, loss_fn, x, y, vec: list[torch.Tensor]) -> list[torch.Tensor]:
    """Hessian-vector product H v of the loss at the current weights (Pearlmutter's trick via double backprop)."""
    params = [p for p in model.parameters()]
    loss = loss_fn(model(x), y)
    grads = torch.autograd.grad(loss, params, create_graph=True)
    dot = sum((g * v).sum() for g, v in zip(grads, vec))
    return [h.detach() for h in torch.autograd.grad(dot, params)]


def top_hessian_eigenvalue(model, loss_fn, x, y, iters: int = 50, tol: float = 1e-4, seed: int = 0
                           ) -> tuple[float, list[float]]:
    """Largest-magnitude Hessian eigenvalue by power iteration: v <- Hv/|Hv|, lambda = v.Hv.

    Returns (lambda, history). Stops when lambda changes by less than tol (relative).
    """
    g = torch.Generator().manual_seed(seed)
    v = [torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device) for p in model.parameters()]
    norm = torch.sqrt(sum((u * u).sum() for u in v))
    v = [u / norm for u in v]
    history: list[float] = []
    lam = 0.0
    model.eval()
    for _ in range(iters):
        hv = hvp(model, loss_fn, x, y, v)
        lam_new = float(sum((a * b).sum() for a, b in zip(v, hv)))
        norm = torch.sqrt(sum((u * u).sum() for u in hv))
        v = [u / (norm + 1e-12) for u in hv]
        history.append(lam_new)
        if history[:-1] and abs(lam_new - lam) < tol * abs(lam_new):
            lam = lam_new
            break
        lam = lam_new
    model.train()
    return lam, history
