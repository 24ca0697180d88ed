"""The experiments the CLIs run, each into its own run directory (config.json, metrics.jsonl, PNGs, report.md).

    single(cfg)     one optimizer on one surface: the one-line result
    compare(cfg)    several optimizers: paths figure, loss-vs-step plot, animated GIF, table
    sweep(cfg)      learning rates x optimizers: CSV + heatmaps

numpy only: the torch MLP on real data (run_loss_landscape) is network.landscape.
"""

from __future__ import annotations

import numpy as np

from dlm_core.errors import check_finite
from dlm_core.runs import RunDir, new_run_id, print_metrics, runs_root

from . import evaluate
from .config import PlaygroundConfig
from .optim import OPTIMIZERS
from .surfaces import get_surface
from .train import PathResult, run_path

PROJECT = "p02_optimizers"


def new_run(cfg, project: str = PROJECT, name: str = "") -> RunDir:
    """RunDir.create with an id that is unique even for two runs started within the same second."""
    base = new_run_id(name or None)
    run_id, k = base, 1
    while (runs_root() / project / run_id).exists():
        k += 1
        run_id = f"{base}-{k}"
    return RunDir.create(project, cfg, run_id=run_id)


def _log_path(run: RunDir, r: PathResult, every: int) -> None:
    for t in range(0, len(r.losses), every):
        row = {"optimizer": r.optimizer, "step": t, "loss": r.losses[t], "x": r.path[t, 0], "y": r.path[t, 1]}
        if t < len(r.lrs):
            row["lr"] = r.lrs[t]
        run.log(**row)


def _surface(cfg: PlaygroundConfig):
    return get_surface(cfg.surface, condition=cfg.condition, angle=cfg.angle)


def single(cfg: PlaygroundConfig) -> PathResult:
    surface = _surface(cfg)
    run = new_run(cfg, name=f"{cfg.surface}-{cfg.optimizer}")
    r = run_path(cfg, surface, cfg.optimizer)
    _log_path(run, r, max(1, cfg.steps // 500))
    if r.diverged_at is not None:
        check_finite(float("inf"), r.diverged_at, r.lr)  # raises: loss blew up, with the step, lr and a hint
    evaluate.plot_paths(surface, [r], run.file("paths.png"))
    evaluate.plot_losses(surface, [r], run.file("loss.png"))
    run.write_json("results.json", {"surface": cfg.surface, **r.row()})
    run.write_report(f"# {cfg.surface} with {cfg.optimizer}\n\n{surface.note}.\n\n"
                     f"{evaluate.results_table(surface, [r], cfg.tol)}\n\n![paths](paths.png)\n\n![loss](loss.png)\n")
    print_metrics(surface=cfg.surface, optimizer=cfg.optimizer, final_loss=r.final_loss, steps=cfg.steps,
                  distance_to_minimum=r.distance,
                  steps_to_tol=r.steps_to_tol if r.steps_to_tol is not None else "never")
    print(f"run: {run.path}", flush=True)
    return r


def compare(cfg: PlaygroundConfig) -> list[PathResult]:
    surface = _surface(cfg)
    run = new_run(cfg, name=f"{cfg.surface}-compare")
    results = []
    for name in cfg.compare:
        r = run_path(cfg, surface, name)
        _log_path(run, r, max(1, cfg.steps // 500))
        results.append(r)
        print_metrics(surface=cfg.surface, optimizer=name, final_loss=r.final_loss, steps=cfg.steps,
                      distance_to_minimum=r.distance,
                      steps_to_tol=r.steps_to_tol if r.steps_to_tol is not None else "never",
                      **({"diverged_at": r.diverged_at} if r.diverged_at else {}))
    table = evaluate.results_table(surface, results, cfg.tol)
    evaluate.plot_paths(surface, results, run.file("paths.png"))
    evaluate.plot_losses(surface, results, run.file("loss.png"))
    gif = ""
    if cfg.gif:
        evaluate.write_gif(surface, results, run.file("paths.gif"), frames=cfg.frames)
        gif = "![animation](paths.gif)\n"
    evaluate.write_csv([r.row() for r in results], run.file("compare.csv"))
    np.savez_compressed(run.file("paths.npz"), **{r.optimizer: r.path for r in results})
    run.write_report(f"# {cfg.surface}: {', '.join(cfg.compare)}\n\n`{surface.formula}`: {surface.note}. "
                     f"{cfg.steps} steps, schedule {cfg.schedule}.\n\n{table}\n\n![paths](paths.png)\n\n"
                     f"![loss](loss.png)\n\n{gif}")
    print(table)
    print(f"run: {run.path}", flush=True)
    return results


def sweep(cfg: PlaygroundConfig) -> list[dict]:
    surface = _surface(cfg)
    run = new_run(cfg, name=f"{cfg.surface}-sweep")
    names = cfg.compare or list(OPTIMIZERS)
    lrs = sorted(cfg.sweep_lrs)
    rows = []
    for name in names:
        best = None
        for lr in lrs:
            row = {"surface": cfg.surface, **run_path(cfg, surface, name, lr=lr).row()}
            run.log(**row)
            rows.append(row)
            if row["diverged_at"] is None and (best is None or row["final_loss"] < best["final_loss"]):
                best = row
        fastest = [r for r in rows if r["optimizer"] == name and r["steps_to_tol"] is not None]
        fastest = min(fastest, key=lambda r: r["steps_to_tol"]) if fastest else None
        print_metrics(surface=cfg.surface, optimizer=name, best_lr=best["lr"] if best else "none",
                      best_final_loss=best["final_loss"] if best else float("nan"),
                      fastest_lr=fastest["lr"] if fastest else "none",
                      steps_to_tol=fastest["steps_to_tol"] if fastest else "never",
                      diverged=sum(r["diverged_at"] is not None for r in rows if r["optimizer"] == name))
    evaluate.write_csv(rows, run.file("sweep.csv"))
    evaluate.plot_sweep(surface, rows, names, lrs, cfg.steps, cfg.tol, run.file("sweep.png"))
    run.write_report(f"# sweep on {cfg.surface}\n\n{len(names)} optimizers x {len(lrs)} learning rates, "
                     f"{cfg.steps} steps each.\n\n![sweep](sweep.png)\n\nAll rows: `sweep.csv`.\n")
    print(f"csv: {run.file('sweep.csv')}")
    print(f"run: {run.path}", flush=True)
    return rows
