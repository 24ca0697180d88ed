"""`dlm demo`: the smallest end-to-end training through dlm_core, on real data (sklearn's 8x8 digits).

It is the pattern every project's trainer follows: config dataclass -> seeded data -> run dir ->
epochs with a progress bar and one console line each -> per-epoch atomic checkpoint (resumable) ->
held-out test metric beside a baseline -> curves PNG and report.md. Runs under torchrun too.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from .config import check


@dataclasses.dataclass
class DemoConfig:
    dataset: str = dataclasses.field(default="digits", metadata={"help": "digits | mnist10k"})
    epochs: int = dataclasses.field(default=20, metadata={"help": "passes over the training split"})
    batch_size: int = 32
    lr: float = dataclasses.field(default=0.05, metadata={"help": "SGD learning rate"})
    hidden: int = 128
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        check(self.dataset in ("digits", "mnist10k"), f"--dataset {self.dataset!r}: use digits or mnist10k")
        check(self.epochs >= 1, "--epochs must be >= 1")
        check(self.batch_size >= 1, "--batch-size must be >= 1")
        check(self.lr > 0, "--lr must be > 0")


def run_demo(cfg: DemoConfig, run_dir=None, resume: bool = False) -> dict:
    import torch
    from torch import nn

    from .checkpoint import Checkpointer, resume_training, rng_state
    from .data import load_dataset
    from .device import select_device
    from .distributed import init_distributed
    from .errors import check_finite
    from .plotting import plot_curves
    from .runs import RunDir, print_metrics, progress
    from .seed import data_rng, seed_everything

    seed_everything(cfg.seed)
    dist = init_distributed(select_device(cfg.device))
    device = dist.device
    ds = load_dataset(cfg.dataset, seed=cfg.seed)
    x_train, y_train = ds.train.x.reshape(len(ds.train), -1).astype(np.float32), ds.train.y
    scale = 255.0 if ds.train.x.dtype == np.uint8 else 1.0
    x_train = x_train / scale
    x_val = ds.val.x.reshape(len(ds.val), -1).astype(np.float32) / scale
    x_test = ds.test.x.reshape(len(ds.test), -1).astype(np.float32) / scale

    if run_dir is None:
        run = RunDir.create("dlm_demo", cfg, enabled=dist.is_main)
    else:
        run = RunDir.at(run_dir, cfg, enabled=dist.is_main)
    ckpt = Checkpointer(run.checkpoint_dir, enabled=dist.is_main)

    model = nn.Sequential(nn.Linear(x_train.shape[1], cfg.hidden), nn.ReLU(), nn.Linear(cfg.hidden, 10)).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=0.9)
    start_epoch = 1
    if resume and (state := resume_training(ckpt, model, opt, run)) is not None:
        start_epoch = state["epoch"] + 1
    ddp_model = dist.wrap(model)
    loss_fn = nn.CrossEntropyLoss()
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train)

    def accuracy(x: np.ndarray, y: np.ndarray) -> float:
        with torch.no_grad():
            return float((model(torch.from_numpy(x).to(device)).argmax(1).cpu().numpy() == y).mean())

    step = (start_epoch - 1) * -(-len(xt) // cfg.batch_size)
    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        order = data_rng(cfg.seed, epoch).permutation(len(xt))[dist.rank::dist.world_size]
        batches = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
        total = 0.0
        bar = progress(batches, desc=f"epoch {epoch}")
        for idx in bar:
            xb, yb = xt[idx].to(device), yt[idx].to(device)
            loss = loss_fn(ddp_model(xb), yb)
            step += 1
            check_finite(loss.item(), step, cfg.lr)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        train_loss = dist.all_reduce_mean(total / len(order))
        row = {"epoch": epoch, "train_loss": train_loss, "val_acc": accuracy(x_val, ds.val.y),
               "seconds": time.perf_counter() - t0}
        if dist.is_main:
            run.log(**row)
            print_metrics(**{k: v for k, v in row.items() if k != "seconds"})
            ckpt.save(epoch, {"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng_state(),
                              "config": dataclasses.asdict(cfg)})

    test_acc = accuracy(x_test, ds.test.y)
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # a small fit: BLAS threads only add contention on 2 cores
        baseline = LogisticRegression(max_iter=2000).fit(x_train, y_train).score(x_test, ds.test.y)
    result = {"test_acc": test_acc, "baseline_logreg_test_acc": float(baseline), "dataset": cfg.dataset,
              "train_size": len(x_train), "test_size": len(x_test)}
    if dist.is_main:
        run.write_json("results.json", result)
        plot_curves(run.metrics(), "epoch", ["train_loss"], run.file("loss.png"), title="training loss")
        plot_curves(run.metrics(), "epoch", ["val_acc"], run.file("val_acc.png"), title="validation accuracy")
        run.write_report(
            f"# dlm demo\n\nMLP {x_train.shape[1]}-{cfg.hidden}-10 on `{cfg.dataset}` "
            f"({len(x_train)} train / {len(x_val)} val / {len(x_test)} test), {cfg.epochs} epochs.\n\n"
            f"| model | test accuracy |\n|---|---|\n| MLP (this run) | {test_acc:.4f} |\n"
            f"| logistic regression (baseline) | {baseline:.4f} |\n\n![loss](loss.png) ![val](val_acc.png)\n")
        print_metrics(test_acc=test_acc, baseline_logreg=float(baseline))
        print(f"run: {run.path}", flush=True)
    result["run_dir"] = str(run.path)
    dist.shutdown()
    return result

