"""The classifier: an MLP built on the engine (input -> hidden widths -> classes)."""

from __future__ import annotations

import numpy as np

from .config import Config
from .nn import MLP


def build_model(cfg: Config, n_features: int, n_classes: int) -> MLP:
    return MLP([n_features, *cfg.hidden, n_classes], activation=cfg.activation, seed=cfg.seed,
               dtype=np.dtype(cfg.dtype))
