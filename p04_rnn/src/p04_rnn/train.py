"""The training loop: truncated BPTT over contiguous streams with the hidden state carried (detached)
from one window to the next, gradient clipping by norm, AdamW, warmup + cosine schedule, a val
evaluation and a checkpoint every --eval-every steps (resumable), and the test split scored once at the end.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from torch import nn

from dlm_core.optim import cosine_decay

from .config import RNNConfig
from .data import Vocab, load_corpus, stream_matrix
from .evaluate import LN2, bpc, plot_training
from .model import CharRNN, count_params, detach_state


def lr_at(step: int, cfg: RNNConfig) -> float:
    """Linear warmup to cfg.lr, then cosine decay to cfg.lr * min_lr_ratio at max_steps (step is 1-based)."""
    if step <= cfg.warmup_steps:
        return cfg.lr * step / cfg.warmup_steps
    # 1-based, so the ramp ends on cfg.lr exactly and the cosine starts one step later than warmup_cosine's
    # (dlm_core.optim): kept so that the README's runs and ablations stay bitwise reproducible
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return cosine_decay(progress, cfg.lr, floor=cfg.lr * cfg.min_lr_ratio)


def make_optimizer(model: nn.Module, cfg: RNNConfig) -> torch.optim.Optimizer:
    """AdamW; weight decay on matrices only (not on biases or the embedding table)."""
    from dlm_core.optim import decay_groups

    groups = decay_groups(model, cfg.weight_decay, exempt=lambda name, p: name.startswith("embed"))
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.99))


def window_starts(cfg: RNNConfig, n_cols: int, epoch: int) -> list[int]:
    """Window start columns of an epoch; a seeded offset per epoch moves the truncation boundaries."""
    from dlm_core.seed import data_rng

    offset = int(data_rng(cfg.seed, epoch).integers(0, cfg.seq_len)) if epoch > 1 else 0
    return list(range(offset, n_cols - 1, cfg.seq_len))


def train(cfg: RNNConfig, run_dir: str | Path | None = None, resume: bool = False, quiet: bool = False) -> dict:
    """Train (or resume) a run; returns its results."""
    from dlm_core.checkpoint import Checkpointer, resume_training, rng_state
    from dlm_core.device import select_device
    from dlm_core.errors import check_finite
    from dlm_core.runs import RunDir, print_metrics, progress
    from dlm_core.seed import seed_everything

    say = (lambda **m: None) if quiet else print_metrics
    seed_everything(cfg.seed)
    device = select_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    corpus = load_corpus(cfg.dataset)
    vocab = Vocab.from_text(corpus.train)
    train_ids, val_ids = vocab.encode(corpus.train), vocab.encode(corpus.val)
    if cfg.val_chars:
        val_ids = val_ids[: cfg.val_chars]
    matrix = torch.as_tensor(stream_matrix(train_ids, cfg.batch_size), device=device)

    run = RunDir.at(run_dir, cfg) if run_dir is not None else RunDir.create("p04_rnn", cfg)
    vocab.save(run.file("vocab.json"))
    ckpt = Checkpointer(run.checkpoint_dir)
    model = CharRNN(len(vocab), cfg.cell, cfg.embed, cfg.hidden, cfg.layers, cfg.dropout).to(device)
    opt = make_optimizer(model, cfg)
    loss_fn = nn.CrossEntropyLoss()

    step, epoch, window, state, best_val = 0, 1, 0, None, float("inf")
    sums = {"loss": 0.0, "n": 0, "gn": 0.0, "gn_max": 0.0}  # of the steps since the last metrics row
    if resume and (saved := resume_training(ckpt, model, opt, run, epoch_key="step", map_location=device,
                                            quiet=quiet)) is not None:
        step, epoch, window, best_val = saved["step"], saved["data_epoch"], saved["window"], saved["best_val"]
        state = saved["hidden"]
        sums = saved.get("log_sums", sums)  # --log-every need not divide --eval-every
    n_params = count_params(model)
    if not quiet and step == 0:
        print(f"p04_rnn: {cfg.cell} {cfg.layers}x{cfg.hidden}, {n_params:,} parameters, vocab {len(vocab)}, "
              f"train {len(train_ids):,} chars in {cfg.batch_size} streams, device {device}; run {run.path}",
              flush=True)

    starts = window_starts(cfg, matrix.shape[1], epoch)
    eval_loss, eval_n, t_eval = 0.0, 0, time.perf_counter()
    bar = progress(total=cfg.max_steps, initial=step, desc="train")
    while step < cfg.max_steps:
        if window >= len(starts):                 # end of an epoch: new offsets, fresh state
            epoch, window, state = epoch + 1, 0, None
            starts = window_starts(cfg, matrix.shape[1], epoch)
        t = starts[window]
        end = min(t + cfg.seq_len, matrix.shape[1] - 1)
        x, y = matrix[:, t:end], matrix[:, t + 1:end + 1]
        window += 1
        step += 1
        lr = lr_at(step, cfg)
        for group in opt.param_groups:
            group["lr"] = lr

        model.train()
        logits, state = model(x, state)
        loss = loss_fn(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        check_finite(loss.item(), step, lr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        # the norm before clipping is what the clipping ablation plots; max_norm=inf only measures it
        grad_norm = float(nn.utils.clip_grad_norm_(model.parameters(), cfg.clip if cfg.clip > 0 else float("inf")))
        opt.step()
        state = detach_state(state)               # carry the values, cut the graph (truncated BPTT)

        sums["loss"] += loss.item()
        sums["n"] += 1
        sums["gn"] += grad_norm
        sums["gn_max"] = max(sums["gn_max"], grad_norm)
        eval_loss, eval_n = eval_loss + loss.item() * y.numel(), eval_n + y.numel()
        bar.update(1)
        bar.set_postfix(bpc=f"{loss.item() / LN2:.3f}", gn=f"{grad_norm:.2f}")
        if step % cfg.log_every == 0:
            run.log(step=step, train_bpc=sums["loss"] / sums["n"] / LN2, grad_norm=sums["gn"] / sums["n"],
                    grad_norm_max=sums["gn_max"], lr=lr, epoch=epoch)
            sums = {"loss": 0.0, "n": 0, "gn": 0.0, "gn_max": 0.0}
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            seconds = time.perf_counter() - t_eval
            val_bpc = bpc(model, val_ids, streams=8, device=device)
            row = {"step": step, "train_bpc": eval_loss / eval_n / LN2, "val_bpc": val_bpc, "val_ppl": 2 ** val_bpc,
                   "grad_norm": grad_norm, "lr": lr, "tok_s": eval_n / seconds}
            run.log(**row, epoch=epoch)
            bar.clear()
            say(**row)
            is_best = val_bpc < best_val
            best_val = min(best_val, val_bpc)
            ckpt.save(step, {"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng_state(),
                             "step": step, "data_epoch": epoch, "window": window, "best_val": best_val,
                             "hidden": state, "log_sums": dict(sums), "config": dataclasses.asdict(cfg)},
                     is_best=is_best)
            eval_loss, eval_n, t_eval = 0.0, 0, time.perf_counter()
    bar.close()

    result = {"run_dir": str(run.path), "params": n_params, "best_val_bpc": best_val, "steps": step,
              "cell": cfg.cell, "hidden": cfg.hidden, "layers": cfg.layers}
    if cfg.final_test:
        result.update(final_report(run, cfg, corpus, vocab, device, n_params, quiet=quiet))
    else:
        plot_training(run.metrics(), run.file("curves.png"), title=f"{cfg.cell} {cfg.layers}x{cfg.hidden}")
        run.write_json("results.json", result)
    return result


def final_report(run, cfg: RNNConfig, corpus, vocab: Vocab, device, n_params: int, quiet: bool = False) -> dict:
    """Best-by-val checkpoint and the Kneser-Ney baseline, both scored once on the test split."""
    from dlm_core.checkpoint import Checkpointer
    from dlm_core.runs import print_metrics

    from .generate import generate
    from .ngram import KneserNey

    model = CharRNN(len(vocab), cfg.cell, cfg.embed, cfg.hidden, cfg.layers, cfg.dropout).to(device)
    best = Checkpointer(run.checkpoint_dir).best(map_location=device)
    model.load_state_dict(best["model"])
    test_ids = vocab.encode(corpus.test)
    test_bpc = bpc(model, test_ids, streams=1, device=device)
    val_bpc_full = bpc(model, vocab.encode(corpus.val), streams=1, device=device)
    kn = KneserNey(corpus.train, cfg.ngram_order, vocab.chars)
    kn_test, kn_val = kn.bpc(corpus.test), kn.bpc(corpus.val)
    res = {"best_step": best["step"], "val_bpc": val_bpc_full, "test_bpc": test_bpc, "test_ppl": 2 ** test_bpc,
           "kn_order": cfg.ngram_order, "kn_val_bpc": kn_val, "kn_test_bpc": kn_test, "kn_test_ppl": 2 ** kn_test,
           "test_chars": len(test_ids) - 1}
    run.write_json("results.json", {**res, "run_dir": str(run.path), "params": n_params, "cell": cfg.cell})
    plot_training(run.metrics(), run.file("curves.png"), baseline_val_bpc=kn_val,
                  title=f"{cfg.cell} {cfg.layers}x{cfg.hidden} on {cfg.dataset}")
    samples = []
    for temp, k, p in [(0.5, 0, 1.0), (0.8, 0, 1.0), (1.0, 0, 1.0), (1.0, 20, 1.0), (1.0, 0, 0.9)]:
        text = generate(model, vocab, "ROMEO.\n", 200, temp, k, p, seed=cfg.seed, device=device)
        samples.append((temp, k, p, text))
    rows = "\n".join(f"| {t} | {k or '-'} | {p if p < 1 else '-'} | `{s!r}` |" for t, k, p, s in samples)
    run.write_report(
        f"# p04_rnn: character {cfg.cell} on {cfg.dataset}\n\n"
        f"{cfg.layers}x{cfg.hidden} {cfg.cell}, embedding {cfg.embed}, {n_params:,} parameters, "
        f"{cfg.max_steps} steps of {cfg.batch_size}x{cfg.seq_len} characters; best val at step {best['step']}.\n\n"
        f"| model | val bpc | test bpc | test perplexity |\n|---|---|---|---|\n"
        f"| {cfg.cell} (this run) | {val_bpc_full:.4f} | {test_bpc:.4f} | {2 ** test_bpc:.3f} |\n"
        f"| Kneser-Ney {cfg.ngram_order}-gram (baseline) | {kn_val:.4f} | {kn_test:.4f} | {2 ** kn_test:.3f} |\n\n"
        f"Test: {len(test_ids) - 1:,} characters, each predicted from all the test characters before it.\n\n"
        f"![curves](curves.png)\n\n## Samples (seed `ROMEO.\\n`)\n\n| temperature | top-k | top-p | text |\n"
        f"|---|---|---|---|\n{rows}\n")
    if not quiet:
        print_metrics(test_bpc=test_bpc, test_ppl=2 ** test_bpc, kn5_test_bpc=kn_test, kn5_test_ppl=2 ** kn_test)
        print(f"run: {run.path}", flush=True)
    return res
