"""Scores -> threshold -> metrics, the scikit-learn baselines on the same splits, plots and the report."""

from __future__ import annotations

import math

import numpy as np
from sklearn.decomposition import PCA
from sklearn.ensemble import IsolationForest
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score, roc_curve

from dlm_core.checkpoint import Checkpointer
from dlm_core.errors import DlmError
from dlm_core.io import read_json
from dlm_core.plotting import plt, save_figure
from dlm_core.runs import RunDir

from .config import AEConfig
from .data import Prepared, point_scores
from .model import build_model, residual_errors


# --- a trained run, built from its own saved config ----------------------------------------------------
def load_run(run_path) -> tuple[object, dict, object]:
    """(config, preprocess spec, autoencoder in eval mode) from a finished run directory."""
    run = RunDir.open(run_path)
    cfg = AEConfig(**run.load_config())
    if not run.file("preprocess.json").is_file():
        raise DlmError(f"{run.path} has no preprocess.json: the run did not finish; train it again or --resume it")
    spec = read_json(run.file("preprocess.json"))
    model = build_model(spec["kind"], spec["input_shape"], cfg.bottleneck, cfg.width)
    model.load_state_dict(Checkpointer(run.checkpoint_dir).best()["model"])
    model.eval()
    return cfg, spec, model


# --- threshold and metrics -------------------------------------------------------------------------------
def threshold_at_fpr(val_scores: np.ndarray, fpr: float) -> float:
    """The threshold t with floor(fpr * n) validation scores strictly above it (anomaly = score > t).

    Validation holds only normal data, so the fraction above t is the false-positive rate we expect on
    new normal data: t is the (1 - fpr) empirical quantile of the normal errors (the k+1-th largest).
    """
    s = np.sort(np.asarray(val_scores, np.float64))[::-1]
    if len(s) == 0:
        raise ValueError("no validation scores to set a threshold from")
    k = min(int(math.floor(fpr * len(s))), len(s) - 1)
    return float(s[k])


def metrics_at(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict:
    """Confusion counts, precision/recall/F1/FPR at a threshold (anomaly = score > threshold), ROC-AUC, PR-AUC."""
    y = np.asarray(y).astype(bool)
    pred = np.asarray(scores) > threshold
    tp, fp = int((pred & y).sum()), int((pred & ~y).sum())
    fn, tn = int((~pred & y).sum()), int((~pred & ~y).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    both = 0 < y.sum() < len(y)
    return {"threshold": float(threshold), "tp": tp, "fp": fp, "fn": fn, "tn": tn, "precision": precision,
            "recall": recall, "f1": f1, "fpr": fp / (fp + tn) if fp + tn else 0.0,
            "roc_auc": float(roc_auc_score(y, scores)) if both else float("nan"),
            "pr_auc": float(average_precision_score(y, scores)) if both else float("nan")}


def best_f1_threshold(y: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """DIAGNOSTIC ONLY (it looks at test labels): the threshold that maximises F1 on the given labels."""
    p, r, t = precision_recall_curve(y, scores)
    f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)[:-1]
    i = int(np.argmax(f1))
    # precision_recall_curve predicts score >= t; our rule is score > threshold, so step just below t[i]
    return float(np.nextafter(t[i], -np.inf)), float(f1[i])


def unit_scores(prep: Prepared, sq_err: np.ndarray, split: str) -> np.ndarray:
    """Per-element squared errors -> one score per evaluation unit (image, row, or series point)."""
    if prep.kind != "series":
        return sq_err.mean(1).astype(np.float64)
    n_points = len(sq_err) + prep.preprocess["window"] - 1
    return point_scores(sq_err, n_points)


BASELINES = {"isolation_forest": "IsolationForest", "pca_reconstruction": "PCA-reconstruction",
             "pca_same_error": "PCA, blurred error"}


# --- baselines on the same splits --------------------------------------------------------------------------
def baseline_errors(prep: Prepared, n_components: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """IsolationForest and PCA-reconstruction fitted on the same normal training inputs; for images with an
    error blur, also PCA (k = the bottleneck) scored with the same blurred error ("pca_same_error"), so the comparison
    separates what the network adds from what the error measure adds. (PCA keeps the error alone: adding its codes'
    Mahalanobis distance, as the AE's score does, lowers PCA's validation ROC-AUC; bench/p07_ae_vs_pca.py.)

    Returns name -> (per-element val errors, per-element test errors) shaped like the AE's, so the same
    unit_scores/threshold code applies (IsolationForest's window score is spread over the window's points).
    """
    flat = lambda x: x.reshape(len(x), -1).astype(np.float64)
    xtr, xva, xte = flat(prep.x_train), flat(prep.x_val), flat(prep.x_test)
    out = {}
    forest = IsolationForest(n_estimators=100, random_state=seed).fit(xtr)
    iso = lambda x: np.repeat(-forest.score_samples(x)[:, None], x.shape[1], axis=1)
    out["isolation_forest"] = (iso(xva), iso(xte))
    k = int(min(n_components, xtr.shape[1] - 1, len(xtr) - 1))
    pca = PCA(n_components=k, random_state=seed).fit(xtr)
    residuals = [pca.inverse_transform(pca.transform(x)) - x for x in (xva, xte)]  # reconstructed once
    out["pca_reconstruction"] = tuple(r ** 2 for r in residuals)
    blur = prep.preprocess.get("error_blur", 0.0)
    if prep.kind == "image" and blur > 0:  # the AE's own error measure on PCA's reconstruction
        shape = prep.x_train.shape[1:]
        out["pca_same_error"] = tuple(residual_errors(r.reshape(len(r), *shape), blur).reshape(len(r), -1)
                                      for r in residuals)
    return out


# --- plots -----------------------------------------------------------------------------------------------
def plot_histogram(scores: np.ndarray, y: np.ndarray, threshold: float, path, title: str):
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(6.4, 3.6))
    lo = max(float(np.min(scores)), 1e-12)
    bins = np.geomspace(lo, max(float(np.max(scores)), lo * 10), 60)
    ax.hist(scores[y == 0], bins=bins, alpha=0.6, density=True, label=f"normal (n={int((y == 0).sum())})")
    ax.hist(scores[y == 1], bins=bins, alpha=0.6, density=True, label=f"anomaly (n={int((y == 1).sum())})")
    ax.axvline(threshold, color="k", ls="--", label=f"threshold {threshold:.3g}")
    ax.set_xscale("log")
    ax.set_xlabel("reconstruction error (log scale)")
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    return save_figure(fig, path)


def plot_roc_pr(y: np.ndarray, named_scores: dict[str, np.ndarray], path, title: str):
    pyplot = plt()
    fig, (a1, a2) = pyplot.subplots(1, 2, figsize=(10, 4))
    for name, s in named_scores.items():
        fpr, tpr, _ = roc_curve(y, s)
        a1.plot(fpr, tpr, label=f"{name} (AUC {roc_auc_score(y, s):.3f})")
        p, r, _ = precision_recall_curve(y, s)
        a2.plot(r, p, label=f"{name} (AP {average_precision_score(y, s):.3f})")
    a1.plot([0, 1], [0, 1], color="grey", lw=0.8, ls=":")
    a1.set(xlabel="false-positive rate", ylabel="true-positive rate", title="ROC")
    a2.axhline(float(np.mean(y)), color="grey", lw=0.8, ls=":", label="chance")
    a2.set(xlabel="recall", ylabel="precision", title="precision-recall")
    a1.legend(fontsize=8)
    a2.legend(fontsize=8)
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_image_pairs(x: np.ndarray, recon: np.ndarray, scores: np.ndarray, captions: list[str], path, title: str):
    """Row 1: inputs, row 2: reconstructions, each captioned with its error."""
    pyplot = plt()
    n = len(x)
    fig, axes = pyplot.subplots(2, max(n, 1), figsize=(1.15 * max(n, 1), 2.9), squeeze=False)
    for i in range(n):
        axes[0, i].imshow(x[i, 0], cmap="gray", vmin=0, vmax=1)
        axes[0, i].set_title(f"{captions[i]}\n{scores[i]:.3g}", fontsize=7)
        axes[1, i].imshow(recon[i, 0], cmap="gray", vmin=0, vmax=1)
    for ax in axes.ravel():
        ax.axis("off")
    axes[0, 0].text(-4, 14, "input", rotation=90, va="center", ha="right", fontsize=8)
    axes[1, 0].text(-4, 14, "recon", rotation=90, va="center", ha="right", fontsize=8)
    fig.suptitle(title, fontsize=9)
    return save_figure(fig, path)


def plot_series(prep: Prepared, test_scores: np.ndarray, threshold: float, path, title: str):
    pyplot = plt()
    values, labels = prep.series, prep.series_labels
    fig, (a1, a2) = pyplot.subplots(2, 1, figsize=(11, 5), sharex=True)
    a1.plot(np.arange(len(values)), values, lw=0.6, color="C0")
    a1.axvspan(0, prep.test_ids[0], color="green", alpha=0.08, label="normal prefix (train + val)")
    idx = np.flatnonzero(labels)
    for ax in (a1, a2):
        if len(idx):
            ax.axvspan(idx[0], idx[-1] + 1, color="red", alpha=0.25, label="labelled anomaly")
    a1.set_ylabel("value")
    a1.legend(fontsize=8, loc="upper right")
    a2.plot(prep.test_ids, test_scores, lw=0.7, color="C1", label="reconstruction error per point")
    a2.axhline(threshold, color="k", ls="--", lw=0.8, label=f"threshold {threshold:.3g}")
    a2.set_yscale("log")
    a2.set_xlabel("time index")
    a2.set_ylabel("error")
    a2.legend(fontsize=8, loc="upper right")
    fig.suptitle(title)
    return save_figure(fig, path)


def plot_latent_sweep(rows: list[dict], path, title: str):
    pyplot = plt()
    fig, (a1, a2) = pyplot.subplots(1, 2, figsize=(10, 3.8))
    dims = [r["bottleneck"] for r in rows]
    a1.plot(dims, [r["val_error"] for r in rows], marker="o")
    a1.set(xscale="log", xlabel="bottleneck (latent dim)", ylabel="mean val reconstruction error",
           title="normal-only validation error")
    a2.plot(dims, [r["roc_auc"] for r in rows], marker="o", label="autoencoder")
    a2.plot(dims, [r["pca_roc_auc"] for r in rows], marker="s", ls="--", label="PCA, same k")
    a2.set(xscale="log", xlabel="bottleneck (latent dim)", ylabel="test ROC-AUC", title="test ROC-AUC (analysis)")
    a2.legend()
    for ax in (a1, a2):
        ax.set_xticks(dims)
        ax.set_xticklabels([str(d) for d in dims])
    fig.suptitle(title)
    return save_figure(fig, path)
