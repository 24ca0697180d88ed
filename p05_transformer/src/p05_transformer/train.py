"""The training loop: label-smoothed cross-entropy, AdamW with linear warmup then cosine decay, gradient
clipping, per-epoch val loss + val BLEU (greedy), atomic checkpoints (resumable), and at the end one test
score (beam search) beside the baselines, plots, report.md and the ONNX bundle."""

from __future__ import annotations

import dataclasses
import math
import time

import torch
from torch import nn

from dlm_core.checkpoint import Checkpointer, resume_training, rng_state
from dlm_core.device import select_device
from dlm_core.errors import check_finite
from dlm_core.optim import warmup_cosine
from dlm_core.runs import RunDir, print_metrics, progress
from dlm_core.seed import seed_everything

from . import data as D
from .config import PROJECT, TransformerConfig
from .decode import translate_ids
from .evaluate import finish_run, score
from .model import PAD, build_model, count_parameters
from .trained import save_average


def loss_on(model, pairs, cfg, loss_fn, device) -> float:
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for src, tgt in D.batches(pairs, 128, 0, 0):
            src, tgt = torch.from_numpy(src).to(device), torch.from_numpy(tgt).to(device)
            logits = model(src, tgt[:, :-1])
            k = int((tgt[:, 1:] != PAD).sum())
            total += loss_fn(logits.reshape(-1, logits.size(-1)), tgt[:, 1:].reshape(-1)).item() * k
            n += k
    return total / n


def bleu_on(model, tok, pairs, cfg, beam: int = 1) -> tuple[float, float, list[str]]:
    hyps = translate_ids(model, [D.encode(tok, en)[:cfg.max_len] for en, _ in pairs], cfg.max_len + 1, beam=beam,
                         alpha=cfg.length_alpha)
    texts = [D.decode(tok, h) for h in hyps]
    bleu, chrf = score(texts, [es for _, es in pairs])
    return bleu, chrf, texts


def train(cfg: TransformerConfig, run_dir=None, resume: bool = False) -> dict:
    seed_everything(cfg.seed)
    device = select_device(cfg.device)
    run = RunDir.at(run_dir, cfg) if run_dir is not None else RunDir.create(PROJECT, cfg)
    ckpt = Checkpointer(run.checkpoint_dir, keep=max(2, cfg.average_last))  # averaging reads the last K
    train_pairs, val_pairs, test_pairs = D.load_pairs(cfg)
    tok_path = run.file("tokenizer.json")
    if resume and tok_path.is_file():
        tok = D.load_tokenizer(tok_path)
    else:  # trained on the training split only
        tok = D.train_tokenizer([t for p in train_pairs for t in p], cfg.vocab_size)
        tok.save(str(tok_path))
    train_ids = D.encode_pairs(tok, train_pairs, cfg.max_len)
    val_ids = D.encode_pairs(tok, val_pairs, cfg.max_len)
    val_sample = val_pairs[:cfg.val_sentences]

    seed_everything(cfg.seed)
    model = build_model(cfg, tok.get_vocab_size()).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, betas=(0.9, 0.98), weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(train_ids) / cfg.batch_size)
    total_steps = steps_per_epoch * cfg.epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, total_steps, cfg.warmup_steps, 1.0))
    loss_fn = nn.CrossEntropyLoss(ignore_index=PAD, label_smoothing=cfg.label_smoothing)
    start_epoch, best_bleu, elapsed = 1, -1.0, 0.0
    if resume and (state := resume_training(ckpt, model, opt, run, sched)) is not None:
        start_epoch, best_bleu, elapsed = state["epoch"] + 1, state["best_bleu"], state["elapsed"]
    print(f"pairs: train {len(train_ids)} val {len(val_ids)} test {len(test_pairs)}; vocab {tok.get_vocab_size()}; "
          f"parameters {count_parameters(model):,}; {steps_per_epoch} steps/epoch", flush=True)

    step = (start_epoch - 1) * steps_per_epoch
    for epoch in range(start_epoch, cfg.epochs + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        model.train()
        total, count = 0.0, 0
        bar = progress(D.batches(train_ids, cfg.batch_size, cfg.seed, epoch), desc=f"epoch {epoch}")
        for src, tgt in bar:
            src, tgt = torch.from_numpy(src).to(device), torch.from_numpy(tgt).to(device)
            logits = model(src, tgt[:, :-1])
            loss = loss_fn(logits.reshape(-1, logits.size(-1)), tgt[:, 1:].reshape(-1))
            step += 1
            check_finite(loss.item(), step, sched.get_last_lr()[0])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_norm)
            opt.step()
            sched.step()
            total += loss.item() * len(src)
            count += len(src)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        val_loss = loss_on(model, val_ids, cfg, loss_fn, device)
        val_bleu, val_chrf, _ = bleu_on(model, tok, val_sample, cfg)
        elapsed += time.perf_counter() - t0
        row = {"epoch": epoch, "train_loss": total / count, "val_loss": val_loss, "val_bleu": val_bleu,
               "val_chrf": val_chrf, "lr": sched.get_last_lr()[0], "seconds": time.perf_counter() - t0,
               "cpu_seconds": time.process_time() - c0}
        run.log(**row)
        print_metrics(**{k: v for k, v in row.items() if k not in ("seconds", "cpu_seconds")})
        is_best = val_bleu > best_bleu
        best_bleu = max(best_bleu, val_bleu)
        ckpt.save(epoch, {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                          "rng": rng_state(), "config": dataclasses.asdict(cfg), "best_bleu": best_bleu,
                          "elapsed": elapsed, "vocab_size": tok.get_vocab_size()}, is_best=is_best)
        if cfg.max_minutes and elapsed > cfg.max_minutes * 60 and epoch < cfg.epochs:
            print(f"warning: the --max-minutes {cfg.max_minutes:g} safety net stopped training after epoch {epoch} of "
                  f"{cfg.epochs}: this run is INCOMPLETE, its scores are not the default's (resume with a larger "
                  f"--max-minutes or 0)", flush=True)
            break

    if (k := min(cfg.average_last, len(ckpt.epochs()))) > 1:
        print(f"final model: the mean of the last {k} epochs' weights ({save_average(ckpt, k)})", flush=True)
    result = finish_run(run, cfg, tok, train_pairs, test_pairs, elapsed)
    result["run_dir"] = str(run.path)
    print(f"run: {run.path}", flush=True)
    return result
