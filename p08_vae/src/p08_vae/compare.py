"""Overlay runs' validation curves (e.g. with vs without KL warm-up):

    python -m p08_vae.compare RUN_A RUN_B --labels "warm-up 10,no warm-up" --out annealing.png
"""

from __future__ import annotations

import sys

from dlm_core.config import ArgumentParser
from dlm_core.errors import DlmError, cli_entry
from dlm_core.plotting import plt, save_figure
from dlm_core.runs import RunDir


@cli_entry
def main(argv: list[str] | None = None) -> int:
    p = ArgumentParser(prog="python -m p08_vae.compare", description=__doc__)
    p.add_argument("runs", nargs="+")
    p.add_argument("--labels", default=None, help="comma-separated, one per run")
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    labels = args.labels.split(",") if args.labels else args.runs
    if len(labels) != len(args.runs):
        raise DlmError("--labels needs one label per run")
    pyplot = plt()
    fig, axes = pyplot.subplots(1, 3, figsize=(12, 3.4))
    for path, label in zip(args.runs, labels):
        rows = RunDir.open(path).metrics()
        ep = [r["epoch"] for r in rows]
        axes[0].plot(ep, [r["val_elbo"] for r in rows], label=label)
        axes[1].plot(ep, [r["val_kl"] for r in rows], label=label)
        axes[2].plot(ep, [r["active_units"] for r in rows], label=label)
    for ax, title in zip(axes, ["validation ELBO (nats)", "validation KL (nats)", "active units"]):
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.legend()
    save_figure(fig, args.out)
    print(f"output_saved: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
