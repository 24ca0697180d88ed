"""run_autodiff_demo: train an MLP on the engine (digits by default) and report test accuracy beside a baseline.

    run_autodiff_demo                                  # digits, ~0.97+ test accuracy
    run_autodiff_demo --preset quick                   # 10 epochs (make demo)
    run_autodiff_demo --dataset spiral --hidden 64,64  # 2-D toy set with a decision-boundary plot
    run_autodiff_demo --resume runs/p01_autodiff/<id>  # continue a killed run
"""

from __future__ import annotations

import sys

from dlm_core.config import ArgumentParser, add_config_args, config_from_args
from dlm_core.errors import DlmError, cli_entry


def build_parser() -> ArgumentParser:
    from .config import Config

    p = ArgumentParser(prog="run_autodiff_demo",
                       description="Train an MLP whose gradients all come from p01_autodiff's numpy engine.")
    p.add_argument("--preset", default="default", help="default (30 epochs) | quick (10 epochs) (default: default)")
    p.add_argument("--run-dir", default=None, help="run folder (default: runs/p01_autodiff/<timestamp>)")
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue the run in RUN_DIR from its newest checkpoint (its config.json is reused)")
    add_config_args(p, Config)
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    import time

    from dlm_core.runs import RunDir, print_metrics

    from .config import PRESETS, Config
    from .evaluate import evaluate
    from .train import train

    args = build_parser().parse_args(argv)
    if args.preset not in PRESETS:
        raise DlmError(f"--preset {args.preset!r}: use one of {', '.join(PRESETS)}")
    base = PRESETS[args.preset]
    run_dir = args.run_dir
    if args.resume:
        saved = RunDir.open(args.resume).load_config()
        try:
            base = Config(**saved)
        except TypeError as err:
            raise DlmError(f"{args.resume}/config.json does not match this version's config: {err}") from None
        run_dir = args.resume
    cfg = config_from_args(Config, args, base=base)
    t0 = time.perf_counter()
    out = train(cfg, run_dir=run_dir, resume=bool(args.resume))
    result = evaluate(cfg, out["model"], out["data"], out["run"], time.perf_counter() - t0)
    print_metrics(test_accuracy=result["test_accuracy"], baseline_logreg=result["baseline_logreg_test_accuracy"])
    print(f"run: {out['run'].path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
