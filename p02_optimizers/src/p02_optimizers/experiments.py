"""The experiments the CLIs run, each into its own run directory (config.json, metrics.jsonl, PNGs, report.md).

    single(cfg)     one optimizer on one surface: the one-line result
    compare(cfg)    several optimizers: paths figure, loss-vs-step plot, animated GIF, table
    sweep(cfg)      learning rates x optimizers: CSV + heatmaps
    landscape(cfg)  a torch MLP on real data, SGD vs Adam: accuracy, loss slices, top Hessian eigenvalue
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from dlm_core.device import select_device
from dlm_core.errors import check_finite
from dlm_core.plotting import plot_curves
from dlm_core.runs import RunDir, new_run_id, print_metrics, runs_root
from dlm_core.seed import seed_everything

from . import evaluate
from .config import LandscapeConfig, PlaygroundConfig
from .data import load_data
from .landscape import filter_normalized_direction, loss_slice, top_hessian_eigenvalue
from .optim import OPTIMIZERS
from .surfaces import get_surface
from .train import PathResult, accuracy, run_path, train_pair

PROJECT = "p02_optimizers"


def _new_run(cfg, project: str = PROJECT, name: str = "") -> RunDir:
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
    run = _new_run(cfg, name=f"{cfg.surface}-{cfg.optimizer}")
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
    run = _new_run(cfg, name=f"{cfg.surface}-compare")
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
    run = _new_run(cfg, name=f"{cfg.surface}-sweep")
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


def landscape(cfg: LandscapeConfig, run_dir: str | None = None, resume: bool = False) -> dict:
    with threadpool_limits(cfg.threads):  # BLAS threads (numpy, sklearn)
        return _landscape(cfg, run_dir, resume)


def _landscape(cfg: LandscapeConfig, run_dir: str | None, resume: bool) -> dict:
    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.threads)
    device = select_device(cfg.device)
    data = load_data(cfg.dataset, cfg.seed, device)
    run = RunDir.at(run_dir, cfg) if run_dir else _new_run(cfg, PROJECT + "_landscape", cfg.dataset)
    models = train_pair(cfg, data, run, resume=resume)

    loss_fn = torch.nn.CrossEntropyLoss()
    results: dict = {"dataset": cfg.dataset, "train_size": len(data.x_train), "test_size": len(data.x_test)}
    slices = {}
    for name, model in models.items():
        g = torch.Generator().manual_seed(cfg.seed + 1)  # the same random directions for both solutions
        d1, d2 = filter_normalized_direction(model, g), filter_normalized_direction(model, g)
        slices[name] = loss_slice(model, loss_fn, data.x_train, data.y_train, d1, d2, cfg.span, cfg.grid)
        lam, hist = top_hessian_eigenvalue(model, loss_fn, data.x_train, data.y_train, iters=cfg.hessian_iters,
                                           seed=cfg.seed)
        with torch.no_grad():
            train_loss = float(loss_fn(model(data.x_train), data.y_train))
        results[name] = {"lr": cfg.sgd_lr if name == "sgd" else cfg.adam_lr, "train_loss": train_loss,
                         "val_acc": accuracy(model, data.x_val, data.y_val),
                         "top_hessian_eigenvalue": lam, "power_iterations": len(hist),
                         "slice_loss_rise_at_half_span": float(slices[name][cfg.grid // 2, cfg.grid * 3 // 4]
                                                               - slices[name][cfg.grid // 2, cfg.grid // 2])}
    for name, model in models.items():  # the held-out test set, touched once, at the very end
        results[name]["test_acc"] = accuracy(model, data.x_test, data.y_test)
    raw = data.raw
    baseline = LogisticRegression(max_iter=2000).fit(raw["x_train"], raw["y_train"]).score(raw["x_test"], raw["y_test"])
    results["baseline_logreg_test_acc"] = float(baseline)

    evaluate.plot_slices(slices, cfg.span, run.file("slices.png"))
    rows = run.metrics()
    plot_curves(rows, "epoch", ["sgd_train_loss", "adam_train_loss"], run.file("loss.png"), title="training loss",
                logy=True)
    plot_curves(rows, "epoch", ["sgd_val_acc", "adam_val_acc"], run.file("val_acc.png"), title="validation accuracy")
    np.savez_compressed(run.file("slices.npz"), **slices)
    run.write_json("results.json", results)
    table = ["| optimizer | lr | test acc | train loss | top Hessian eigenvalue (sharpness) | 2/lr |",
             "|---|---|---|---|---|---|"]
    for name in models:
        r = results[name]
        table.append(f"| {name} | {r['lr']:g} | {r['test_acc']:.4f} | {r['train_loss']:.4f} | "
                     f"{r['top_hessian_eigenvalue']:.2f} | {2 / r['lr']:g} |")
    table.append(f"| logistic regression (baseline) | - | {baseline:.4f} | - | - | - |")
    run.write_report(
        f"# Loss landscape: plain SGD vs Adam\n\nMLP {data.x_train.shape[1]}-"
        f"{'-'.join([str(cfg.hidden)] * cfg.layers)}-{data.n_classes} on `{cfg.dataset}` ({len(data.x_train)} train / "
        f"{len(data.x_val)} val / {len(data.x_test)} test), {cfg.epochs} epochs each, same init and batches.\n\n"
        + "\n".join(table) + "\n\nSlices: train loss on theta + a d1 + b d2, filter-normalised random directions "
        f"(Li et al. 2018), a, b in [-{cfg.span:g}, {cfg.span:g}].\n\n![slices](slices.png)\n\n![loss](loss.png) "
        "![val](val_acc.png)\n")
    for name in models:
        r = results[name]
        print_metrics(optimizer=name, test_acc=r["test_acc"], train_loss=r["train_loss"],
                      top_hessian_eigenvalue=r["top_hessian_eigenvalue"])
    print_metrics(baseline_logreg_test_acc=float(baseline))
    print(f"run: {run.path}", flush=True)
    results["run_dir"] = str(run.path)
    return results
