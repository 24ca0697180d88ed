"""What a person wants to look at: paths on contours, loss curves, an animated GIF, tables, sweep heatmaps,
and (for the real network) loss-landscape slices beside sharpness and test accuracy."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import matplotlib.colors
import numpy as np

from dlm_core.plotting import plt, save_figure

from .surfaces import Surface
from .train import PathResult

COLORS = {"sgd": "#d62728", "momentum": "#1f77b4", "nesterov": "#17becf", "adagrad": "#8c564b",
          "rmsprop": "#9467bd", "adam": "#ff7f0e", "adamw": "#e377c2"}


def _gap(surface: Surface, values: np.ndarray) -> np.ndarray:
    """loss - min, floored so that a log axis can show it."""
    return np.maximum(np.asarray(values) - surface.f_min, 1e-16)


def _contour(ax, surface: Surface, n: int = 250) -> None:
    xs = np.linspace(*surface.xlim, n)
    ys = np.linspace(*surface.ylim, n)
    gx, gy = np.meshgrid(xs, ys)
    z = _gap(surface, surface.f(gx, gy))
    lo, hi = max(z.min(), 1e-3), z.max()
    levels = np.geomspace(lo, hi, 25) if hi / lo > 50 else np.linspace(z.min(), hi, 25)
    ax.contourf(gx, gy, z, levels=levels, cmap="viridis", alpha=0.55,
                norm=_lognorm() if hi / lo > 50 else None, extend="both")
    ax.contour(gx, gy, z, levels=levels, colors="k", linewidths=0.3, alpha=0.4)
    for mx, my in surface.minima:
        ax.plot(mx, my, marker="*", color="gold", ms=14, mec="k", zorder=5)
    ax.set_xlim(*surface.xlim)
    ax.set_ylim(*surface.ylim)
    ax.set_xlabel("x")
    ax.set_ylabel("y")


def _lognorm():
    return matplotlib.colors.LogNorm()


def _label(r: PathResult) -> str:
    return f"{r.optimizer} (lr {r.lr:g})"


def plot_paths(surface: Surface, results: list[PathResult], path: str | Path, title: str = "") -> Path:
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(6.4, 5.2))
    _contour(ax, surface)
    for r in results:
        c = COLORS.get(r.optimizer)
        p = r.path
        ax.plot(p[:, 0], p[:, 1], "-", color=c, lw=1.6, label=_label(r))
        ax.plot(p[-1, 0], p[-1, 1], "o", color=c, ms=5, mec="k")
    start = results[0].path[0]
    ax.plot(start[0], start[1], "s", color="white", mec="k", ms=7, zorder=6, label="start")
    ax.set_title(title or f"{surface.name}: {surface.formula}")
    ax.legend(loc="best", fontsize=8, framealpha=0.8, frameon=True)
    return save_figure(fig, path)


def plot_losses(surface: Surface, results: list[PathResult], path: str | Path) -> Path:
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(6.4, 3.8))
    for r in results:
        ax.plot(np.arange(len(r.losses)), _gap(surface, r.losses), color=COLORS.get(r.optimizer), label=_label(r))
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(f"loss - min ({surface.f_min:g})")
    ax.set_title(f"{surface.name}: loss vs step")
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def write_gif(surface: Surface, results: list[PathResult], path: str | Path, frames: int = 40) -> Path:
    """Animated paths: frames spaced quadratically in time so the fast early moves are visible."""
    import imageio.v2 as imageio  # optional: not a dependency of p02, only the GIF needs it (--no-gif)

    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(4.8, 4.0), dpi=70)
    _contour(ax, surface, n=150)
    lines, heads = {}, {}
    for r in results:
        c = COLORS.get(r.optimizer)
        (lines[r.optimizer],) = ax.plot([], [], "-", color=c, lw=1.5, label=r.optimizer)
        (heads[r.optimizer],) = ax.plot([], [], "o", color=c, mec="k", ms=5)
    ax.legend(loc="upper left", fontsize=7, framealpha=0.8, frameon=True)
    n = max(len(r.path) for r in results) - 1
    steps = np.unique((n * np.linspace(0, 1, frames) ** 2).astype(int))
    images = []
    for t in steps:
        for r in results:
            p = r.path[: min(t, len(r.path) - 1) + 1]
            lines[r.optimizer].set_data(p[:, 0], p[:, 1])
            heads[r.optimizer].set_data([p[-1, 0]], [p[-1, 1]])
        ax.set_title(f"{surface.name}  step {t}")
        fig.canvas.draw()
        images.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
    pyplot.close(fig)
    images += [images[-1]] * 8  # hold the last frame
    path = Path(path)
    imageio.mimsave(path, images, duration=0.12, loop=0)
    return path


def results_table(surface: Surface, results: list[PathResult], tol: float) -> str:
    head = f"| optimizer | lr | final_loss | distance_to_minimum | steps to loss-min < {tol:g} | end point |"
    lines = [head, "|---|---|---|---|---|---|"]
    for r in results:
        end = f"diverged at step {r.diverged_at}" if r.diverged_at else f"({r.path[-1, 0]:.3f}, {r.path[-1, 1]:.3f})"
        lines.append(f"| {r.optimizer} | {r.lr:g} | {r.final_loss:.4g} | {r.distance:.3g} | "
                     f"{r.steps_to_tol if r.steps_to_tol is not None else 'never'} | {end} |")
    return "\n".join(lines)


def write_csv(rows: list[dict], path: str | Path) -> Path:
    path = Path(path)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def plot_sweep(surface: Surface, rows: list[dict], optimizers: list[str], lrs: list[float], steps: int, tol: float,
               path: str | Path) -> Path:
    """Two heatmaps (optimizer x lr): log10 of the final loss gap, and steps to reach the tolerance."""
    pyplot = plt()
    gap = np.full((len(optimizers), len(lrs)), np.nan)
    hit = np.full_like(gap, np.nan)
    for r in rows:
        i, j = optimizers.index(r["optimizer"]), lrs.index(r["lr"])
        if r["diverged_at"] is None:
            gap[i, j] = math.log10(max(r["final_loss"] - surface.f_min, 1e-16))
        if r["steps_to_tol"] is not None:
            hit[i, j] = r["steps_to_tol"]
    fig, axes = pyplot.subplots(1, 2, figsize=(13, 0.42 * len(optimizers) + 2.0), layout="constrained")
    panels = [(gap, f"log10(final loss - min) after {steps} steps", "viridis"),
              (hit, f"steps until loss - min < {tol:g} (blank: never)", "magma_r")]
    for ax, (z, title, cmap) in zip(axes, panels):
        cm = pyplot.get_cmap(cmap).with_extremes(bad="#dddddd")
        im = ax.imshow(np.ma.masked_invalid(z), cmap=cm, aspect="auto")
        for i in range(z.shape[0]):
            for j in range(z.shape[1]):
                if np.isnan(gap[i, j]):
                    text, color = "div", "k"
                elif np.isnan(z[i, j]):
                    continue
                else:
                    r, g, b, _ = cm(im.norm(z[i, j]))
                    text, color = f"{z[i, j]:.0f}", "k" if 0.3 * r + 0.6 * g + 0.1 * b > 0.5 else "w"
                ax.text(j, i, text, ha="center", va="center", fontsize=6.5, color=color)
        ax.set_xticks(range(len(lrs)), [f"{lr:.1g}" for lr in lrs], rotation=60, fontsize=7)
        ax.set_yticks(range(len(optimizers)), optimizers)
        ax.set_xlabel("learning rate")
        ax.set_title(title, fontsize=9)
        ax.grid(False)
        fig.colorbar(im, ax=ax, fraction=0.04)
    fig.suptitle(f"{surface.name}: which learning rate works for which optimizer (grey 'div' = diverged)")
    return save_figure(fig, path)


# --- the real network ------------------------------------------------------------------------

def plot_slices(slices: dict, span: float, path: str | Path) -> Path:
    """2D loss slices (one panel per optimizer, shared colour scale) and the 1D cut through the centre."""
    pyplot = plt()
    names = list(slices)
    fig, axes = pyplot.subplots(1, len(names) + 1, figsize=(4.6 * (len(names) + 1), 4), layout="constrained")
    vmax = max(float(np.percentile(s, 90)) for s in slices.values())
    vmin = min(float(s.min()) for s in slices.values())
    levels = np.geomspace(max(vmin, 1e-4), vmax, 20)
    for ax, name in zip(axes, names):
        z = slices[name]
        a = np.linspace(-span, span, z.shape[0])
        cs = ax.contourf(a, a, np.clip(z, levels[0], levels[-1]), levels=levels, norm=_lognorm(), cmap="viridis")
        ax.contour(a, a, np.clip(z, levels[0], levels[-1]), levels=levels, colors="k", linewidths=0.3)
        ax.plot(0, 0, "r*", ms=10)
        ax.set_title(f"{name}: train loss around the solution")
        ax.set_xlabel("direction 1 (filter-normalised)")
        ax.set_ylabel("direction 2")
        ax.grid(False)
    fig.colorbar(cs, ax=axes[len(names) - 1], fraction=0.05, format="%.2g", label="train loss")
    ax = axes[-1]
    for name in names:
        z = slices[name]
        a = np.linspace(-span, span, z.shape[0])
        ax.plot(a, z[z.shape[0] // 2, :], label=name, color=COLORS.get(name))
    ax.set_xlabel("step along direction 1")
    ax.set_ylabel("train loss")
    ax.set_title("1D cut through the centre")
    ax.legend()
    return save_figure(fig, path)
