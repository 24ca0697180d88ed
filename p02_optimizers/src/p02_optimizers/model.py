"""The small network whose loss landscape we look at: an MLP (Linear + ReLU) x layers, then a linear head."""

from __future__ import annotations

from torch import nn


class MLP(nn.Sequential):
    def __init__(self, n_in: int, hidden: int, layers: int, n_out: int):
        mods: list[nn.Module] = []
        width = n_in
        for _ in range(layers):
            mods += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        mods.append(nn.Linear(width, n_out))
        super().__init__(*mods)
