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


class Scorer(nn.Module):
    """Wraps an autoencoder: input batch -> anomaly score per input, shape (N,); what the threshold, the detector and
    the ONNX export use.

    Without `code` stats: the mean (blurred) squared reconstruction error, as ErrorModel. With them (images,
    --code-weight > 0): that error plus `weight` x the squared Mahalanobis distance of the bottleneck code under a
    Gaussian fitted on the training codes, each term standardised by its mean and std on the normal validation
    inputs (so the weight has no unit). The error sees what the decoder cannot rebuild; the distance sees codes far
    from the normal ones, which a decoder that generalises well may still rebuild."""

    def __init__(self, ae: nn.Module, blur_sigma: float = 0.0, code: dict | None = None):
        super().__init__()
        self.ae = ae
        self.blur = ResidualBlur(blur_sigma)
        self.weight = float(code["weight"]) if code else 0.0
        if self.weight:
            self.register_buffer("mean", torch.tensor(code["mean"], dtype=torch.float32), persistent=False)
            self.register_buffer("precision", torch.tensor(code["precision"], dtype=torch.float32), persistent=False)
            self.norm = [float(code[k]) for k in ("error_mean", "error_std", "distance_mean", "distance_std")]

    def forward(self, x):
        z = self.ae.encoder(x)
        error = error_map(self.ae.decoder(z) - x, self.blur).flatten(1).mean(1)
        if not self.weight:
            return error
        d = z - self.mean
        distance = ((d @ self.precision) * d).sum(1)
        e_mean, e_std, d_mean, d_std = self.norm
        return (error - e_mean) / e_std + self.weight * (distance - d_mean) / d_std


@torch.no_grad()
def image_scores(scorer: nn.Module, x, batch_size: int = 512, device="cpu") -> np.ndarray:
    """Scorer (or ErrorModel) outputs for a numpy batch, as float64 numpy (N,)."""
    scorer.eval()
    out = [scorer(torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size])).to(device)).cpu().numpy()
           for i in range(0, len(x), batch_size)]
    return np.concatenate(out).astype(np.float64) if out else np.zeros(0)


@torch.no_grad()
def code_stats(ae: nn.Module, x_train, x_val, blur_sigma: float, weight: float, device="cpu") -> dict:
    """What Scorer needs for the code term, as JSON-able lists: the mean and precision (inverse covariance, small
    ridge) of the training codes, and the normal validation inputs' mean and std of both terms."""
    ae.eval()
    codes = lambda x: np.concatenate([ae.encoder(torch.from_numpy(np.ascontiguousarray(x[i:i + 512])).to(device))
                                      .cpu().double().numpy() for i in range(0, len(x), 512)])
    c = codes(x_train)
    mean = c.mean(0)
    precision = np.linalg.inv(np.cov(c, rowvar=False) + 1e-6 * np.eye(c.shape[1]))
    d = codes(x_val) - mean
    distance = ((d @ precision) * d).sum(1)
    error = image_scores(Scorer(ae, blur_sigma), x_val, device=device)
    return {"weight": float(weight), "mean": mean.tolist(), "precision": precision.tolist(),
            "error_mean": float(error.mean()), "error_std": float(error.std() + 1e-12),
            "distance_mean": float(distance.mean()), "distance_std": float(distance.std() + 1e-12)}


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
