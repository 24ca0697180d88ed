"""run_autodiff_demo: train an MLP on the engine (digits by default) and report test accuracy beside a baseline.

    run_autodiff_demo                                  # digits, ~0.97+ test accuracy
    run_autodiff_demo --preset quick                   # 10 epochs (make demo)
    run_autodiff_demo --dataset spiral --hidden 64,64  # 2-D toy set with a decision-boundary plot
    run_autodiff_demo --resume runs/p01_autodiff/<id>  # continue a killed run
"""

from __future__ import annotations

import sys
import time

from dlm_core.config import ArgumentParser, add_config_args, add_run_args, run_config
from dlm_core.errors import cli_entry
from dlm_core.runs import print_metrics

from .config import PRESETS, Config
from .train import train


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="run_autodiff_demo",
                       description="Train an MLP whose gradients all come from p01_autodiff's numpy engine.")
    add_run_args(p, PRESETS, "p01_autodiff", "default (30 epochs) | quick (10 epochs) (default: default)")
    add_config_args(p, Config)
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .evaluate import evaluate  # after parsing, not at the top: it imports scikit-learn (~1 s); --help stays fast

    # a resumed run's saved config is the truth: budget flags only, a model or data flag is refused
    cfg, run_dir, resume = run_config(Config, args, PRESETS)
    t0 = time.perf_counter()
    out = train(cfg, run_dir=run_dir, resume=resume)
    result = evaluate(cfg, out["model"], out["data"], out["run"], time.perf_counter() - t0)
    print_metrics(test_accuracy=result["test_accuracy"], baseline_logreg=result["baseline_logreg_test_accuracy"])
    print(f"run: {out['run'].path}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
