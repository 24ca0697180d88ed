"""Console scripts.

    run_optimizer_playground --surface rosenbrock --optimizer sgd --steps 5000
    run_optimizer_playground --surface rosenbrock --compare sgd,momentum,nesterov,rmsprop,adam
    run_optimizer_playground --surface ravine --sweep
    run_loss_landscape --preset quick

No torch at import time: --help stays instant.
"""

from __future__ import annotations

import sys

from dlm_core.config import ArgumentParser, add_config_args, config_from_args, resume_config
from dlm_core.errors import DlmError, cli_entry
from dlm_core.runs import RunDir

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
    p.add_argument("--preset", choices=list(LANDSCAPE_PRESETS), default=None,
                   help="quick: seconds on digits; default: digits, 40 epochs; full: mnist10k (default: default)")
    p.add_argument("--run-dir", default=None, help="run folder (default: runs/p02_optimizers_landscape/<time>)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR", help="continue a killed run from its last epoch")
    add_config_args(p, LandscapeConfig)
    args = p.parse_args(argv)
    from .network import landscape  # here, not at the top: it imports torch, --help stays fast

    if args.resume:  # the run's saved config is the truth (budget flags only; a model or data flag is refused)
        if args.preset is not None or args.run_dir is not None:
            raise DlmError("--resume continues a run with its own saved config; drop --preset and --run-dir")
        run = RunDir.open(args.resume)  # a clear error when it is not a run folder
        cfg = resume_config(LandscapeConfig, run.load_config(), args, run.path)
    else:
        cfg = config_from_args(LandscapeConfig, args, base=LANDSCAPE_PRESETS[args.preset or "default"])
    landscape(cfg, run_dir=args.resume or args.run_dir, resume=bool(args.resume))
    return 0


if __name__ == "__main__":
    sys.exit(main())
