"""Console scripts: run_rnn_train, run_rnn_generate, run_rnn_ablate. torch (and the modules that import it: train,
evaluate, generate, ablate) is imported inside each main, so --help is fast; the light imports are here."""

from __future__ import annotations

import sys
from pathlib import Path

from dlm_core.config import ArgumentParser, add_config_args, add_run_args, config_from_args, run_config
from dlm_core.device import select_device
from dlm_core.errors import DlmError, cli_entry

from .config import PRESETS, GenerateConfig, RNNConfig
from .data import Vocab, latest_run


def train_parser() -> ArgumentParser:
    p = ArgumentParser(prog="run_rnn_train", description="Train a character-level LSTM/GRU/RNN language model on "
                       "Shakespeare; report test bits per character beside a Kneser-Ney 5-gram.")
    add_run_args(p, PRESETS, "p04_rnn")
    add_config_args(p, RNNConfig)
    return p


@cli_entry
def train_main(argv: list[str] | None = None) -> int:
    args = train_parser().parse_args(argv)
    cfg, run_dir, resume = run_config(RNNConfig, args, PRESETS)
    from .train import train

    train(cfg, run_dir=run_dir, resume=resume)
    return 0


def generate_parser() -> ArgumentParser:
    p = ArgumentParser(prog="run_rnn_generate", description="Sample text from a trained run (temperature, top-k, "
                       "top-p). Characters outside the run's training vocabulary are an error.")
    p.add_argument("run_dir", nargs="?", default=None, help="run folder (default: the latest p04_rnn run)")
    add_config_args(p, GenerateConfig)
    return p


@cli_entry
def generate_main(argv: list[str] | None = None) -> int:
    args = generate_parser().parse_args(argv)
    cfg = config_from_args(GenerateConfig, args)
    run_dir = Path(args.run_dir) if args.run_dir else latest_run()
    Vocab.load(run_dir / "vocab.json").encode(cfg.seed_text)   # unknown characters: one error line, before torch
    import torch

    from .evaluate import load_run
    from .generate import generate

    device = select_device(cfg.device)
    torch.set_num_threads(1)
    model, vocab, _ = load_run(run_dir, device)
    text = generate(model, vocab, cfg.seed_text, cfg.length, cfg.temperature, cfg.top_k, cfg.top_p, cfg.seed, device)
    print(f"run: {run_dir}\nseed: {cfg.seed_text!r}  temperature: {cfg.temperature} top_k: {cfg.top_k} "
          f"top_p: {cfg.top_p}\noutput:\n{text}", flush=True)
    return 0


def ablate_parser() -> ArgumentParser:
    p = ArgumentParser(prog="run_rnn_ablate", description="Ablations on val (the test split is not touched): "
                       "clipping on/off, and rnn vs lstm vs gru at the same parameter count.")
    p.add_argument("which", choices=["clip", "cells", "all"], help="which ablation")
    p.add_argument("--steps", type=int, default=400, help="steps per arm (default: 400)")
    p.add_argument("--out", default="p04_rnn/docs", help="folder for the figures and ablation.json")
    p.add_argument("--clip-cell", choices=["lstm", "gru", "rnn"], default="lstm", help="cell of the clip ablation")
    p.add_argument("--clip-lr", type=float, default=2e-2, help="learning rate of the clip ablation (high on purpose)")
    p.add_argument("--clip-max", type=float, default=1.0, help="max gradient norm of the 'on' arm")
    p.add_argument("--clip-seq", type=int, default=64, help="BPTT window of the clip ablation")
    p.add_argument("--clip-optimizer", choices=["adamw", "sgd"], default="adamw", help="optimizer of the clip ablation")
    return p


@cli_entry
def ablate_main(argv: list[str] | None = None) -> int:
    args = ablate_parser().parse_args(argv)
    if args.steps < 10:
        raise DlmError("--steps must be >= 10")
    from .ablate import run_ablations

    run_ablations(args.which, args.steps, args.out, args.clip_cell, args.clip_lr, args.clip_max, args.clip_seq,
                  args.clip_optimizer)
    return 0


if __name__ == "__main__":
    sys.exit(train_main())
