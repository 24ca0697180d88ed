"""Every knob of the two console scripts, as dataclasses with defaults that run in seconds on 2 CPU cores.

PlaygroundConfig -> run_optimizer_playground (2D surfaces, numpy optimizers)
LandscapeConfig  -> run_loss_landscape (a torch MLP on real data: SGD vs Adam, slices, sharpness)
Validation lives in __post_init__: a bad value raises DlmError (one line on stderr, exit 2).
"""

from __future__ import annotations

import dataclasses
from dataclasses import field

from dlm_core.config import check

from .optim import OPTIMIZERS
from .schedules import SCHEDULES
from .surfaces import SURFACES

_SWEEP_LRS = [round(10 ** (-4 + k / 3), 6) for k in range(13)]  # 1e-4 ... 1, three per decade


def _one_of(value, choices, flag: str) -> None:
    check(value in choices, f"{flag} {value!r} is unknown; choose from {', '.join(choices)}")


@dataclasses.dataclass
class PlaygroundConfig:
    surface: str = field(default="rosenbrock", metadata={"help": " | ".join(SURFACES)})
    optimizer: str = field(default="adam", metadata={"help": " | ".join(OPTIMIZERS)})
    compare: list[str] = field(default_factory=list, metadata={
        "help": "run several optimizers side by side (paths figure, loss plot, GIF, table), e.g. sgd,momentum,adam"})
    sweep: bool = field(default=False, metadata={
        "help": "grid of learning rates x optimizers (--compare, default all): CSV + heatmaps"})
    sweep_lrs: list[float] = field(default_factory=lambda: list(_SWEEP_LRS),
                                   metadata={"help": "learning rates of --sweep"})
    lr: float | None = field(default=None, metadata={"help": "learning rate (default: the surface's lr for "
                                                             "that optimizer, listed in the README)"})
    steps: int = field(default=1000, metadata={"help": "optimizer steps"})
    schedule: str = field(default="constant", metadata={"help": " | ".join(SCHEDULES)})
    step_size: int = field(default=200, metadata={"help": "step schedule: steps between decays"})
    gamma: float = field(default=0.5, metadata={"help": "step schedule: decay factor"})
    decay: float = field(default=0.995, metadata={"help": "exponential schedule: factor per step"})
    warmup: int = field(default=50, metadata={"help": "warmup_cosine: linear warmup steps"})
    lr_min: float = field(default=0.0, metadata={"help": "cosine schedules: final lr"})
    clip: float | None = field(default=None, metadata={"help": "clip the gradient norm to this value"})
    momentum: float = field(default=0.9, metadata={"help": "momentum / nesterov coefficient"})
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999], metadata={"help": "Adam/AdamW betas"})
    weight_decay: float | None = field(default=None, metadata={
        "help": "weight decay (default: 0, AdamW 0.01)"})
    noise: float = field(default=0.0, metadata={"help": "std of Gaussian noise added to each gradient (seeded)"})
    start: list[float] = field(default_factory=list, metadata={"help": "start point x,y (default: the surface's)"})
    condition: float = field(default=100.0, metadata={"help": "ravine: condition number"})
    angle: float = field(default=0.0, metadata={"help": "ravine: rotation in degrees (45 defeats per-axis scaling)"})
    tol: float = field(default=1e-3, metadata={"help": "steps_to_tol counts steps until loss - min < tol"})
    gif: bool = field(default=True, metadata={"help": "write the animated GIF in --compare"})
    frames: int = field(default=40, metadata={"help": "GIF frames"})
    seed: int = 0

    def __post_init__(self):
        _one_of(self.surface, SURFACES, "--surface")
        _one_of(self.optimizer, OPTIMIZERS, "--optimizer")
        for name in self.compare:
            _one_of(name, OPTIMIZERS, "--compare: optimizer")
        _one_of(self.schedule, SCHEDULES, "--schedule")
        check(self.steps >= 1, f"--steps must be >= 1 (got {self.steps})")
        check(self.lr is None or self.lr > 0, f"--lr must be > 0 (got {self.lr})")
        check(len(self.sweep_lrs) > 0 and all(lr > 0 for lr in self.sweep_lrs), "--sweep-lrs must be positive")
        check(self.step_size >= 1, "--step-size must be >= 1")
        check(0 < self.gamma <= 1 and 0 < self.decay <= 1, "--gamma and --decay must be in (0, 1]")
        check(0 <= self.warmup < self.steps or self.schedule != "warmup_cosine",
              f"--warmup must be in [0, --steps) (got {self.warmup})")
        check(self.lr_min >= 0, "--lr-min must be >= 0")
        check(self.clip is None or self.clip > 0, "--clip must be > 0")
        check(0 <= self.momentum < 1, "--momentum must be in [0, 1)")
        check(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "--betas must be two numbers in [0, 1)")
        check(self.weight_decay is None or self.weight_decay >= 0, "--weight-decay must be >= 0")
        check(self.noise >= 0, "--noise must be >= 0")
        check(len(self.start) in (0, 2), "--start takes two numbers: x,y")
        check(self.condition >= 1, "--condition must be >= 1")
        check(self.tol > 0, "--tol must be > 0")
        check(self.frames >= 2, "--frames must be >= 2")


@dataclasses.dataclass
class LandscapeConfig:
    dataset: str = field(default="digits", metadata={"help": "digits | mnist10k"})
    hidden: int = field(default=64, metadata={"help": "units per hidden layer"})
    layers: int = field(default=2, metadata={"help": "hidden layers"})
    epochs: int = field(default=40, metadata={"help": "epochs for each optimizer"})
    batch_size: int = 32
    sgd_lr: float = field(default=0.1, metadata={"help": "plain SGD learning rate"})
    adam_lr: float = field(default=1e-3, metadata={"help": "Adam learning rate"})
    grid: int = field(default=25, metadata={"help": "points per axis of each 2D loss slice"})
    span: float = field(default=1.0, metadata={"help": "slice covers [-span, span] along both directions"})
    hessian_iters: int = field(default=50, metadata={"help": "power-iteration steps for the top Hessian eigenvalue"})
    seed: int = 0
    device: str = field(default="cpu", metadata={"help": "auto | cpu | cuda | cuda:N | mps"})
    threads: int = field(default=1, metadata={"help": "CPU threads for torch and BLAS (a tiny MLP is fastest on 1; "
                                                      "more threads only add overhead on a busy machine)"})

    def __post_init__(self):
        _one_of(self.dataset, ("digits", "mnist10k"), "--dataset")
        check(self.hidden >= 1 and self.layers >= 1, "--hidden and --layers must be >= 1")
        check(self.epochs >= 1, f"--epochs must be >= 1 (got {self.epochs})")
        check(self.batch_size >= 1, "--batch-size must be >= 1")
        check(self.sgd_lr > 0 and self.adam_lr > 0, "--sgd-lr and --adam-lr must be > 0")
        check(self.grid >= 3, "--grid must be >= 3")
        check(self.span > 0, "--span must be > 0")
        check(self.hessian_iters >= 1, "--hessian-iters must be >= 1")
        check(self.threads >= 1, "--threads must be >= 1")


LANDSCAPE_PRESETS = {
    "quick": LandscapeConfig(epochs=8, grid=11, hessian_iters=20),
    "default": LandscapeConfig(),
    "full": LandscapeConfig(dataset="mnist10k", hidden=128, epochs=20, batch_size=64, grid=21, hessian_iters=50),
}
