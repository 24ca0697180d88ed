"""The training loop: seeded data order, v2 augmentation, SGD-Nesterov/AdamW with OneCycle/cosine, label
smoothing, an EMA of the weights, flip averaging at evaluation, per-epoch checkpoint (resume), best-on-val
checkpoint, early stopping, DDP under torchrun.

    run_cnn_train [--preset quick] [flags]        # on a CPU: one rank per core (--procs), started by cli.py
    torchrun --standalone --nproc_per_node=2 -m p03_cnn.train [flags]

Laid out like torchvision's reference scripts: `train_one_epoch` (one pass over the shuffled batches),
`evaluate` (loss and accuracy of one split), and `train`, which reads top-down: data, model, resume, the epochs
(train, evaluate, log, checkpoint, early stop), then the baseline and the test pass.
"""

from __future__ import annotations

import copy
import dataclasses
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

from dlm_core.checkpoint import Checkpointer, resume_training, rng_state
from dlm_core.config import run_config
from dlm_core.device import autocast, select_device, uses_bf16
from dlm_core.distributed import init_distributed
from dlm_core.errors import DlmError, check_finite, cli_entry
from dlm_core.optim import cosine_decay, decay_groups
from dlm_core.runs import RunDir, print_metrics, progress
from dlm_core.seed import data_rng, seed_everything

from .config import PRESETS, CNNConfig, train_parser
from .data import build_augment, load_data, load_extra, normalize
from .evaluate import evaluate_run, load_run
from .model import count_params, model_for, with_tta

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
    groups = decay_groups(model, cfg.weight_decay)  # no weight decay on BatchNorm and biases (1-d parameters)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr)
    return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)


PROBE_IMAGES = 2_000  # training images scored without augmentation each epoch (the train_acc curve)
EVAL_BATCH = 128  # evaluation batch: 500 was 1.5x slower per image here (activations out of cache)


@dataclasses.dataclass(frozen=True)
class Tensors:
    """The splits as tensors: normalized images and labels; probe is a fixed slice of the training images, seen
    without augmentation (the train side of the train/val gap); train includes any --extra-data."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_probe: torch.Tensor
    y_probe: torch.Tensor


def load_tensors(cfg: CNNConfig, ds) -> Tensors:
    x_train, y_train = torch.from_numpy(normalize(ds.train.x)), torch.from_numpy(ds.train.y)
    x_val, y_val = torch.from_numpy(normalize(ds.val.x)), torch.from_numpy(ds.val.y)
    # 2,000 images (or val's size if smaller): a curve's point to +-1 point, at 2/5 of val's cost per epoch
    probe = data_rng(cfg.seed, 7).permutation(len(x_train))[:min(len(x_val), PROBE_IMAGES)]
    x_probe, y_probe = x_train[probe], y_train[probe]
    if cfg.extra_data:  # extra labelled images (a server's feedback) join the training split, repeated
        extra = load_extra(cfg.extra_data, ds.num_classes)
        x_train = torch.cat([x_train] + [torch.from_numpy(normalize(extra.x))] * cfg.extra_repeat)
        y_train = torch.cat([y_train] + [torch.from_numpy(extra.y)] * cfg.extra_repeat)
    return Tensors(x_train, y_train, x_val, y_val, x_probe, y_probe)


def architecture(cfg: CNNConfig) -> str:
    return f"{cfg.arch} width {cfg.width} blocks {cfg.blocks} last width {cfg.last_width or 4 * cfg.width}"


def build_run_model(cfg: CNNConfig, num_classes: int, device, resume: bool):
    """The model on its device; when fine-tuning (--init-from, not resuming) with another run's best weights."""
    model = model_for(cfg, num_classes).to(device)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if cfg.init_from and not resume:
        base, base_cfg, _ = load_run(cfg.init_from)
        if architecture(base_cfg) != architecture(cfg):
            raise DlmError(f"--init-from {cfg.init_from} is a {architecture(base_cfg)}; this run is a "
                           f"{architecture(cfg)}")
        model.load_state_dict(base.state_dict())
    return model


class WeightEMA:
    """An exponential moving average of the model's weights and BatchNorm statistics, updated after every step:
    avg <- d * avg + (1 - d) * w with d = min(decay, (1 + t) / (10 + t)) at step t (a short average early on,
    when the first weights are far from the later ones). Its copy of the model is what is evaluated, kept as
    the best checkpoint's "ema" and exported; the raw weights keep training (and resume from "model")."""

    def __init__(self, model: torch.nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.track(model)

    def track(self, model: torch.nn.Module) -> None:
        pairs = list(zip(self.model.state_dict().values(), model.state_dict().values()))
        self._float = [(a, w) for a, w in pairs if a.is_floating_point()]
        self._other = [(a, w) for a, w in pairs if not a.is_floating_point()]

    @torch.no_grad()
    def update(self, step: int) -> None:
        d = min(self.decay, (1 + step) / (10 + step))
        torch._foreach_lerp_([a for a, _ in self._float], [w for _, w in self._float], 1 - d)
        for a, w in self._other:
            a.copy_(w)


@dataclasses.dataclass(frozen=True)
class Standing:
    """What carries from epoch to epoch (and through a resume): the best val accuracy so far, the epoch that
    reached it, the epochs since then without a gain, and the training time spent."""

    epoch: int = 0
    best_val: float = -1.0
    best_epoch: int = 0
    bad_epochs: int = 0
    train_seconds: float = 0.0

    def after(self, epoch: int, val_acc: float, seconds: float) -> Standing:
        if val_acc > self.best_val:
            return Standing(epoch, val_acc, epoch, 0, self.train_seconds + seconds)
        return dataclasses.replace(self, epoch=epoch, bad_epochs=self.bad_epochs + 1,
                                   train_seconds=self.train_seconds + seconds)

    @property
    def is_best(self) -> bool:
        return self.best_epoch == self.epoch


def resume_standing(ckpt: Checkpointer, model, opt, run: RunDir, dist, ema: WeightEMA | None = None) -> Standing:
    """The weights (and their average), optimizer and RNG states of the latest checkpoint, and where the run
    stood then."""
    state = resume_training(ckpt, model, opt, run, quiet=True)  # every rank reads the same file
    if state is None:
        return Standing()
    if ema is not None:
        ema.model.load_state_dict(state.get("ema", state["model"]))
    standing = Standing(state["epoch"], state["best_val"], state["best_epoch"], state["bad_epochs"],
                        state.get("train_seconds", 0.0))
    if dist.is_main:
        print(f"resumed from epoch {state['epoch']} (best val_acc {standing.best_val:.4f} at epoch "
              f"{standing.best_epoch})", flush=True)
    return standing


def train_one_epoch(model, opt, augment, tensors: Tensors, cfg: CNNConfig, epoch: int, step: int,
                    total_steps: int, per_rank: int, rank_batch: int, dist, ema: WeightEMA | None = None) -> dict:
    """One pass over this rank's share of the epoch's shuffled batches (rank_batch images per step). Returns the
    step count after it, the last learning rate, the mean loss and accuracy on the (augmented) batches over all
    ranks, the images seen on this rank and the seconds it took."""
    t0 = time.perf_counter()
    device = dist.device
    x_train, y_train = tensors.x_train, tensors.y_train
    # the epoch's batches and augmentations depend only on (seed, epoch, rank): a resumed run sees the same ones
    torch.manual_seed(int(data_rng(cfg.seed, epoch, dist.rank).integers(0, 2**62)))
    order = torch.from_numpy(data_rng(cfg.seed, epoch).permutation(len(x_train))[:per_rank * dist.world_size])
    order = order[dist.rank::dist.world_size]
    total_loss, correct, seen = 0.0, 0, 0
    bar = progress(range(0, len(order), rank_batch), desc=f"epoch {epoch}/{cfg.epochs}")
    for i in bar:
        idx = order[i:i + rank_batch]
        xb, yb = x_train[idx], y_train[idx]
        if augment is not None:
            xb = augment(xb)  # each image its own crop, flip and erasing
        xb, yb = xb.to(device), yb.to(device)
        if cfg.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        lr = lr_at(cfg, step, total_steps)
        for group in opt.param_groups:
            group["lr"] = lr
        with autocast(device, cfg.cpu_bf16):
            logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb, label_smoothing=cfg.label_smoothing)
        step += 1
        check_finite(loss.item(), step, lr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if ema is not None:
            ema.update(step)
        total_loss += loss.item() * len(idx)
        correct += (logits.argmax(1) == yb).sum().item()
        seen += len(idx)
        bar.set_postfix(loss=f"{loss.item():.3f}", lr=f"{lr:.3g}")
    seconds = time.perf_counter() - t0
    return {"step": step, "lr": lr, "train_loss": dist.all_reduce_mean(total_loss / seen),
            "train_acc_batches": dist.all_reduce_mean(correct / seen), "seen": seen, "seconds": seconds}


def evaluate(model, x, y, device, cfg: CNNConfig | None = None, batch_size: int = EVAL_BATCH) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of model on tensors x, y, in eval mode, in the training's memory format
    and precision (cfg: channels-last, bf16 autocast on a CPU with native bf16; float32 without cfg). The
    per-epoch validation uses it; the test pass and the exported graph are float32 (evaluate.py)."""
    model.eval()
    loss, correct = 0.0, 0
    with torch.no_grad(), autocast(device, cfg is not None and cfg.cpu_bf16):
        for i in range(0, len(x), batch_size):
            xb, yb = x[i:i + batch_size].to(device), y[i:i + batch_size].to(device)
            if cfg is not None and cfg.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            logits = model(xb).float()
            loss += F.cross_entropy(logits, yb, reduction="sum").item()
            correct += (logits.argmax(1) == yb).sum().item()
    model.train()
    return loss / len(x), correct / len(x)


def eval_model(model, ema: WeightEMA | None, cfg: CNNConfig):
    """What is validated, tested and served: the EMA weights when --ema > 0, flip-averaged when --tta-flip."""
    return with_tta(ema.model if ema is not None else model, cfg.tta_flip)


def val_variants(model, ema: WeightEMA | None, tensors: Tensors, cfg: CNNConfig, device) -> dict:
    """val accuracy of raw and EMA weights, each without and with flip averaging (--val-variants, the ablation)."""
    sources = {"raw": model, **({"ema": ema.model} if ema is not None else {})}
    return {f"val_acc_{name}{'_tta' if flip else ''}": evaluate(with_tta(m, flip), tensors.x_val, tensors.y_val,
                                                                 device, cfg)[1]
            for name, m in sources.items() for flip in (False, True)}


def epoch_row(epoch: int, stats: dict, tensors: Tensors, model, cfg: CNNConfig, dist,
              ema: WeightEMA | None = None) -> dict:
    """The metrics row of an epoch: its training stats, then the probe (train, clean) and val scores of the
    evaluated model (eval_model), and with --val-variants the four val accuracies of the ablation."""
    scored = eval_model(model, ema, cfg)
    probe_loss, probe_acc = evaluate(scored, tensors.x_probe, tensors.y_probe, dist.device, cfg)
    val_loss, val_acc = evaluate(scored, tensors.x_val, tensors.y_val, dist.device, cfg)
    model.train()
    variants = val_variants(model, ema, tensors, cfg, dist.device) if cfg.val_variants else {}
    return {**variants, "epoch": epoch, "train_loss": stats["train_loss"], "train_acc": probe_acc, "val_loss": val_loss,
            "val_acc": val_acc, "lr": stats["lr"], "train_loss_clean": probe_loss,
            "train_acc_batches": stats["train_acc_batches"],
            "images_per_s": stats["seen"] * dist.world_size / stats["seconds"], "seconds": stats["seconds"]}


def checkpoint_state(model, opt, cfg: CNNConfig, classes, standing: Standing, ema: WeightEMA | None = None) -> dict:
    """"model" holds the raw weights (what training resumes from), "ema" their average (what is tested)."""
    return {"model": model.state_dict(), **({"ema": ema.model.state_dict()} if ema is not None else {}),
            "optimizer": opt.state_dict(), "rng": rng_state(),
            "config": dataclasses.asdict(cfg), "classes": list(classes), "best_val": standing.best_val,
            "best_epoch": standing.best_epoch, "bad_epochs": standing.bad_epochs,
            "train_seconds": standing.train_seconds}


def fit_baseline(cfg: CNNConfig, ds) -> dict:
    """Logistic regression on raw pixels (/255), fit on the same training split, scored on val and test."""

    def flat(s):
        return s.x.reshape(len(s), -1).astype(np.float32) / 255.0

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = LogisticRegression(max_iter=cfg.baseline_iters).fit(flat(ds.train), ds.train.y)
    return {"baseline_logreg_val_acc": float(clf.score(flat(ds.val), ds.val.y)),
            "baseline_logreg_test_acc": float(clf.score(flat(ds.test), ds.test.y)),
            "baseline_seconds": time.perf_counter() - t0}


def final_results(cfg: CNNConfig, run: RunDir, ds, device, trained: dict, t_start: float) -> dict:
    """The baseline (if any), results.json as it stands before the test pass, then the test pass
    (evaluate_run: report, figures, evaluation.json) and the final results.json."""
    before_test = {**trained, **(fit_baseline(cfg, ds) if cfg.baseline else {}),
                   "total_seconds_before_test": time.perf_counter() - t_start}
    run.write_json("results.json", before_test)
    tested = {**before_test, **evaluate_run(run.path, device=str(device.type), ds=ds, verbose=True)}
    result = {**tested, "total_seconds": time.perf_counter() - t_start}
    run.write_json("results.json", result)
    print(f"run: {run.path} ({result['total_seconds']:.0f} s in all)", flush=True)
    return result


def training_precision(cfg: CNNConfig, device) -> str:
    return f"; training in {'bf16 autocast' if uses_bf16(device, cfg.cpu_bf16) else 'float32'}"


def train(cfg: CNNConfig, run_dir=None, resume: bool = False, final_eval: bool = True) -> dict:
    t_start = time.perf_counter()
    seed_everything(cfg.seed)
    dist = init_distributed(select_device(cfg.device))
    ds = load_data(cfg.dataset, cfg.seed, cfg.train_subset, cfg.eval_subset)
    tensors = load_tensors(cfg, ds)
    run = (RunDir.create(PROJECT, cfg, enabled=dist.is_main) if run_dir is None
           else RunDir.at(run_dir, cfg, enabled=dist.is_main))
    ckpt = Checkpointer(run.checkpoint_dir, enabled=dist.is_main)
    model = build_run_model(cfg, ds.num_classes, dist.device, resume)
    opt = make_optimizer(cfg, model)
    augment = build_augment(cfg.crop_padding, cfg.erasing_p) if cfg.augment else None

    if cfg.batch_size % dist.world_size:
        raise DlmError(f"--batch-size {cfg.batch_size} does not split evenly over {dist.world_size} ranks")
    rank_batch = cfg.batch_size // dist.world_size  # --batch-size is the step's images over all ranks
    n_train = len(tensors.x_train)
    per_rank = (n_train - n_train % dist.world_size) // dist.world_size  # equal work on every rank
    steps_per_epoch = -(-per_rank // rank_batch)
    ema = WeightEMA(model, cfg.ema) if cfg.ema > 0 else None
    standing = resume_standing(ckpt, model, opt, run, dist, ema) if resume else Standing()
    ddp_model = dist.wrap(model)
    if dist.is_main and standing.epoch == 0:
        print(f"{cfg.arch} width={cfg.width}: {count_params(model):,} parameters; {n_train} train / "
              f"{len(tensors.x_val)} val / {len(ds.test)} test images; world size {dist.world_size}; "
              f"device {dist.device}{training_precision(cfg, dist.device)}", flush=True)

    step, stopped_early = standing.epoch * steps_per_epoch, False
    for epoch in range(standing.epoch + 1, cfg.epochs + 1):
        stats = train_one_epoch(ddp_model, opt, augment, tensors, cfg, epoch, step, steps_per_epoch * cfg.epochs,
                                per_rank, rank_batch, dist, ema)
        step = stats["step"]
        row = epoch_row(epoch, stats, tensors, model, cfg, dist, ema)
        standing = standing.after(epoch, row["val_acc"], stats["seconds"])
        if dist.is_main:
            run.log(**row)
            print_metrics(epoch=epoch, train_loss=row["train_loss"], train_acc=row["train_acc"],
                          val_loss=row["val_loss"], val_acc=row["val_acc"], lr=row["lr"], s=row["seconds"])
            ckpt.save(epoch, checkpoint_state(model, opt, cfg, ds.classes, standing, ema), is_best=standing.is_best)
        if cfg.patience and standing.bad_epochs >= cfg.patience:
            stopped_early = True
            if dist.is_main:
                print(f"early stop: no val_acc gain for {cfg.patience} epochs (best {standing.best_val:.4f} at "
                      f"epoch {standing.best_epoch})", flush=True)
            break

    result = {"run_dir": str(run.path), "best_val_acc": standing.best_val, "best_epoch": standing.best_epoch,
              "stopped_early": stopped_early, "train_seconds": standing.train_seconds,
              "world_size": dist.world_size}
    if dist.is_main and final_eval:
        result = final_results(cfg, run, ds, dist.device, result, t_start)
    dist.shutdown()
    return result


def run_args(args) -> int:
    """Train as the parsed flags of config.train_parser() say (a new run, or --resume)."""
    cfg, run_dir, resume = run_config(CNNConfig, args, PRESETS)
    if resume and not (run_dir / "checkpoints").is_dir():
        raise DlmError(f"{args.resume} has no checkpoints/ folder; nothing to resume")
    train(cfg, run_dir=run_dir, resume=resume)
    return 0


@cli_entry
def main(argv=None) -> int:
    """Entry of `python -m p03_cnn.train` (what torchrun starts); run_cnn_train is cli.train_main."""
    return run_args(train_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
