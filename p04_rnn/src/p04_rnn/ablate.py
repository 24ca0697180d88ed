"""Ablations at a reduced budget, judged on val only (the test split is never touched here):

- clip:  the same LSTM with gradient clipping (max norm 1) and without, at a high learning rate;
         per-step gradient norms (before clipping) and training loss.
- cells: vanilla RNN vs LSTM vs GRU with the hidden size chosen so every model has the LSTM's
         parameter count.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

from dlm_core.errors import NonFiniteLossError
from dlm_core.io import write_json
from dlm_core.plotting import plt, save_figure
from dlm_core.runs import RunDir, print_metrics, runs_root

from .config import RNNConfig
from .model import hidden_for_params, params_for
from .train import train

BASE = RNNConfig(embed=32, hidden=192, layers=1, dropout=0.0, batch_size=32, seq_len=64, lr=1e-2, warmup_steps=20,
                 eval_every=100, log_every=1, val_chars=20000, final_test=False)


def _arm(name: str, cfg: RNNConfig) -> tuple[dict, list[dict]]:
    path = runs_root() / "p04_rnn_ablate" / name
    if path.exists():
        shutil.rmtree(path)
    try:
        result = train(cfg, run_dir=path, quiet=True)
    except NonFiniteLossError as err:          # a diverged arm is a result, not a crash
        rows = RunDir(path).metrics()
        vals = [r["val_bpc"] for r in rows if "val_bpc" in r]
        result = {"params": None, "hidden": cfg.hidden, "best_val_bpc": min(vals) if vals else float("nan"),
                  "diverged": str(err).split(";")[0]}
        print(f"arm {name}: {result['diverged']}", flush=True)
    rows = RunDir(path).metrics()
    print_metrics(arm=name, cell=cfg.cell, hidden=cfg.hidden, params=result["params"], clip=cfg.clip,
                  best_val_bpc=result["best_val_bpc"], max_grad_norm=max(r["grad_norm"] for r in rows))
    return result, rows


def plot_clip(arms: dict[str, list[dict]], title: str, path: Path) -> Path:
    pyplot = plt()
    fig, (ax1, ax2) = pyplot.subplots(1, 2, figsize=(10, 3.6))
    for label, rows in arms.items():
        steps_rows = [r for r in rows if "val_bpc" not in r]
        ax1.plot([r["step"] for r in steps_rows], [r["grad_norm"] for r in steps_rows], lw=0.8, label=label)
        ax2.plot([r["step"] for r in steps_rows], [r["train_bpc"] for r in steps_rows], lw=0.8, label=label)
    ax1.set_yscale("log")
    ax1.set_title(title)
    ax1.set_xlabel("step")
    ax2.set_title("training bits per character (log scale)")
    ax2.set_yscale("log")
    ax2.set_xlabel("step")
    ax1.legend()
    ax2.legend()
    return save_figure(fig, path)


def clip_ablation(steps: int, out: Path, cell: str = "lstm", lr: float = 2e-2, max_norm: float = 1.0,
                  seq_len: int = 64, optimizer: str = "adamw") -> dict:
    arms = {}
    for clip in (max_norm, 0.0):
        cfg = dataclasses.replace(BASE, cell=cell, max_steps=steps, clip=clip, lr=lr, seq_len=seq_len,
                                  optimizer=optimizer)
        label = f"clip on (max norm {clip:g})" if clip else "clip off"
        arms[label] = _arm(f"clip-{cell}-{optimizer}-{clip:g}", cfg)
    title = f"gradient norm before clipping ({cell}, {optimizer} lr {lr:g}, seq {seq_len})"
    plot_clip({label: rows for label, (_, rows) in arms.items()}, title,
              out / f"ablation_clip_{cell}{'_sgd' if optimizer == 'sgd' else ''}.png")
    return {label: {"best_val_bpc": res["best_val_bpc"], "diverged": res.get("diverged"),
                    "max_grad_norm": max(r["grad_norm"] for r in rows),
                    "max_train_bpc_after_100": max((r["train_bpc"] for r in rows if r["step"] > 100 and
                                                   "val_bpc" not in r), default=float("nan"))}
            for label, (res, rows) in arms.items()}


def cell_ablation(steps: int, out: Path) -> dict:
    vocab = 73  # the shakespeare training vocabulary (checked against the real count below)
    target = params_for("lstm", vocab, BASE.embed, BASE.hidden, BASE.layers)
    arms = {}
    for cell in ("rnn", "lstm", "gru"):
        hidden = hidden_for_params(cell, target, vocab, BASE.embed, BASE.layers)
        res, rows = _arm(f"cell-{cell}", dataclasses.replace(BASE, cell=cell, hidden=hidden, max_steps=steps))
        arms[cell] = (res, rows)
    pyplot = plt()
    fig, (ax1, ax2) = pyplot.subplots(1, 2, figsize=(10, 3.6))
    for cell, (res, rows) in arms.items():
        label = f"{cell} h={res['hidden']} ({res['params']:,} params)"
        va = [r for r in rows if "val_bpc" in r]
        ax1.plot([r["step"] for r in va], [r["val_bpc"] for r in va], marker="o", ms=3, label=label)
        tr = [r for r in rows if "val_bpc" not in r]
        ax2.plot([r["step"] for r in tr], [r["grad_norm"] for r in tr], lw=0.6, label=cell)
    ax1.set_title("validation bits per character")
    ax1.set_xlabel("step")
    ax1.legend()
    ax2.set_yscale("log")
    ax2.set_title("gradient norm before clipping")
    ax2.set_xlabel("step")
    ax2.legend()
    save_figure(fig, out / "ablation_cells.png")
    return {cell: {"hidden": res["hidden"], "params": res["params"], "best_val_bpc": res["best_val_bpc"]}
            for cell, (res, _) in arms.items()}


def run_ablations(which: str, steps: int, out: str, clip_cell: str = "lstm", clip_lr: float = 2e-2,
                  clip_max: float = 1.0, clip_seq: int = 64, clip_optimizer: str = "adamw") -> dict:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "ablation.json"
    summary = json.loads(path.read_text()) if path.exists() else {}
    if which in ("clip", "all"):
        key = f"clip_{clip_cell}" + ("_sgd" if clip_optimizer == "sgd" else "")
        summary[key] = {"steps": steps, "lr": clip_lr, "seq_len": clip_seq, "optimizer": clip_optimizer,
                        **clip_ablation(steps, out_dir, clip_cell, clip_lr, clip_max, clip_seq, clip_optimizer)}
    if which in ("cells", "all"):
        summary["cells"] = {"steps": steps, **cell_ablation(steps, out_dir)}
    write_json(path, summary)
    print(json.dumps(summary, indent=1))
    return summary
