"""Held-out evaluation of a run's best checkpoint: test accuracy, confusion matrix with per-class
precision/recall, the most confidently wrong images, first-layer filters, curves, receptive fields, report.md."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dlm_core.checkpoint import Checkpointer, load_checkpoint
from dlm_core.errors import DlmError
from dlm_core.io import read_json
from dlm_core.plotting import plot_curves, plt, save_figure
from dlm_core.runs import RunDir, print_metrics

from .config import CNNConfig
from .data import load_data, normalize
from .model import count_params, model_for, receptive_field, with_tta


def load_run(run_path, device: str = "cpu"):
    """(model in eval mode, config, checkpoint) from a run folder's best checkpoint (or a .pt file); the model
    has the checkpoint's EMA weights when the run kept an average ("ema"), else its raw weights. The model is
    the bare network: evaluation and export wrap it with with_tta(model, cfg.tta_flip)."""
    path = Path(run_path)
    if path.is_file() and path.suffix == ".pt":
        state = load_checkpoint(path)
    else:
        if not path.exists():
            raise DlmError(f"run folder {path} does not exist; pass a folder under runs/p03_cnn/")
        RunDir.open(path)
        state = Checkpointer(path / "checkpoints").best()
    cfg = CNNConfig(**{k: v for k, v in state["config"].items() if k in CNNConfig.__dataclass_fields__})
    classes = state["model"][[k for k in state["model"] if k.startswith("head.") and k.endswith(".weight")][-1]]
    model = model_for(cfg, classes.shape[0])
    model.load_state_dict(state.get("ema", state["model"]))
    return model.to(torch.device(device)).eval(), cfg, state


def predict_logits(model, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
    """Logits for normalized (N, 1, 28, 28) float32 images."""
    device = next(model.parameters()).device
    out = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            out.append(model(torch.from_numpy(x[i:i + batch_size]).to(device)).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 10), np.float32)


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> np.ndarray:
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    return cm


def per_class(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(precision, recall) per class from a confusion matrix (rows = true, columns = predicted)."""
    tp = np.diag(cm).astype(float)
    precision = tp / np.maximum(cm.sum(0), 1)
    recall = tp / np.maximum(cm.sum(1), 1)
    return precision, recall


# --- plots ------------------------------------------------------------------------------------------------
def plot_confusion(cm, classes, path):
    pyplot = plt()
    precision, recall = per_class(cm)
    rates = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    fig, ax = pyplot.subplots(figsize=(8.2, 7))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.grid(False)
    for i in range(len(classes)):
        for j in range(len(classes)):
            if cm[i, j]:
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(classes)), [f"{c}\nP={p:.2f}" for c, p in zip(classes, precision)], rotation=60,
                  fontsize=7)
    ax.set_yticks(range(len(classes)), [f"{c}  R={r:.2f}" for c, r in zip(classes, recall)], fontsize=8)
    ax.set_xlabel("predicted (precision P)")
    ax.set_ylabel("true (recall R)")
    ax.set_title(f"test confusion matrix, accuracy {np.trace(cm) / cm.sum():.4f}")
    return save_figure(fig, path)


def plot_wrong(images, y_true, probs, classes, path, n: int = 24):
    """The test images the model got wrong with the highest confidence in its wrong answer."""
    pyplot = plt()
    pred = probs.argmax(1)
    wrong = np.flatnonzero(pred != y_true)
    wrong = wrong[np.argsort(-probs[wrong, pred[wrong]])][:n]
    cols = 6
    rows = max(1, -(-len(wrong) // cols))
    fig, axes = pyplot.subplots(rows, cols, figsize=(cols * 1.7, rows * 2.0))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, i in zip(np.atleast_1d(axes).ravel(), wrong):
        ax.imshow(images[i], cmap="gray")
        ax.set_title(f"{classes[pred[i]]} {probs[i, pred[i]]:.2f}\n(true {classes[y_true[i]]})", fontsize=7)
    fig.suptitle("most confidently wrong test images: predicted p (true)")
    return save_figure(fig, path), [int(i) for i in wrong]


def plot_filters(conv_weight: np.ndarray, path):
    pyplot = plt()
    w = conv_weight[:, 0]
    n = len(w)
    cols = min(8, n)
    rows = -(-n // cols)
    fig, axes = pyplot.subplots(rows, cols, figsize=(cols * 0.9, rows * 0.9))
    for ax in np.atleast_1d(axes).ravel():
        ax.axis("off")
    for ax, f in zip(np.atleast_1d(axes).ravel(), w):
        m = np.abs(f).max() or 1.0
        ax.imshow(f, cmap="RdBu_r", vmin=-m, vmax=m)
    fig.suptitle(f"first-layer 3x3 filters ({n}); red +, blue -")
    return save_figure(fig, path)


def plot_run_curves(rows, out: Path) -> None:
    plot_curves(rows, "epoch", ["train_loss", "train_loss_clean", "val_loss"], out / "loss.png",
                title="loss (train_loss: augmented batches, smoothed labels)")
    plot_curves(rows, "epoch", ["train_acc", "val_acc"], out / "accuracy.png",
                title="accuracy (train: 5k training images, no augmentation)")


# --- the report ----------------------------------------------------------------------------------------
def evaluate_run(run_path, device: str = "cpu", ds=None, verbose: bool = True) -> dict:
    """Test the run's best checkpoint once, write plots, evaluation.json and report.md; return the metrics."""
    run = RunDir.open(run_path)
    model, cfg, state = load_run(run.path, device)
    model = with_tta(model, cfg.tta_flip)
    if ds is None:
        ds = load_data(cfg.dataset, cfg.seed, cfg.train_subset, cfg.eval_subset)
    logits = predict_logits(model, normalize(ds.test.x))
    probs = softmax(logits)
    pred = probs.argmax(1)
    k = ds.num_classes
    cm = confusion(ds.test.y, pred, k)
    precision, recall = per_class(cm)
    test_acc = float((pred == ds.test.y).mean())
    test_loss = float(-np.log(np.maximum(probs[np.arange(len(pred)), ds.test.y], 1e-12)).mean())

    plot_run_curves(run.metrics(), run.path)
    plot_confusion(cm, ds.classes, run.file("confusion.png"))
    _, wrong_idx = plot_wrong(ds.test.x, ds.test.y, probs, ds.classes, run.file("wrong.png"))
    plot_filters(model.first_conv().weight.detach().cpu().numpy(), run.file("filters.png"))
    rf = receptive_field(model.layout)

    off = cm.copy()
    np.fill_diagonal(off, 0)
    pairs = sorted(((int(off[i, j]), ds.classes[i], ds.classes[j]) for i in range(k) for j in range(k)
                    if off[i, j]), reverse=True)[:5]
    prev = read_json(run.file("results.json")) if run.file("results.json").exists() else {}
    out = {"test_acc": test_acc, "test_loss": test_loss, "best_epoch": int(state["epoch"]),
           "per_class": {c: {"precision": float(p), "recall": float(r)}
                         for c, p, r in zip(ds.classes, precision, recall)},
           "top_confusions": [{"true": t, "predicted": p, "count": n} for n, t, p in pairs],
           "receptive_field": rf, "params": count_params(model), "most_confident_wrong": wrong_idx[:10]}
    run.write_json("evaluation.json", out)
    np.save(run.file("test_logits.npy"), logits.astype(np.float32))

    base = prev.get("baseline_logreg_test_acc")
    rows = run.metrics()
    hardest = sorted(zip(recall, ds.classes))[:3]
    aug_text = f"on (crop pad {cfg.crop_padding}, flip, erasing p={cfg.erasing_p})" if cfg.augment else "off"
    report = [f"# p03_cnn run {run.path.name}", "",
              f"{cfg.arch} CNN (width {cfg.width}, {out['params']:,} parameters) on `{cfg.dataset}`: "
              f"{len(ds.train)} train / {len(ds.val)} val / {len(ds.test)} test images; augmentation "
              f"{aug_text}; "
              f"{cfg.optimizer} lr {cfg.lr} {cfg.schedule}, label smoothing {cfg.label_smoothing}, "
              f"weights {'EMA ' + str(cfg.ema) if cfg.ema else 'raw'}, flip averaging "
              f"{'on' if cfg.tta_flip else 'off'}, "
              f"{len(rows)} epochs run, best val at epoch {out['best_epoch']}.", "",
              "| model | val accuracy | test accuracy |", "|---|---|---|",
              f"| CNN (best-on-val checkpoint) | {prev.get('best_val_acc', float('nan')):.4f} | {test_acc:.4f} |"]
    if base is not None:
        report.append(f"| logistic regression on pixels (baseline) | {prev['baseline_logreg_val_acc']:.4f} | "
                      f"{base:.4f} |")
    if "train_seconds" in prev:
        report += ["", f"Training took {prev['train_seconds']:.0f} s "
                       f"({np.median([r['images_per_s'] for r in rows]):.0f} images/s median); "
                       f"the whole command {prev.get('total_seconds_before_test', 0):.0f} s before the test pass."]
    report += ["", "## Per class (test)", "", "| class | precision | recall |", "|---|---|---|"]
    report += [f"| {c} | {p:.3f} | {r:.3f} |" for c, p, r in zip(ds.classes, precision, recall)]
    report += ["", "Hardest classes (lowest recall): " + ", ".join(f"{c} ({r:.3f})" for r, c in hardest) + ".",
               "Most frequent confusions: " + "; ".join(f"{t} -> {p} ({n})" for n, t, p in pairs) + ".", "",
               "## Receptive field per layer", "", "| layer | kernel | stride | jump | receptive field (px) |",
               "|---|---|---|---|---|"]
    report += [f"| {r['layer']} | {r['kernel']} | {r['stride']} | {r['jump']} | {r['rf']} |" for r in rf]
    report += ["", "## Figures", "", "![loss](loss.png) ![accuracy](accuracy.png)", "", "![confusion](confusion.png)",
               "", "![wrong](wrong.png)", "", "![filters](filters.png)", ""]
    run.write_report("\n".join(report))
    if verbose:
        print_metrics(test_acc=test_acc, baseline_logreg=base if base is not None else float("nan"))
        print("hardest classes: " + ", ".join(f"{c} (recall {r:.3f})" for r, c in hardest), flush=True)
    return out
