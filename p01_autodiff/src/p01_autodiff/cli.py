"""run_autodiff_demo: train an MLP on the engine (digits by default) and report test accuracy beside a baseline.

    run_autodiff_demo                                  # digits, ~0.97+ test accuracy
    run_autodiff_demo --preset quick                   # 10 epochs (make demo)
    run_autodiff_demo --dataset spiral --hidden 64,64  # 2-D toy set with a decision-boundary plot
    run_autodiff_demo --resume runs/p01_autodiff/<id>  # continue a killed run
"""

from __future__ import annotations

import sys
import time

from dlm_core.config import ArgumentParser, add_config_args, config_from_args, resume_config
from dlm_core.errors import DlmError, cli_entry
from dlm_core.runs import RunDir, print_metrics

from .config import PRESETS, Config
from .train import train


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="run_autodiff_demo",
                       description="Train an MLP whose gradients all come from p01_autodiff's numpy engine.")
    p.add_argument("--preset", default=None, help="default (30 epochs) | quick (10 epochs) (default: default)")
    p.add_argument("--run-dir", default=None, help="run folder (default: runs/p01_autodiff/<timestamp>)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its newest checkpoint (its config.json is reused)")
    add_config_args(p, Config)
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    from .evaluate import evaluate  # here, not at the top: it imports scikit-learn (~1 s), --help stays fast

    args = build_parser().parse_args(argv)
    if args.preset is not None and args.preset not in PRESETS:
        raise DlmError(f"--preset {args.preset!r}: use one of {', '.join(PRESETS)}")
    run_dir = args.run_dir
    if args.resume:  # the run's saved config is the truth: budget flags only, a model or data flag is refused
        if args.preset is not None or args.run_dir is not None:
            raise DlmError("--resume continues a run with its own saved config; drop --preset and --run-dir")
        run = RunDir.open(args.resume)
        cfg = resume_config(Config, run.load_config(), args, run.path)
        run_dir = args.resume
    else:
        cfg = config_from_args(Config, args, base=PRESETS[args.preset or "default"])
    t0 = time.perf_counter()
    out = train(cfg, run_dir=run_dir, resume=bool(args.resume))
    result = evaluate(cfg, out["model"], out["data"], out["run"], time.perf_counter() - t0)
    print_metrics(test_accuracy=result["test_accuracy"], baseline_logreg=result["baseline_logreg_test_accuracy"])
    print(f"run: {out['run'].path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
