"""Every knob of the CNN trainer in one dataclass; presets are named variants of it."""

from __future__ import annotations

import dataclasses
from typing import Literal

from dlm_core.config import ArgumentParser, add_config_args, add_run_args, check


@dataclasses.dataclass
class CNNConfig:
    dataset: str = dataclasses.field(default="fashion-mnist", metadata={"help": "fashion-mnist | mnist10k"})
    arch: Literal["resnet", "plain"] = dataclasses.field(default="resnet", metadata={"help": "resnet | plain"})
    width: int = dataclasses.field(default=32, metadata={"help": "channels of the first stage (x2, x4 after)"})
    blocks: int = dataclasses.field(default=1, metadata={"help": "residual blocks per stage (resnet)"})
    last_width: int = dataclasses.field(default=0, metadata={
        "help": "channels of the last stage (resnet; 0 = 4 x --width)"})
    dropout: float = dataclasses.field(default=0.0, metadata={"help": "dropout before the linear head"})
    epochs: int = dataclasses.field(default=22, metadata={"help": "passes over the training split"})
    batch_size: int = dataclasses.field(default=128, metadata={
        "help": "images per optimizer step, over all processes (each of N ranks takes batch/N)"})
    optimizer: Literal["sgd", "adamw"] = dataclasses.field(default="sgd", metadata={"help": "sgd (Nesterov) | adamw"})
    lr: float = dataclasses.field(default=0.1, metadata={"help": "peak learning rate"})
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: Literal["onecycle", "cosine", "constant"] = "onecycle"
    warmup: float = dataclasses.field(default=0.2, metadata={"help": "fraction of steps warming up (onecycle)"})
    label_smoothing: float = 0.1
    augment: bool = dataclasses.field(default=True, metadata={"help": "random crop + flip + erasing (v2)"})
    crop_padding: int = 2
    erasing_p: float = dataclasses.field(default=0.25, metadata={"help": "RandomErasing probability"})
    patience: int = dataclasses.field(default=0, metadata={"help": "early stop after N epochs w/o val gain (0=off)"})
    train_subset: int = dataclasses.field(default=0, metadata={"help": "use only N training images (0 = all)"})
    eval_subset: int = dataclasses.field(default=0, metadata={"help": "use only N val/test images (0 = all)"})
    baseline: bool = dataclasses.field(default=True, metadata={"help": "fit the logistic-regression baseline"})
    baseline_iters: int = dataclasses.field(default=100, metadata={"help": "lbfgs iterations of the baseline"})
    channels_last: bool = dataclasses.field(default=True, metadata={"help": "NHWC memory format (faster on CPU)"})
    cpu_bf16: bool = dataclasses.field(default=True, metadata={
        "help": "train (and validate each epoch) in bf16 autocast on a CPU with native bf16 (AVX-512 BF16 / AMX; "
                "~1.8x faster there); float32 on other CPUs. Weights and optimizer stay float32; the test pass and "
                "the export are float32"})
    ema: float = dataclasses.field(default=0.0, metadata={
        "help": "decay of an exponential moving average of the weights (and BN statistics), updated every step; "
                "the average is what is validated, checkpointed as best, tested and exported (0 = off)"})
    tta_flip: bool = dataclasses.field(default=True, metadata={
        "help": "test-time flip averaging: logits of each image and its mirror image averaged, in validation, "
                "test and the exported graph"})
    val_variants: bool = dataclasses.field(default=False, metadata={
        "help": "also log val accuracy of raw/EMA weights with and without flip averaging (ablation; slower)"})
    init_from: str = dataclasses.field(default="", metadata={
        "help": "start from this run's best weights (fine-tuning, as retraining does); same architecture"})
    extra_data: str = dataclasses.field(default="", metadata={
        "help": ".npz of extra labelled images (x: N x 28 x 28, 0..255; y: class indices) for the train split"})
    extra_repeat: int = dataclasses.field(default=1, metadata={"help": "times each extra image appears per epoch"})
    seed: int = 0
    device: str = "auto"

    def __post_init__(self):
        check(self.dataset in ("fashion-mnist", "mnist10k"),
              f"--dataset {self.dataset!r}: use fashion-mnist or mnist10k")
        check(self.arch in ("resnet", "plain"), f"--arch {self.arch!r}: use resnet or plain")
        check(self.width >= 1 and self.blocks >= 1, "--width and --blocks must be >= 1")
        check(self.last_width >= 0, "--last-width must be >= 0 (0 = 4 x --width)")
        check(0.0 <= self.dropout < 1.0, "--dropout must be in [0, 1)")
        check(self.epochs >= 1, "--epochs must be >= 1")
        check(self.batch_size >= 1, "--batch-size must be >= 1")
        check(self.lr > 0, "--lr must be > 0")
        check(self.weight_decay >= 0, "--weight-decay must be >= 0")
        check(0.0 < self.warmup < 1.0, "--warmup must be in (0, 1)")
        check(0.0 <= self.label_smoothing < 1.0, "--label-smoothing must be in [0, 1)")
        check(self.crop_padding >= 0, "--crop-padding must be >= 0")
        check(0.0 <= self.erasing_p <= 1.0, "--erasing-p must be in [0, 1]")
        check(self.patience >= 0, "--patience must be >= 0 (0 = no early stopping)")
        check(self.train_subset >= 0 and self.eval_subset >= 0, "--train-subset/--eval-subset must be >= 0")
        check(self.baseline_iters >= 1, "--baseline-iters must be >= 1")
        check(self.extra_repeat >= 1, "--extra-repeat must be >= 1")
        check(0.0 <= self.ema < 1.0, "--ema must be in [0, 1) (0 = no weight averaging)")


# The default is the full run (the <=15 min on 2 idle cores goal); quick is the demo; tiny is for tests.
PRESETS = {
    "default": CNNConfig(),
    # quick: few steps, so AdamW and no augmentation (augmentation hurts at tiny budgets: see the README)
    "quick": CNNConfig(width=16, epochs=3, batch_size=64, optimizer="adamw", lr=3e-3, weight_decay=0.01,
                       augment=False, train_subset=8000, eval_subset=2000, baseline_iters=50, ema=0.0,
                       tta_flip=False),
    "tiny": CNNConfig(width=8, epochs=1, train_subset=512, eval_subset=256, baseline_iters=20, batch_size=64),
}


def train_parser() -> ArgumentParser:
    """run_cnn_train's flags; here, away from torch, so that `--help` and a bad flag are answered at once."""
    p = ArgumentParser(prog="run_cnn_train", description="Train a small ResNet (or plain) CNN on Fashion-MNIST. "
                       "On a CPU it starts one data-parallel rank per core (--procs); it also runs under "
                       "`torchrun --standalone --nproc_per_node=2 -m p03_cnn.train`.")
    add_run_args(p, PRESETS, "p03_cnn", "default: full run (<=15 min on 2 idle cores); quick: the demo; tiny: tests")
    p.add_argument("--procs", type=int, default=0, help="training processes (DDP ranks) on this machine; 0 (default) "
                   "= on a CPU one per core while each keeps >= 64 images of the batch, on a GPU one")
    add_config_args(p, CNNConfig)
    return p
