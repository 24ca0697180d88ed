"""Convolutional VAE: q(z|x) = N(mu, diag(exp(logvar))), p(z) = N(0, I), p(x|z) = Bernoulli(logits)."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

LOG_2PI = math.log(2 * math.pi)


class Encoder(nn.Module):
    def __init__(self, latent_dim: int, channels: int = 32, hidden: int = 256):
        super().__init__()
        c = channels
        self.conv = nn.Sequential(
            nn.Conv2d(1, c, 4, stride=2, padding=1), nn.ReLU(),          # 28 -> 14
            nn.Conv2d(c, 2 * c, 4, stride=2, padding=1), nn.ReLU(),      # 14 -> 7
            nn.Flatten(), nn.Linear(2 * c * 7 * 7, hidden), nn.ReLU())
        self.mu = nn.Linear(hidden, latent_dim)
        self.logvar = nn.Linear(hidden, latent_dim)

    def forward(self, x):
        h = self.conv(x)
        return self.mu(h), self.logvar(h)


class Decoder(nn.Module):
    def __init__(self, latent_dim: int, channels: int = 32, hidden: int = 256):
        super().__init__()
        c = channels
        self.fc = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * c * 7 * 7), nn.ReLU())
        self.deconv = nn.Sequential(
            nn.ConvTranspose2d(2 * c, c, 4, stride=2, padding=1), nn.ReLU(),  # 7 -> 14
            nn.ConvTranspose2d(c, 1, 4, stride=2, padding=1))                 # 14 -> 28 (logits)
        self.c = c

    def forward(self, z):
        return self.deconv(self.fc(z).view(-1, 2 * self.c, 7, 7))


def reparameterize(mu, logvar, generator: torch.Generator | None = None):
    """z = mu + sigma * eps with eps ~ N(0, I): the sample is a differentiable function of (mu, logvar)."""
    eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype, device=mu.device)
    return mu + torch.exp(0.5 * logvar) * eps


def kl_per_dim(mu, logvar):
    """KL(N(mu, sigma^2) || N(0, 1)) per latent dimension, in closed form: (B, D)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar)


def bernoulli_log_likelihood(logits, x):
    """log p(x|z) summed over pixels: (B,)."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def gaussian_log_density(z, mu, logvar):
    return -0.5 * (LOG_2PI + logvar + (z - mu).pow(2) / logvar.exp()).sum(-1)


class VAE(nn.Module):
    def __init__(self, latent_dim: int = 16, channels: int = 32, hidden: int = 256):
        super().__init__()
        self.latent_dim = latent_dim
        self.encoder = Encoder(latent_dim, channels, hidden)
        self.decoder = Decoder(latent_dim, channels, hidden)

    def forward(self, x):
        mu, logvar = self.encoder(x)
        z = reparameterize(mu, logvar)
        return self.decoder(z), mu, logvar

    def elbo_terms(self, x):
        """Per-example reconstruction log-likelihood (B,) and per-dim KL (B, D), one z sample each."""
        logits, mu, logvar = self(x)
        return bernoulli_log_likelihood(logits, x), kl_per_dim(mu, logvar), mu

    @torch.no_grad()
    def iwae_bound(self, x, k: int, chunk: int = 64):
        """log p(x) >= log (1/k) sum_i p(x, z_i) / q(z_i | x), z_i ~ q(z|x) (Burda et al., 2016): (B,)."""
        mu, logvar = self.encoder(x)
        log_w = []
        for start in range(0, k, chunk):
            n = min(chunk, k - start)
            mu_k, lv_k = mu.unsqueeze(0).expand(n, *mu.shape), logvar.unsqueeze(0).expand(n, *logvar.shape)
            z = reparameterize(mu_k, lv_k)                                    # (n, B, D)
            logits = self.decoder(z.reshape(-1, self.latent_dim)).view(n, *x.shape)
            log_px_z = bernoulli_log_likelihood(logits.flatten(0, 1), x.repeat(n, 1, 1, 1)).view(n, -1)
            log_pz = gaussian_log_density(z, torch.zeros_like(z), torch.zeros_like(z))
            log_qz = gaussian_log_density(z, mu_k, lv_k)
            log_w.append(log_px_z + log_pz - log_qz)
        log_w = torch.cat(log_w)
        return torch.logsumexp(log_w, 0) - math.log(k)

    @torch.no_grad()
    def decode_probs(self, z):
        return torch.sigmoid(self.decoder(z))
