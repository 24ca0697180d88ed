"""Stability of no-early-stop CartPole runs: reads runs' metrics.jsonl, prints a table, draws the README figures.

    .venv/bin/python p09_dqn/docs/stability.py LABEL=RUN_DIR[,RUN_DIR...] ... [--plot-diag OUT.png] [--plot-val OUT.png]
        [--plot-grid OUT.png]      (one panel per LABEL, one line per run: for groups of many seeds)

Per run: the first validation eval >= 475 ("first solve"), the share of the later evals that stay >= 475,
the last validation mean, and from the 500-step rows at the end: mean max-Q, |TD error|, grad norm, lr and
the share of replay transitions that are real terminations (pole fell).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def load(run: str) -> list[dict]:
    return [json.loads(line) for line in (Path(run) / "metrics.jsonl").read_text().splitlines() if line.strip()]


def summary(rows: list[dict], solve: float = 475.0) -> dict:
    val = [(r["step"], r["val_return"]) for r in rows if "val_return" in r]
    first = next((i for i, (_, v) in enumerate(val) if v >= solve), None)
    after = [v for _, v in val[first + 1:]] if first is not None else []
    diag = [r for r in rows if "q_max" in r and r.get("grad_norm") is not None]
    tail = diag[-10:]  # the last 5k steps

    def avg(key):
        xs = [r[key] for r in tail if r.get(key) is not None]
        return sum(xs) / len(xs) if xs else float("nan")

    return {"first_solve": val[first][0] if first is not None else None,
            "post_solve_ok": sum(v >= solve for v in after), "post_solve_n": len(after),
            "final_val": val[-1][1] if val else None,
            "q_max": avg("q_max"), "td_abs": avg("td_abs"), "grad_norm": avg("grad_norm"), "lr": avg("lr"),
            "buffer_terminal_frac": avg("buffer_terminal_frac")}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("groups", nargs="+", help="LABEL=RUN_DIR[,RUN_DIR...]")
    ap.add_argument("--plot-diag", default=None)
    ap.add_argument("--plot-val", default=None)
    ap.add_argument("--plot-grid", default=None)
    args = ap.parse_args()
    groups = {}
    for g in args.groups:
        label, dirs = g.split("=", 1)
        groups[label] = [d for d in dirs.split(",") if d]
    print("| config | run | first solve | post-solve evals >= 475 | last val | max-Q | abs TD | grad norm | lr | "
          "terminal share of replay |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, dirs in groups.items():
        for d in dirs:
            s = summary(load(d))
            frac = f"{s['post_solve_ok']}/{s['post_solve_n']}" if s["first_solve"] is not None else "never solved"
            print(f"| {label} | {Path(d).name} | {s['first_solve']} | {frac} | {s['final_val']:.1f} | {s['q_max']:.1f} "
                  f"| {s['td_abs']:.3f} | {s['grad_norm']:.2f} | {s['lr']:.1e} | {s['buffer_terminal_frac']:.4f} |")
    if args.plot_diag or args.plot_val or args.plot_grid:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        if args.plot_val:
            fig, ax = plt.subplots(figsize=(8, 4))
            for ci, (label, dirs) in enumerate(groups.items()):
                for j, d in enumerate(dirs):
                    val = [(r["step"], r["val_return"]) for r in load(d) if "val_return" in r]
                    ax.plot([x for x, _ in val], [y for _, y in val], color=colors[ci % len(colors)], marker=".",
                            alpha=0.8, label=label if j == 0 else None)
            ax.axhline(475, color="grey", ls="--", lw=1)
            ax.set_xlabel("env steps")
            ax.set_ylabel("validation mean return (20 greedy eps.)")
            ax.set_title("CartPole-v1, no early stop")
            ax.legend(fontsize=8)
            fig.tight_layout()
            fig.savefig(args.plot_val, dpi=90)
        if args.plot_grid:
            n = len(groups)
            cols = min(n, 3)
            rows_n = -(-n // cols)
            fig, axes = plt.subplots(rows_n, cols, figsize=(4.2 * cols, 3.2 * rows_n), sharex=True, sharey=True,
                                     squeeze=False)
            for ax, (label, dirs) in zip(axes.flat, groups.items()):
                ok = total = 0
                for j, d in enumerate(dirs):
                    rows = load(d)
                    val = [(r["step"], r["val_return"]) for r in rows if "val_return" in r]
                    sm = summary(rows)
                    ok, total = ok + sm["post_solve_ok"], total + sm["post_solve_n"]
                    ax.plot([x / 1000 for x, _ in val], [y for _, y in val], color=colors[j % len(colors)], lw=1,
                            marker=".", ms=3, alpha=0.85, label=Path(d).name.rsplit("-", 1)[-1])
                ax.axhline(475, color="grey", ls="--", lw=1)
                share = f"{ok}/{total} = {ok / total:.0%}" if total else "never solved"
                ax.set_title(f"{label}\npost-solve evals >= 475: {share}", fontsize=9)
                ax.set_xlabel("env steps (thousands)", fontsize=8)
                ax.legend(fontsize=6, ncol=2, loc="lower right")
            for ax in axes.flat[n:]:
                ax.axis("off")
            axes[0, 0].set_ylabel("validation mean return\n(20 greedy episodes)", fontsize=8)
            fig.suptitle("CartPole-v1, 100k steps, no early stop", fontsize=10)
            fig.tight_layout()
            fig.savefig(args.plot_grid, dpi=85)
        if args.plot_diag:
            keys = [("val_return", "validation mean return"), ("q_max", "batch mean of max-Q (ceiling 100)"),
                    ("buffer_terminal_frac", "share of replay that is a termination"),
                    ("grad_norm", "grad norm (before clipping)"), ("td_abs", "mean abs TD error"), ("lr", "lr")]
            fig, axes = plt.subplots(2, 3, figsize=(13, 6.5))
            for ax, (key, title) in zip(axes.flat, keys):
                for ci, (label, dirs) in enumerate(groups.items()):
                    for j, d in enumerate(dirs):
                        pts = [(r["step"], r[key]) for r in load(d) if r.get(key) is not None]
                        ax.plot([x for x, _ in pts], [y for _, y in pts], color=colors[ci % len(colors)],
                                ls=["-", "--", ":", "-."][j % 4], lw=1, marker="." if key == "val_return" else None,
                                label=f"{label} {Path(d).name}")
                ax.set_title(title, fontsize=9)
                ax.set_xlabel("env steps", fontsize=8)
                if key == "buffer_terminal_frac":
                    ax.set_yscale("log")
            axes.flat[0].legend(fontsize=6)
            fig.tight_layout()
            fig.savefig(args.plot_diag, dpi=80)


if __name__ == "__main__":
    main()
