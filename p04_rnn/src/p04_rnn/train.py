"""The training loop: truncated BPTT over contiguous streams with the hidden state carried (detached)
from one window to the next, gradient clipping by norm, AdamW, warmup + cosine schedule, a val
evaluation and a checkpoint every --eval-every steps (resumable), and the test split scored once at the end.

The run has no epochs to loop over (the data epochs turn inside the steps), so it is laid out by interval:
`train_interval` runs the steps up to the next evaluation, `evaluate` scores val, and `train` alternates the two,
checkpointing after each evaluation; `final_report` scores the best checkpoint and the n-gram baseline on test.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch
from torch import nn

from dlm_core.checkpoint import Checkpointer, resume_training, rng_state
from dlm_core.device import select_device
from dlm_core.errors import check_finite
from dlm_core.optim import cosine_decay, decay_groups
from dlm_core.runs import RunDir, print_metrics, progress
from dlm_core.seed import data_rng, seed_everything

from .config import RNNConfig
from .data import Vocab, load_corpus, stream_matrix
from .evaluate import LN2, bpc, plot_training
from .generate import generate
from .model import CharRNN, count_params, detach_state
from .ngram import KneserNey

SAMPLES = [(0.5, 0, 1.0), (0.8, 0, 1.0), (1.0, 0, 1.0), (1.0, 20, 1.0), (1.0, 0, 0.9)]  # (temperature, top-k, top-p)


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
    groups = decay_groups(model, cfg.weight_decay, exempt=lambda name, p: name.startswith("embed"))
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=0.9)
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(0.9, 0.99))


def window_starts(cfg: RNNConfig, n_cols: int, epoch: int) -> list[int]:
    """Window start columns of an epoch; a seeded offset per epoch moves the truncation boundaries."""
    offset = int(data_rng(cfg.seed, epoch).integers(0, cfg.seq_len)) if epoch > 1 else 0
    return list(range(offset, n_cols - 1, cfg.seq_len))


def no_sums() -> dict:
    return {"loss": 0.0, "n": 0, "gn": 0.0, "gn_max": 0.0}


@dataclasses.dataclass(frozen=True)
class Position:
    """Where the run stands after a step: the step count, the data epoch and the next window in it, the hidden
    state carried into that window, and the sums behind the next --log-every row (--log-every need not divide
    --eval-every). Saved in every checkpoint, so a resumed run continues exactly where it was."""

    step: int = 0
    epoch: int = 1
    window: int = 0
    hidden: object = None
    log_sums: dict = dataclasses.field(default_factory=no_sums)


def train_interval(model, opt, loss_fn, matrix: torch.Tensor, cfg: RNNConfig, at: Position, run: RunDir,
                   bar) -> tuple[Position, dict]:
    """The steps from `at` up to the next evaluation (a multiple of --eval-every, or max_steps), logging a row of
    mean train bpc and gradient norms every --log-every steps. Returns the position after them and the interval's
    stats: its mean train bpc, the last step's gradient norm and learning rate, its characters per second."""
    t0 = time.perf_counter()
    step, epoch, window, state, sums = at.step, at.epoch, at.window, at.hidden, dict(at.log_sums)
    starts = window_starts(cfg, matrix.shape[1], epoch)
    total_loss, total_n = 0.0, 0
    while True:
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

        sums = {"loss": sums["loss"] + loss.item(), "n": sums["n"] + 1, "gn": sums["gn"] + grad_norm,
                "gn_max": max(sums["gn_max"], grad_norm)}
        total_loss, total_n = total_loss + loss.item() * y.numel(), total_n + y.numel()
        bar.update(1)
        bar.set_postfix(bpc=f"{loss.item() / LN2:.3f}", gn=f"{grad_norm:.2f}")
        if step % cfg.log_every == 0:
            run.log(step=step, train_bpc=sums["loss"] / sums["n"] / LN2, grad_norm=sums["gn"] / sums["n"],
                    grad_norm_max=sums["gn_max"], lr=lr, epoch=epoch)
            sums = no_sums()
        if step % cfg.eval_every == 0 or step == cfg.max_steps:
            break
    seconds = time.perf_counter() - t0
    stats = {"train_bpc": total_loss / total_n / LN2, "grad_norm": grad_norm, "lr": lr, "tok_s": total_n / seconds}
    return Position(step, epoch, window, state, sums), stats


def evaluate(model, val_ids, device) -> dict:
    """Val bits per character (8 contiguous streams) and the perplexity per character they mean."""
    val_bpc = bpc(model, val_ids, streams=8, device=device)
    return {"val_bpc": val_bpc, "val_ppl": 2 ** val_bpc}


def checkpoint_state(model, opt, cfg: RNNConfig, at: Position, best_val: float) -> dict:
    return {"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng_state(), "step": at.step,
            "data_epoch": at.epoch, "window": at.window, "best_val": best_val, "hidden": at.hidden,
            "log_sums": dict(at.log_sums), "config": dataclasses.asdict(cfg)}


def resume_position(ckpt: Checkpointer, model, opt, run: RunDir, device, quiet: bool) -> tuple[Position, float]:
    """The latest checkpoint's weights, optimizer and RNG states; where the run stood then and its best val bpc."""
    saved = resume_training(ckpt, model, opt, run, epoch_key="step", map_location=device, quiet=quiet)
    if saved is None:
        return Position(), float("inf")
    at = Position(saved["step"], saved["data_epoch"], saved["window"], saved["hidden"],
                  saved.get("log_sums", no_sums()))
    return at, saved["best_val"]


def train(cfg: RNNConfig, run_dir: str | Path | None = None, resume: bool = False, quiet: bool = False) -> dict:
    """Train (or resume) a run; returns its results."""
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
    at, best_val = resume_position(ckpt, model, opt, run, device, quiet) if resume else (Position(), float("inf"))
    n_params = count_params(model)
    if not quiet and at.step == 0:
        print(f"p04_rnn: {cfg.cell} {cfg.layers}x{cfg.hidden}, {n_params:,} parameters, vocab {len(vocab)}, "
              f"train {len(train_ids):,} chars in {cfg.batch_size} streams, device {device}; run {run.path}",
              flush=True)

    bar = progress(total=cfg.max_steps, initial=at.step, desc="train")
    while at.step < cfg.max_steps:
        at, stats = train_interval(model, opt, loss_fn, matrix, cfg, at, run, bar)
        scores = evaluate(model, val_ids, device)
        row = {"step": at.step, "train_bpc": stats["train_bpc"], **scores, "grad_norm": stats["grad_norm"],
               "lr": stats["lr"], "tok_s": stats["tok_s"]}
        run.log(**row, epoch=at.epoch)
        bar.clear()
        say(**row)
        is_best = scores["val_bpc"] < best_val
        best_val = min(best_val, scores["val_bpc"])
        ckpt.save(at.step, checkpoint_state(model, opt, cfg, at, best_val), is_best=is_best)
    bar.close()

    result = {"run_dir": str(run.path), "params": n_params, "best_val_bpc": best_val, "steps": at.step,
              "cell": cfg.cell, "hidden": cfg.hidden, "layers": cfg.layers}
    if not cfg.final_test:
        plot_training(run.metrics(), run.file("curves.png"), title=f"{cfg.cell} {cfg.layers}x{cfg.hidden}")
        run.write_json("results.json", result)
        return result
    return {**result, **final_report(run, cfg, corpus, vocab, device, n_params, quiet=quiet)}


def markdown_table(header: list[str], rows: list[list]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
            *("| " + " | ".join(str(cell) for cell in row) + " |" for row in rows)]


def report_markdown(cfg: RNNConfig, n_params: int, res: dict, samples: list[tuple]) -> str:
    """report.md from the test scores and the samples (temperature, top-k, top-p, text)."""
    scores = markdown_table(["model", "val bpc", "test bpc", "test perplexity"], [
        [f"{cfg.cell} (this run)", f"{res['val_bpc']:.4f}", f"{res['test_bpc']:.4f}", f"{res['test_ppl']:.3f}"],
        [f"Kneser-Ney {cfg.ngram_order}-gram (baseline)", f"{res['kn_val_bpc']:.4f}", f"{res['kn_test_bpc']:.4f}",
         f"{res['kn_test_ppl']:.3f}"]])
    sample_rows = markdown_table(["temperature", "top-k", "top-p", "text"],
                                 [[t, k or "-", p if p < 1 else "-", f"`{s!r}`"] for t, k, p, s in samples])
    blocks = [
        f"# p04_rnn: character {cfg.cell} on {cfg.dataset}",
        f"{cfg.layers}x{cfg.hidden} {cfg.cell}, embedding {cfg.embed}, {n_params:,} parameters, {cfg.max_steps} "
        f"steps of {cfg.batch_size}x{cfg.seq_len} characters; best val at step {res['best_step']}.",
        "\n".join(scores),
        f"Test: {res['test_chars']:,} characters, each predicted from all the test characters before it.",
        "![curves](curves.png)",
        "## Samples (seed `ROMEO.\\n`)",
        "\n".join(sample_rows),
    ]
    return "\n\n".join(blocks) + "\n"


def final_report(run, cfg: RNNConfig, corpus, vocab: Vocab, device, n_params: int, quiet: bool = False) -> dict:
    """Best-by-val checkpoint and the Kneser-Ney baseline, both scored once on the test split."""
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
    samples = [(temp, k, p, generate(model, vocab, "ROMEO.\n", 200, temp, k, p, seed=cfg.seed, device=device))
               for temp, k, p in SAMPLES]
    run.write_report(report_markdown(cfg, n_params, res, samples))
    if not quiet:
        print_metrics(test_bpc=test_bpc, test_ppl=2 ** test_bpc, kn5_test_bpc=kn_test, kn5_test_ppl=2 ** kn_test)
        print(f"run: {run.path}", flush=True)
    return res
