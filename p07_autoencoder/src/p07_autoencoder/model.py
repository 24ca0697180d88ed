"""Three autoencoders (dense for tables, 2D-conv for 28x28 images, 1D-conv for series windows) and the
wrapper that turns any of them into a per-input anomaly score (what the ONNX export returns)."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


class DenseAE(nn.Module):
    """d -> width -> width/2 -> bottleneck -> width/2 -> width -> d (linear output: standardised features)."""

    def __init__(self, d: int, bottleneck: int, width: int = 32):
        super().__init__()
        h2 = max(width // 2, bottleneck)
        self.encoder = nn.Sequential(nn.Linear(d, width), nn.ReLU(), nn.Linear(width, h2), nn.ReLU(),
                                     nn.Linear(h2, bottleneck))
        self.decoder = nn.Sequential(nn.Linear(bottleneck, h2), nn.ReLU(), nn.Linear(h2, width), nn.ReLU(),
                                     nn.Linear(width, d))

    def forward(self, x):
        return self.decoder(self.encoder(x))


class ConvAE(nn.Module):
    """1x28x28 -> (w, 14x14) -> (2w, 7x7) -> bottleneck -> mirror with transposed convs -> sigmoid pixels."""

    def __init__(self, bottleneck: int, width: int = 32):
        super().__init__()
        w = width
        self.encoder = nn.Sequential(
            nn.Conv2d(1, w, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(), nn.Linear(2 * w * 7 * 7, bottleneck))
        self.decoder = nn.Sequential(
            nn.Linear(bottleneck, 2 * w * 7 * 7), nn.ReLU(), nn.Unflatten(1, (2 * w, 7, 7)),
            nn.ConvTranspose2d(2 * w, w, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose2d(w, 1, 4, stride=2, padding=1), nn.Sigmoid())

    def forward(self, x):
        return self.decoder(self.encoder(x))


class Conv1dAE(nn.Module):
    """1 x window -> (w, L/2) -> (2w, L/4) -> bottleneck -> mirror (linear output: standardised values)."""

    def __init__(self, window: int, bottleneck: int, width: int = 16):
        super().__init__()
        w, q = width, window // 4
        self.encoder = nn.Sequential(
            nn.Conv1d(1, w, 5, stride=2, padding=2), nn.ReLU(),
            nn.Conv1d(w, 2 * w, 5, stride=2, padding=2), nn.ReLU(),
            nn.Flatten(), nn.Linear(2 * w * q, bottleneck))
        self.decoder = nn.Sequential(
            nn.Linear(bottleneck, 2 * w * q), nn.ReLU(), nn.Unflatten(1, (2 * w, q)),
            nn.ConvTranspose1d(2 * w, w, 4, stride=2, padding=1), nn.ReLU(),
            nn.ConvTranspose1d(w, 1, 4, stride=2, padding=1))

    def forward(self, x):
        return self.decoder(self.encoder(x))


def build_model(kind: str, input_shape: list[int], bottleneck: int, width: int) -> nn.Module:
    if kind == "image":
        return ConvAE(bottleneck, width)
    if kind == "tabular":
        return DenseAE(input_shape[0], bottleneck, width)
    return Conv1dAE(input_shape[-1], bottleneck, width)


class ResidualBlur(nn.Module):
    """Gaussian blur (std `sigma` pixels, kernel radius ceil(4 sigma), zero padding) of an image residual.

    Squaring a blurred residual scores shape differences and ignores pixel-level texture (prints, stripes) that
    no small bottleneck can rebuild; sigma = 0 is the identity (plain squared error)."""

    def __init__(self, sigma: float = 0.0):
        super().__init__()
        self.sigma = float(sigma)
        radius = math.ceil(4 * self.sigma)
        t = torch.arange(-radius, radius + 1, dtype=torch.float32)
        g = torch.exp(-0.5 * (t / max(self.sigma, 1e-12)) ** 2) if self.sigma > 0 else (t == 0).float()
        g = g / g.sum()
        self.radius = radius
        self.register_buffer("kernel", torch.outer(g, g)[None, None], persistent=False)

    def forward(self, r):
        if self.sigma == 0:
            return r
        return F.conv2d(r, self.kernel.to(r.dtype), padding=self.radius)


def error_map(residual: torch.Tensor, blur: ResidualBlur | None) -> torch.Tensor:
    """Per-element squared error of a residual (x_hat - x), blurred first for images when blur.sigma > 0."""
    if blur is not None and blur.sigma > 0 and residual.dim() == 4:
        residual = blur(residual)
    return residual.pow(2)


class ErrorModel(nn.Module):
    """Wraps an autoencoder: input batch -> per-input mean (blurred) squared reconstruction error, shape (N,)."""

    def __init__(self, ae: nn.Module, blur_sigma: float = 0.0):
        super().__init__()
        self.ae = ae
        self.blur = ResidualBlur(blur_sigma)

    def forward(self, x):
        return error_map(self.ae(x) - x, self.blur).flatten(1).mean(1)


@torch.no_grad()
def squared_errors(model: nn.Module, x, batch_size: int = 512, device="cpu", blur_sigma: float = 0.0):
    """Per-element squared reconstruction error of a numpy batch, flattened to (N, features), as numpy.
    For images with blur_sigma > 0 the residual is Gaussian-blurred before squaring (see ResidualBlur)."""
    model.eval()
    blur = ResidualBlur(blur_sigma).to(device)
    out = []
    for i in range(0, len(x), batch_size):
        xb = torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size])).to(device)
        out.append(error_map(model(xb) - xb, blur).flatten(1).cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, int(np.prod(x.shape[1:]))), np.float32)


def residual_errors(residual, blur_sigma: float = 0.0):
    """error_map for a numpy residual (another model's reconstruction minus input, e.g. PCA's), as numpy."""
    return error_map(torch.from_numpy(residual.astype("float32")), ResidualBlur(blur_sigma)).numpy()
