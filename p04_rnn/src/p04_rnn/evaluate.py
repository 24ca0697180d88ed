"""Held-out bits per character, plots, the report, and reopening a trained run for generation."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from dlm_core.checkpoint import Checkpointer
from dlm_core.plotting import plt, save_figure
from dlm_core.runs import RunDir

from .config import RNNConfig
from .data import Vocab
from .model import CharRNN

LN2 = math.log(2.0)


@torch.no_grad()
def evaluate_bits(model, ids: np.ndarray, streams: int = 1, chunk: int = 512, device="cpu") -> tuple[float, int]:
    """Total -log2 p of every char after the first in each of `streams` contiguous pieces of ids.

    Inside a piece the hidden state is carried across chunks, so each char is predicted from all the
    chars before it in its piece (with streams=1: from everything before it in the text, like the n-gram).
    """
    model.eval()
    n = len(ids) // streams
    data = torch.as_tensor(ids[: n * streams].reshape(streams, n), device=device)
    state, total, count = None, 0.0, 0
    for t in range(0, n - 1, chunk):
        x, y = data[:, t:min(t + chunk, n - 1)], data[:, t + 1:min(t + chunk, n - 1) + 1]
        logits, state = model(x, state)
        total += nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1),
                                             reduction="sum").item()
        count += y.numel()
    return total / LN2, count


def bpc(model, ids: np.ndarray, streams: int = 1, device="cpu") -> float:
    bits, n = evaluate_bits(model, ids, streams=streams, device=device)
    return bits / n


def plot_training(rows: list[dict], path: Path, baseline_val_bpc: float | None = None, title: str = "") -> Path:
    pyplot = plt()
    fig, (ax1, ax2) = pyplot.subplots(1, 2, figsize=(10, 3.6))
    fig.subplots_adjust(wspace=0.35)
    tr = [(r["step"], r["train_bpc"]) for r in rows if "train_bpc" in r and "val_bpc" not in r]
    va = [(r["step"], r["val_bpc"]) for r in rows if "val_bpc" in r]
    if tr:
        ax1.plot(*zip(*tr), label="train bpc", lw=1)
    if va:
        ax1.plot(*zip(*va), label="val bpc", marker="o", ms=3)
    if baseline_val_bpc is not None:
        ax1.axhline(baseline_val_bpc, color="grey", ls="--", label="KN 5-gram val bpc")
    ax1.set_xlabel("step")
    ax1.set_ylabel("bits per character")
    ax1.set_title(title or "bits per character")
    ax1.legend(loc="upper right")
    gn = [(r["step"], r["grad_norm"]) for r in rows if "grad_norm" in r]
    if gn:
        ax2.plot(*zip(*gn), lw=1)
    ax2.set_xlabel("step")
    ax2.set_ylabel("norm before clipping")
    ax2.set_yscale("log")
    ax2.set_title("gradient norm")
    return save_figure(fig, path)


def load_run(run_dir: str | Path, device="cpu"):
    """(model in eval mode, vocab, config) from a run directory's best (or latest) checkpoint."""
    run = RunDir.open(run_dir)
    cfg = RNNConfig(**run.load_config())
    vocab = Vocab.load(run.file("vocab.json"))
    state = Checkpointer(run.checkpoint_dir).best(map_location=device)
    model = CharRNN(len(vocab), cfg.cell, cfg.embed, cfg.hidden, cfg.layers, cfg.dropout).to(device)
    model.load_state_dict(state["model"])
    return model.eval(), vocab, cfg
