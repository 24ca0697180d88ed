"""One house style for every PNG (matplotlib Agg, no screen needed) and an atomic save."""

from __future__ import annotations

from pathlib import Path

from .io import atomic_path


def plt():
    """matplotlib.pyplot with the Agg backend and the house style applied."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as pyplot

    pyplot.rcParams.update({
        "figure.dpi": 110, "savefig.dpi": 110, "savefig.bbox": "tight", "axes.grid": True, "grid.alpha": 0.3,
        "axes.spines.top": False, "axes.spines.right": False, "font.size": 10, "axes.titlesize": 11,
        "legend.frameon": False, "image.cmap": "viridis",
    })
    return pyplot


def save_figure(fig, path: str | Path) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip(".") or "png")
    plt().close(fig)
    return path


def plot_curves(rows: list[dict], x: str, ys: list[str], path: str | Path, title: str = "",
                logy: bool = False, ylabel: str = "") -> Path:
    """Line plot of metrics.jsonl-style rows: one line per key in ys (rows lacking a key are skipped)."""
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(6, 3.6))
    for key in ys:
        pts = [(r[x], r[key]) for r in rows if x in r and r.get(key) is not None]
        if pts:
            xs, vs = zip(*pts)
            ax.plot(xs, vs, label=key, marker="o" if len(pts) < 30 else None, ms=3)
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.legend()
    return save_figure(fig, path)
