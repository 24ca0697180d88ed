"""The training loop: seeded data order, v2 augmentation, SGD-Nesterov/AdamW with OneCycle/cosine, label
smoothing, per-epoch checkpoint (resume), best-on-val checkpoint, early stopping, DDP under torchrun.

    run_cnn_train [--preset quick] [flags]
    torchrun --standalone --nproc_per_node=2 -m p03_cnn.train [flags]
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from dlm_core.errors import DlmError, cli_entry
from dlm_core.optim import cosine_decay

from .config import CNNConfig

PROJECT = "p03_cnn"


def lr_at(cfg: CNNConfig, step: int, total: int) -> float:
    """OneCycle: linear warm-up from lr/25 to lr, then cosine down to lr/1e4. Cosine: lr -> 0. Constant: lr."""
    t = min(step / max(1, total), 1.0)
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "cosine":
        return cosine_decay(t, cfg.lr)
    if t < cfg.warmup:
        return cfg.lr / 25 + (cfg.lr - cfg.lr / 25) * t / cfg.warmup
    return cosine_decay((t - cfg.warmup) / (1 - cfg.warmup), cfg.lr, floor=cfg.lr * 1e-4)


def make_optimizer(cfg: CNNConfig, model):
    import torch

    from dlm_core.optim import decay_groups

    groups = decay_groups(model, cfg.weight_decay)  # no weight decay on BatchNorm and biases (1-d parameters)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)


def evaluate_split(model, x, y, device, batch_size: int = 500, channels_last: bool = False) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of model on tensors x, y, in eval mode."""
    import torch
    import torch.nn.functional as F

    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            logits = model(xb).float()
            loss += F.cross_entropy(logits, yb, reduction="sum").item()
            correct += (logits.argmax(1) == yb).sum().item()
    model.train()
    return loss / len(x), correct / len(x)


def fit_baseline(cfg: CNNConfig, ds) -> dict:
    """Logistic regression on raw pixels (/255), fit on the same training split, scored on val and test."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    def flat(s):
        return s.x.reshape(len(s), -1).astype(np.float32) / 255.0

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(max_iter=cfg.baseline_iters).fit(flat(ds.train), ds.train.y)
    return {"baseline_logreg_val_acc": float(clf.score(flat(ds.val), ds.val.y)),
            "baseline_logreg_test_acc": float(clf.score(flat(ds.test), ds.test.y)),
            "baseline_seconds": time.perf_counter() - t0}


def train(cfg: CNNConfig, run_dir=None, resume: bool = False, final_eval: bool = True) -> dict:
    import torch
    import torch.nn.functional as F

    from dlm_core.checkpoint import Checkpointer, resume_training, rng_state
    from dlm_core.device import autocast, select_device
    from dlm_core.distributed import init_distributed
    from dlm_core.errors import check_finite
    from dlm_core.runs import RunDir, print_metrics, progress
    from dlm_core.seed import data_rng, seed_everything

    from .data import augment_batch, build_augment, load_data, load_extra, normalize
    from .model import build_model, count_params

    t_start = time.perf_counter()
    seed_everything(cfg.seed)
    dist = init_distributed(select_device(cfg.device))
    device = dist.device
    ds = load_data(cfg.dataset, cfg.seed, cfg.train_subset, cfg.eval_subset)
    x_train, y_train = torch.from_numpy(normalize(ds.train.x)), torch.from_numpy(ds.train.y)
    x_val, y_val = torch.from_numpy(normalize(ds.val.x)), torch.from_numpy(ds.val.y)
    # a fixed slice of the training images, seen without augmentation: the train side of the train/val gap
    probe = data_rng(cfg.seed, 7).permutation(len(x_train))[:len(x_val)]
    x_probe, y_probe = x_train[probe], y_train[probe]
    if cfg.extra_data:  # extra labelled images (a server's feedback) join the training split, repeated
        extra = load_extra(cfg.extra_data, ds.num_classes)
        x_train = torch.cat([x_train] + [torch.from_numpy(normalize(extra.x))] * cfg.extra_repeat)
        y_train = torch.cat([y_train] + [torch.from_numpy(extra.y)] * cfg.extra_repeat)

    run = (RunDir.create(PROJECT, cfg, enabled=dist.is_main) if run_dir is None
           else RunDir.at(run_dir, cfg, enabled=dist.is_main))
    ckpt = Checkpointer(run.checkpoint_dir, enabled=dist.is_main)

    model = build_model(cfg.arch, ds.num_classes, cfg.width, cfg.blocks, cfg.dropout).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.init_from and not resume:  # fine-tuning: start from another run's best weights
        from .evaluate import load_run_model

        base, base_cfg, _ = load_run_model(cfg.init_from)
        if (base_cfg.arch, base_cfg.width, base_cfg.blocks) != (cfg.arch, cfg.width, cfg.blocks):
            raise DlmError(f"--init-from {cfg.init_from} is a {base_cfg.arch} width {base_cfg.width} blocks "
                           f"{base_cfg.blocks}; this run is {cfg.arch} width {cfg.width} blocks {cfg.blocks}")
        model.load_state_dict(base.state_dict())
    opt = make_optimizer(cfg, model)
    augment = build_augment(cfg.crop_padding, cfg.erasing_p) if cfg.augment else None

    per_rank = (len(x_train) - len(x_train) % dist.world_size) // dist.world_size  # equal work on every rank
    steps_per_epoch = -(-per_rank // cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    start_epoch, best_val, best_epoch, bad_epochs, train_seconds = 1, -1.0, 0, 0, 0.0
    if resume:
        state = resume_training(ckpt, model, opt, run, quiet=True)  # every rank reads the same file
        if state is not None:
            start_epoch = state["epoch"] + 1
            best_val, best_epoch, bad_epochs = state["best_val"], state["best_epoch"], state["bad_epochs"]
            train_seconds = state.get("train_seconds", 0.0)
            if dist.is_main:
                print(f"resumed from epoch {state['epoch']} (best val_acc {best_val:.4f} at epoch {best_epoch})",
                      flush=True)
    ddp_model = dist.wrap(model)
    if dist.is_main and start_epoch == 1:
        print(f"{cfg.arch} width={cfg.width}: {count_params(model):,} parameters; {len(x_train)} train / "
              f"{len(x_val)} val / {len(ds.test)} test images; world size {dist.world_size}; device {device}",
              flush=True)

    step = (start_epoch - 1) * steps_per_epoch
    stopped_early = False
    for epoch in range(start_epoch, cfg.epochs + 1):
        t0 = time.perf_counter()
        # the epoch's batches and augmentations depend only on (seed, epoch, rank): a resumed run sees the same ones
        torch.manual_seed(int(data_rng(cfg.seed, epoch, dist.rank).integers(0, 2**62)))
        order = torch.from_numpy(data_rng(cfg.seed, epoch).permutation(len(x_train))[:per_rank * dist.world_size])
        order = order[dist.rank::dist.world_size]
        total_loss, correct, seen = 0.0, 0, 0
        bar = progress(range(0, len(order), cfg.batch_size), desc=f"epoch {epoch}/{cfg.epochs}")
        for i in bar:
            idx = order[i:i + cfg.batch_size]
            xb, yb = x_train[idx], y_train[idx]
            if augment is not None:
                xb = augment_batch(xb, augment)
            xb, yb = xb.to(device), yb.to(device)
            if cfg.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            lr = lr_at(cfg, step, total_steps)
            for group in opt.param_groups:
                group["lr"] = lr
            with autocast(device):
                logits = ddp_model(xb)
                loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg.label_smoothing)
            step += 1
            check_finite(loss.item(), step, lr)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total_loss += loss.item() * len(idx)
            correct += (logits.argmax(1) == yb).sum().item()
            seen += len(idx)
            bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.3g}")
        epoch_seconds = time.perf_counter() - t0
        train_seconds += epoch_seconds
        train_loss = dist.all_reduce_mean(total_loss / seen)
        aug_acc = dist.all_reduce_mean(correct / seen)
        probe_loss, probe_acc = evaluate_split(model, x_probe, y_probe, device, channels_last=cfg.channels_last)
        val_loss, val_acc = evaluate_split(model, x_val, y_val, device, channels_last=cfg.channels_last)
        is_best = val_acc > best_val
        if is_best:
            best_val, best_epoch, bad_epochs = val_acc, epoch, 0
        else:
            bad_epochs += 1
        row = {"epoch": epoch, "train_loss": train_loss, "train_acc": probe_acc, "val_loss": val_loss,
               "val_acc": val_acc, "lr": lr, "train_loss_clean": probe_loss, "train_acc_batches": aug_acc,
               "images_per_s": seen * dist.world_size / epoch_seconds, "seconds": epoch_seconds}
        if dist.is_main:
            run.log(**row)
            print_metrics(epoch=epoch, train_loss=train_loss, train_acc=probe_acc, val_loss=val_loss,
                          val_acc=val_acc, lr=lr, s=epoch_seconds)
            ckpt.save(epoch, {"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng_state(),
                              "config": dataclasses.asdict(cfg), "classes": list(ds.classes),
                              "best_val": best_val, "best_epoch": best_epoch,
                              "bad_epochs": bad_epochs, "train_seconds": train_seconds}, is_best=is_best)
        if cfg.patience and bad_epochs >= cfg.patience:
            stopped_early = True
            if dist.is_main:
                print(f"early stop: no val_acc gain for {cfg.patience} epochs (best {best_val:.4f} at epoch "
                      f"{best_epoch})", flush=True)
            break

    result = {"run_dir": str(run.path), "best_val_acc": best_val, "best_epoch": best_epoch,
              "stopped_early": stopped_early, "train_seconds": train_seconds, "world_size": dist.world_size}
    if dist.is_main and final_eval:
        if cfg.baseline:
            result.update(fit_baseline(cfg, ds))
        result["total_seconds_before_test"] = time.perf_counter() - t_start
        run.write_json("results.json", result)
        from .evaluate import evaluate_run

        result.update(evaluate_run(run.path, device=str(device.type), ds=ds, verbose=True))
        result["total_seconds"] = time.perf_counter() - t_start
        run.write_json("results.json", result)
        print(f"run: {run.path} ({result['total_seconds']:.0f} s in all)", flush=True)
    dist.shutdown()
    return result


def parser():
    from dlm_core.config import ArgumentParser, add_config_args, add_run_args

    from .config import PRESETS

    p = ArgumentParser(prog="run_cnn_train", description="Train a small ResNet (or plain) CNN on Fashion-MNIST; "
                       "also runs under `torchrun --standalone --nproc_per_node=2 -m p03_cnn.train`.")
    add_run_args(p, PRESETS, "p03_cnn", "default: full run (<=15 min on 2 idle cores); quick: the demo; tiny: tests")
    add_config_args(p, CNNConfig)
    return p


@cli_entry
def main(argv=None) -> int:
    """Entry of `run_cnn_train` (cli.train_main) and of `python -m p03_cnn.train` (torchrun)."""
    from dlm_core.config import run_config

    from .config import PRESETS

    args = parser().parse_args(argv)
    cfg, run_dir, resume = run_config(CNNConfig, args, PRESETS)
    if resume and not (run_dir / "checkpoints").is_dir():
        raise DlmError(f"{args.resume} has no checkpoints/ folder; nothing to resume")
    train(cfg, run_dir=run_dir, resume=resume)
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main())
