"""The real network (run_loss_landscape): a torch MLP on real data trained with plain SGD and with Adam in
lockstep from the same init, then accuracy, 2D loss slices and the top Hessian eigenvalue of both solutions.

    train_pair(cfg, data, run, resume) -> two MLPs (plain SGD, Adam) trained in lockstep from the same init
    landscape(cfg)                     -> the run directory's results: accuracy, loss slices, sharpness

Its own module so that the numpy playground (experiments.py, train.py) never imports torch.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from dlm_core.checkpoint import Checkpointer, resume_training, rng_state
from dlm_core.device import select_device
from dlm_core.errors import check_finite
from dlm_core.plotting import plot_curves
from dlm_core.runs import RunDir, print_metrics, progress
from dlm_core.seed import data_rng, seed_everything

from . import evaluate
from .config import LandscapeConfig
from .data import load_data
from .experiments import PROJECT, new_run
from .landscape import filter_normalized_direction, loss_slice, top_hessian_eigenvalue
from .model import MLP


def train_pair(cfg: LandscapeConfig, data, run, resume: bool = False) -> dict:
    """Train one MLP with plain SGD and one with Adam, same init, same batches; checkpoint both every epoch.

    Returns {"sgd": model, "adam": model}. `data` comes from data.load_data(cfg).
    """
    device = data.device
    torch.manual_seed(cfg.seed)
    init = MLP(data.x_train.shape[1], cfg.hidden, cfg.layers, data.n_classes)
    models = {"sgd": init, "adam": MLP(data.x_train.shape[1], cfg.hidden, cfg.layers, data.n_classes)}
    models["adam"].load_state_dict(init.state_dict())  # the same starting point for both
    models = {k: m.to(device) for k, m in models.items()}
    opts = {"sgd": torch.optim.SGD(models["sgd"].parameters(), lr=cfg.sgd_lr),
            "adam": torch.optim.Adam(models["adam"].parameters(), lr=cfg.adam_lr)}
    lrs = {"sgd": cfg.sgd_lr, "adam": cfg.adam_lr}
    ckpt = Checkpointer(run.checkpoint_dir)
    start_epoch = 1
    if resume and (state := resume_training(ckpt, models, opts, run)) is not None:
        start_epoch = state["epoch"] + 1

    loss_fn = torch.nn.CrossEntropyLoss()
    n = len(data.x_train)
    step = (start_epoch - 1) * -(-n // cfg.batch_size)
    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        order = data_rng(cfg.seed, epoch).permutation(n)
        batches = [order[i:i + cfg.batch_size] for i in range(0, n, cfg.batch_size)]
        totals = {k: 0.0 for k in models}
        bar = progress(batches, desc=f"epoch {epoch}")
        for idx in bar:
            step += 1
            xb, yb = data.x_train[idx], data.y_train[idx]
            for k, model in models.items():
                loss = loss_fn(model(xb), yb)
                check_finite(loss.item(), step, lrs[k])
                opts[k].zero_grad(set_to_none=True)
                loss.backward()
                opts[k].step()
                totals[k] += loss.item() * len(idx)
            bar.set_postfix(sgd=f"{totals['sgd'] / n:.3f}", adam=f"{totals['adam'] / n:.3f}")
        row: dict = {"epoch": epoch}
        for k, model in models.items():
            row[f"{k}_train_loss"] = totals[k] / n
            row[f"{k}_val_acc"] = accuracy(model, data.x_val, data.y_val)
        print_metrics(**row)
        run.log(**row, seconds=time.perf_counter() - t0)
        ckpt.save(epoch, {"epoch": epoch, "models": {k: m.state_dict() for k, m in models.items()},
                          "optimizers": {k: o.state_dict() for k, o in opts.items()}, "rng": rng_state(),
                          "config": dataclasses.asdict(cfg)})
    return models


def accuracy(model, x, y) -> float:
    model.eval()
    with torch.no_grad():
        acc = float((model(x).argmax(1) == y).float().mean())
    model.train()
    return acc


def landscape(cfg: LandscapeConfig, run_dir: str | None = None, resume: bool = False) -> dict:
    with threadpool_limits(cfg.threads):  # BLAS threads (numpy, sklearn)
        return _landscape(cfg, run_dir, resume)


def _landscape(cfg: LandscapeConfig, run_dir: str | None, resume: bool) -> dict:
    seed_everything(cfg.seed)
    torch.set_num_threads(cfg.threads)
    device = select_device(cfg.device)
    data = load_data(cfg.dataset, cfg.seed, device)
    run = RunDir.at(run_dir, cfg) if run_dir else new_run(cfg, PROJECT + "_landscape", cfg.dataset)
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
