"""Held-out evaluation (test split, touched once), the logistic-regression baseline, plots and report.md."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits  # installed with scikit-learn

from dlm_core.plotting import plot_curves, plt, save_figure
from dlm_core.runs import RunDir

from .config import Config
from .data import Data
from .nn import Module
from .tensor import Tensor, no_grad
from .train import accuracy


def baseline_logreg(data: Data, seed: int = 0) -> float:
    """sklearn's logistic regression on the same train split, scored on the same test split."""
    # One BLAS thread: on a busy 2-core machine OpenBLAS's threads made this fit ~100x slower (9 s vs 0.1 s).
    with threadpool_limits(limits=1, user_api="blas"):
        clf = LogisticRegression(max_iter=3000, random_state=seed).fit(data.x_train, data.y_train)
        return float(clf.score(data.x_test, data.y_test))


def plot_decision_boundary(model: Module, data: Data, path, title: str = "") -> None:
    """Colour the plane by the model's predicted class; test points on top."""
    x = np.concatenate([data.x_train, data.x_test])
    lo, hi = x.min(0) - 0.3, x.max(0) + 0.3
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], 250), np.linspace(lo[1], hi[1], 250))
    grid = np.stack([gx.ravel(), gy.ravel()], 1).astype(data.x_train.dtype)
    with no_grad():
        pred = model(Tensor(grid)).data.argmax(1).reshape(gx.shape)
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(5, 4.5))
    k = len(data.classes)
    ax.contourf(gx, gy, pred, levels=np.arange(k + 1) - 0.5, cmap="coolwarm" if k == 2 else "viridis", alpha=0.35)
    ax.scatter(data.x_test[:, 0], data.x_test[:, 1], c=data.y_test, s=10, edgecolors="k", linewidths=0.3,
               cmap="coolwarm" if k == 2 else "viridis")
    ax.set_title(title or "decision boundary (test points)")
    ax.grid(False)
    save_figure(fig, path)


def confusion(model: Module, x: np.ndarray, y: np.ndarray, k: int) -> np.ndarray:
    with no_grad():
        pred = model(Tensor(x)).data.argmax(1)
    m = np.zeros((k, k), dtype=int)
    np.add.at(m, (y, pred), 1)
    return m


def plot_confusion(m: np.ndarray, classes: list[str], path) -> None:
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(4.6, 4))
    ax.imshow(m, cmap="Blues")
    for (i, j), v in np.ndenumerate(m):
        if v:
            ax.text(j, i, str(v), ha="center", va="center", fontsize=7, color="white" if v > m.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("test confusion matrix")
    ax.grid(False)
    save_figure(fig, path)


def evaluate(cfg: Config, model: Module, data: Data, run: RunDir, seconds: float) -> dict:
    test_acc = accuracy(model, data.x_test, data.y_test)
    baseline = baseline_logreg(data, cfg.seed)
    rows = run.metrics()
    plot_curves(rows, "epoch", ["loss"], run.file("loss.png"), title="training loss (cross-entropy)")
    plot_curves(rows, "epoch", ["val_acc"], run.file("val_acc.png"), title="validation accuracy")
    figures = ["loss.png", "val_acc.png"]
    if data.n_features == 2:
        plot_decision_boundary(model, data, run.file("decision_boundary.png"),
                               f"{cfg.dataset}: decision boundary, test acc {test_acc:.3f}")
        figures.append("decision_boundary.png")
    else:
        plot_confusion(confusion(model, data.x_test, data.y_test, len(data.classes)), data.classes,
                       run.file("confusion.png"))
        figures.append("confusion.png")
    result = {"dataset": cfg.dataset, "test_accuracy": test_acc, "baseline_logreg_test_accuracy": baseline,
              "final_loss": rows[-1]["loss"] if rows else None, "epochs": cfg.epochs,
              "train_size": len(data.y_train), "val_size": len(data.y_val), "test_size": len(data.y_test),
              "train_seconds": seconds}
    run.write_json("results.json", result)
    sizes = "-".join(str(s) for s in [data.n_features, *cfg.hidden, len(data.classes)])
    run.write_report(
        f"# p01_autodiff: MLP on the numpy autodiff engine\n\n"
        f"MLP {sizes} ({cfg.activation}, {cfg.dtype}) trained with {cfg.optimizer} (lr {cfg.lr}) for {cfg.epochs} "
        f"epochs on `{cfg.dataset}` ({len(data.y_train)} train / {len(data.y_val)} val / {len(data.y_test)} test), "
        f"{seconds:.1f} s of training. Every gradient came from `Tensor.backward()`.\n\n"
        f"| model | test accuracy |\n|---|---|\n| MLP on the engine (this run) | {test_acc:.4f} |\n"
        f"| logistic regression (sklearn baseline) | {baseline:.4f} |\n\n"
        + " ".join(f"![{f[:-4]}]({f})" for f in figures) + "\n")
    return result
