"""The Q-network: an MLP from an observation to one value per action. No training code here."""

from __future__ import annotations

import torch
from torch import nn


class QNetwork(nn.Module):
    def __init__(self, obs_dim: int, n_actions: int, hidden: list[int]):
        super().__init__()
        layers: list[nn.Module] = []
        width = obs_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, n_actions))
        self.net = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return self.net(obs)


def greedy_actions(model: QNetwork, obs, device) -> torch.Tensor:
    """argmax_a Q(obs, a) for a batch of numpy observations (no grad)."""
    with torch.no_grad():
        return model(torch.as_tensor(obs, dtype=torch.float32, device=device)).argmax(-1).cpu()
