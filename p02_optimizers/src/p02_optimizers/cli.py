"""Console scripts.

    run_optimizer_playground --surface rosenbrock --optimizer sgd --steps 5000
    run_optimizer_playground --surface rosenbrock --compare sgd,momentum,nesterov,rmsprop,adam
    run_optimizer_playground --surface ravine --sweep
    run_loss_landscape --preset quick

No torch at import time: --help stays instant.
"""

from __future__ import annotations

import sys

from dlm_core.config import ArgumentParser, add_config_args, add_run_args, config_from_args, run_config
from dlm_core.errors import cli_entry

from .config import LANDSCAPE_PRESETS, LandscapeConfig, PlaygroundConfig


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="run_optimizer_playground",
                       description="Hand-written numpy optimizers walking 2D loss surfaces: one run, --compare "
                                   "several (paths, loss plot, GIF, table) or --sweep learning rates (CSV, heatmap).")
    add_config_args(p, PlaygroundConfig)
    cfg = config_from_args(PlaygroundConfig, p.parse_args(argv))
    from . import experiments  # here, not at the top: it imports matplotlib, --help stays fast

    if cfg.sweep:
        experiments.sweep(cfg)
    elif cfg.compare:
        experiments.compare(cfg)
    else:
        experiments.single(cfg)
    return 0


@cli_entry
def landscape_main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="run_loss_landscape",
                       description="Train an MLP on real data with plain SGD and with Adam (same init), then plot "
                                   "2D filter-normalised loss slices and estimate sharpness (top Hessian eigenvalue).")
    add_run_args(p, LANDSCAPE_PRESETS, "p02_optimizers_landscape",
                 "quick: seconds on digits; default: digits, 40 epochs; full: mnist10k (default: default)")
    add_config_args(p, LandscapeConfig)
    args = p.parse_args(argv)
    from .network import landscape  # here, not at the top: it imports torch, --help stays fast

    # the run's saved config is the truth on --resume (budget flags only; a model or data flag is refused)
    cfg, run_dir, resume = run_config(LandscapeConfig, args, LANDSCAPE_PRESETS)
    landscape(cfg, run_dir=run_dir, resume=resume)
    return 0


if __name__ == "__main__":
    sys.exit(main())
