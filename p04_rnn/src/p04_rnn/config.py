"""Every knob of the character language model, with defaults that train in minutes on a 2-core CPU."""

from __future__ import annotations

import dataclasses
from typing import Literal

from dlm_core.config import check

CELLS = ("lstm", "gru", "rnn", "hand-lstm")


@dataclasses.dataclass
class RNNConfig:
    dataset: str = dataclasses.field(default="shakespeare", metadata={"help": "shakespeare | shakespeare-full"})
    cell: Literal["lstm", "gru", "rnn", "hand-lstm"] = dataclasses.field(
        default="lstm", metadata={"help": "recurrent cell (hand-lstm: the hand-written cell, slow, for teaching)"})
    embed: int = dataclasses.field(default=64, metadata={"help": "character embedding size"})
    hidden: int = dataclasses.field(default=256, metadata={"help": "hidden size of each recurrent layer"})
    layers: int = dataclasses.field(default=2, metadata={"help": "stacked recurrent layers"})
    dropout: float = dataclasses.field(default=0.1, metadata={"help": "dropout between layers and before the head"})
    batch_size: int = dataclasses.field(default=32, metadata={"help": "parallel contiguous streams"})
    seq_len: int = dataclasses.field(default=100, metadata={"help": "truncated-BPTT window (characters)"})
    max_steps: int = dataclasses.field(default=2000, metadata={"help": "optimizer steps in total"})
    optimizer: Literal["adamw", "sgd"] = dataclasses.field(
        default="adamw", metadata={"help": "adamw, or sgd with momentum 0.9 (the clipping ablation)"})
    lr: float = dataclasses.field(default=8e-3, metadata={"help": "peak AdamW learning rate"})
    min_lr_ratio: float = dataclasses.field(default=0.1, metadata={"help": "cosine floor as a fraction of --lr"})
    warmup_steps: int = dataclasses.field(default=50, metadata={"help": "linear warmup steps"})
    weight_decay: float = dataclasses.field(default=0.01, metadata={"help": "AdamW weight decay (matrices only)"})
    clip: float = dataclasses.field(default=1.0, metadata={"help": "clip the gradient norm to this; 0 = no clipping"})
    eval_every: int = dataclasses.field(default=250, metadata={"help": "steps between val evaluations + checkpoints"})
    log_every: int = dataclasses.field(default=10, metadata={"help": "steps between metrics.jsonl rows"})
    val_chars: int = dataclasses.field(default=0, metadata={"help": "evaluate on the first N val chars (0 = all)"})
    ngram_order: int = dataclasses.field(default=5, metadata={"help": "order of the Kneser-Ney baseline"})
    final_test: bool = dataclasses.field(default=True, metadata={"help": "score the test split once at the end"})
    seed: int = 0
    device: str = dataclasses.field(default="cpu", metadata={"help": "auto | cpu | cuda | cuda:N | mps"})
    threads: int = dataclasses.field(default=1, metadata={
        "help": "torch CPU threads (1 was ~10x faster than 2 on the shared 2-core machine; 0 = all cores)"})

    def __post_init__(self):
        check(self.dataset in ("shakespeare", "shakespeare-full"),
              f"--dataset {self.dataset!r}: use shakespeare or shakespeare-full")
        check(self.cell in CELLS, f"--cell {self.cell!r}: use one of {', '.join(CELLS)}")
        for name in ("embed", "hidden", "layers", "batch_size", "seq_len", "max_steps", "eval_every", "log_every"):
            check(getattr(self, name) >= 1, f"--{name.replace('_', '-')} must be >= 1")
        check(0.0 <= self.dropout < 1.0, "--dropout must be in [0, 1)")
        check(self.optimizer in ("adamw", "sgd"), f"--optimizer {self.optimizer!r}: use adamw or sgd")
        check(self.lr > 0, "--lr must be > 0")
        check(0.0 <= self.min_lr_ratio <= 1.0, "--min-lr-ratio must be in [0, 1]")
        check(self.warmup_steps >= 0, "--warmup-steps must be >= 0")
        check(self.weight_decay >= 0, "--weight-decay must be >= 0")
        check(self.clip >= 0, "--clip must be >= 0 (0 turns clipping off)")
        check(self.threads >= 0, "--threads must be >= 0 (0 = all cores)")
        check(self.val_chars >= 0, "--val-chars must be >= 0")
        check(1 <= self.ngram_order <= 8, "--ngram-order must be in 1..8")


PRESETS = {
    "default": RNNConfig(),
    # make demo: a small model and a few hundred steps, under a minute on 2 cores.
    "quick": RNNConfig(embed=32, hidden=128, layers=1, dropout=0.0, batch_size=32, seq_len=64, max_steps=400,
                       eval_every=100, val_chars=20000, lr=1e-2, warmup_steps=20),
}


@dataclasses.dataclass
class GenerateConfig:
    seed_text: str = dataclasses.field(default="ROMEO.\n", metadata={"help": "text the sample continues"})
    length: int = dataclasses.field(default=300, metadata={"help": "characters to generate"})
    temperature: float = dataclasses.field(default=0.8, metadata={"help": "softmax temperature (> 0)"})
    top_k: int = dataclasses.field(default=0, metadata={"help": "keep the k most likely chars (0 = all; 1 = greedy)"})
    top_p: float = dataclasses.field(default=1.0, metadata={"help": "nucleus: smallest set with mass >= p (1 = off)"})
    seed: int = 0
    device: str = "cpu"

    def __post_init__(self):
        check(len(self.seed_text) > 0, "--seed-text is empty; give at least one character to condition on")
        check(self.length >= 1, "--length must be >= 1")
        check(self.temperature > 0, f"--temperature {self.temperature}: must be > 0 (use --top-k 1 for greedy)")
        check(self.top_k >= 0, "--top-k must be >= 0 (0 = off)")
        check(0.0 < self.top_p <= 1.0, f"--top-p {self.top_p}: must be in (0, 1]")
