"""Every knob of run_autodiff_demo, with defaults that train in well under 2 minutes on 2 CPU cores."""

from __future__ import annotations

import dataclasses

from dlm_core.config import check

DATASETS = ("digits", "mnist10k", "moons", "spiral")


@dataclasses.dataclass
class Config:
    dataset: str = dataclasses.field(default="digits", metadata={"help": "digits | mnist10k | moons | spiral"})
    hidden: list[int] = dataclasses.field(default_factory=lambda: [128, 64],
                                          metadata={"help": "hidden layer widths, comma separated"})
    activation: str = dataclasses.field(default="relu", metadata={"help": "relu | tanh | sigmoid"})
    epochs: int = dataclasses.field(default=30, metadata={"help": "passes over the training split"})
    batch_size: int = 32
    optimizer: str = dataclasses.field(default="adam", metadata={"help": "adam | sgd (with momentum)"})
    lr: float = dataclasses.field(default=1e-3, metadata={"help": "learning rate"})
    momentum: float = dataclasses.field(default=0.9, metadata={"help": "SGD momentum"})
    weight_decay: float = dataclasses.field(default=1e-4, metadata={"help": "L2 penalty added to the gradient"})
    dtype: str = dataclasses.field(default="float32", metadata={"help": "float32 | float64"})
    n_points: int = dataclasses.field(default=1500, metadata={"help": "points generated for moons / spiral"})
    noise: float = dataclasses.field(default=0.2, metadata={"help": "noise of the moons / spiral points"})
    seed: int = 0
    device: str = dataclasses.field(default="cpu", metadata={"help": "cpu (the engine is numpy: CPU only)"})

    def __post_init__(self):
        check(self.dataset in DATASETS, f"--dataset {self.dataset!r}: use one of {', '.join(DATASETS)}")
        check(len(self.hidden) >= 1 and all(h >= 1 for h in self.hidden),
              f"--hidden {self.hidden}: give one or more positive widths, e.g. --hidden 128,64")
        check(self.activation in ("relu", "tanh", "sigmoid"),
              f"--activation {self.activation!r}: use relu, tanh or sigmoid")
        check(self.epochs >= 1, "--epochs must be >= 1")
        check(self.batch_size >= 1, "--batch-size must be >= 1")
        check(self.optimizer in ("adam", "sgd"), f"--optimizer {self.optimizer!r}: use adam or sgd")
        check(self.lr > 0, "--lr must be > 0")
        check(0 <= self.momentum < 1, "--momentum must be in [0, 1)")
        check(self.weight_decay >= 0, "--weight-decay must be >= 0")
        check(self.dtype in ("float32", "float64"), f"--dtype {self.dtype!r}: use float32 or float64")
        check(self.n_points >= 30, "--n-points must be >= 30")
        check(self.noise >= 0, "--noise must be >= 0")
        check(self.device in ("cpu", "auto"),
              f"--device {self.device!r}: this engine runs on numpy, CPU only; use --device cpu")


PRESETS = {
    "default": Config(),
    "quick": Config(epochs=10),  # make demo: digits, ~10 s
}
