"""Train an autoencoder on normal data only, then threshold, evaluate, compare with baselines, plot, report.

    prep = data.load(cfg)                  normal-only train/val, labelled test
    model = fit(cfg, prep, run)            epochs of MSE (denoising: noisy input, clean target), best by val error
    result = evaluate_run(cfg, prep, model, run)   threshold from val errors at --fpr, test metrics, baselines
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import torch

from dlm_core.checkpoint import Checkpointer, resume_training, rng_state
from dlm_core.device import select_device
from dlm_core.errors import check_finite
from dlm_core.plotting import plot_curves
from dlm_core.runs import RunDir, print_metrics, progress
from dlm_core.seed import data_rng, seed_everything, torch_generator

from .config import AEConfig
from .data import Prepared, load
from .evaluate import (
    BASELINES,
    baseline_errors,
    best_f1_threshold,
    metrics_at,
    plot_histogram,
    plot_image_pairs,
    plot_roc_pr,
    plot_series,
    threshold_at_fpr,
    unit_scores,
)
from .model import Scorer, build_model, code_stats, image_scores, squared_errors

PROJECT = "p07_autoencoder"


def fit(cfg: AEConfig, prep: Prepared, run, resume: bool = False, quiet: bool = False):
    seed_everything(cfg.seed)
    device = select_device(cfg.device)
    model = build_model(prep.kind, prep.preprocess["input_shape"], cfg.bottleneck, cfg.width).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ckpt = Checkpointer(run.checkpoint_dir)
    start, best_val = 1, float("inf")
    if resume and (state := resume_training(ckpt, model, opt, run)) is not None:
        start, best_val = state["epoch"] + 1, state["best_val"]

    xt = torch.from_numpy(prep.x_train)
    n = len(xt)
    blur = prep.preprocess.get("error_blur", 0.0)
    step = (start - 1) * -(-n // cfg.batch_size)
    for epoch in range(start, cfg.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        order = data_rng(cfg.seed, epoch).permutation(n)
        noise_gen = torch_generator(cfg.seed, 1000 + epoch)
        total = 0.0
        bar = progress(range(0, n, cfg.batch_size), desc=f"epoch {epoch}")
        for i in bar:
            clean = xt[order[i:i + cfg.batch_size]].to(device)
            noisy = clean
            if cfg.denoising:
                noisy = clean + cfg.noise_std * torch.randn(clean.shape, generator=noise_gen).to(device)
            loss = (model(noisy) - clean).pow(2).mean()
            step += 1
            check_finite(loss.item(), step, cfg.lr)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.item() * len(clean)
            bar.set_postfix(loss=f"{loss.item():.4f}")
        val_error = float(squared_errors(model, prep.x_val, device=device, blur_sigma=blur).mean())
        is_best = val_error < best_val
        best_val = min(best_val, val_error)
        row = {"epoch": epoch, "train_loss": total / n, "val_error": val_error, "seconds": time.perf_counter() - t0}
        run.log(**row)
        if not quiet:
            print_metrics(**{k: v for k, v in row.items() if k != "seconds"})
        ckpt.save(epoch, {"model": model.state_dict(), "optimizer": opt.state_dict(), "rng": rng_state(),
                          "best_val": best_val, "config": dataclasses.asdict(cfg)}, is_best=is_best)
    model.load_state_dict(ckpt.best()["model"])  # selected on the normal-only validation error
    model.eval()
    return model


def evaluate_run(cfg: AEConfig, prep: Prepared, model, run, plots: bool = True, baselines: bool = True) -> dict:
    """Threshold from validation errors, test metrics for the AE and the baselines, plots, report.md."""
    device = next(model.parameters()).device
    blur = prep.preprocess.get("error_blur", 0.0)
    code = None
    if prep.kind == "image":  # one score per image: the blurred error (+ the code's distance, Scorer)
        if cfg.code_weight > 0:
            code = code_stats(model, prep.x_train, prep.x_val, blur, cfg.code_weight, device=device)
        scorer = Scorer(model, blur, code)
        val, test = (image_scores(scorer, x, device=device) for x in (prep.x_val, prep.x_test))
    else:
        val, test = (unit_scores(prep, squared_errors(model, x, device=device, blur_sigma=blur), split)
                     for x, split in ((prep.x_val, "val"), (prep.x_test, "test")))
    y = prep.y_test
    threshold = threshold_at_fpr(val, cfg.fpr)
    ae = metrics_at(y, test, threshold)
    ae["val_fpr"] = float((val > threshold).mean())
    f1_t, f1_best = best_f1_threshold(y, test)
    ae["diagnostic_best_f1"], ae["diagnostic_best_f1_threshold"] = f1_best, f1_t
    result = {"dataset": cfg.dataset, "kind": prep.kind, "autoencoder": ae, "n_train": len(prep.x_train),
              "n_val": len(val), "val_error": float(val.mean()), "n_test": len(y),
              "test_anomaly_rate": float(y.mean()), "fpr_target": cfg.fpr}
    if prep.kind == "image":
        result["normal_class"] = cfg.normal_class
        result["normal_class_name"] = prep.preprocess["normal_class_name"]
    if prep.kind == "series":
        top = int(prep.test_ids[int(np.argmax(test))])
        idx = np.flatnonzero(prep.series_labels)
        # UCR archive convention: the single highest-scoring point must fall within 100 points of the anomaly
        result["top_point"] = top
        result["top_point_hit"] = bool(idx[0] - 100 <= top <= idx[-1] + 100)

    named = {"autoencoder": test}
    if baselines:
        for name, (bv, bt) in baseline_errors(prep, cfg.bottleneck, cfg.seed).items():
            sv, st = unit_scores(prep, bv, "val"), unit_scores(prep, bt, "test")
            result[name] = metrics_at(y, st, threshold_at_fpr(sv, cfg.fpr))
            named[name.replace("_", " ")] = st

    spec = {**prep.preprocess, "threshold": threshold, "fpr_target": cfg.fpr,
            "score": "mean squared reconstruction error per input (of the preprocessed input"
                     + (f"; image residual Gaussian-blurred with std {blur} px first)" if prep.kind == "image"
                        and blur else ")")
                     + (f", standardised on validation, plus {cfg.code_weight:g} x the standardised squared "
                        "Mahalanobis distance of the bottleneck code (code_score)" if code else "")}
    if code:
        spec["code_score"] = code
    run.write_json("preprocess.json", spec)
    run.write_json("results.json", result)
    np.savez_compressed(run.file("scores.npz"), val=val, test=test, y_test=y)
    if plots:
        title = describe(cfg)
        plot_histogram(test, y, threshold, run.file("error_hist.png"), f"test errors, {title}")
        plot_roc_pr(y, named, run.file("roc_pr.png"), title)
        if prep.kind == "image":
            _image_plots(cfg, prep, model, test, threshold, run, device)
        if prep.kind == "series":
            plot_series(prep, test, threshold, run.file("series_error.png"), title)
        plot_curves(run.metrics(), "epoch", ["train_loss", "val_error"], run.file("loss.png"),
                    title="reconstruction loss (val: normal only)", logy=True)
    run.write_report(report_text(cfg, result, plots))
    return result


def _image_plots(cfg, prep, model, test, threshold, run, device):
    classes = prep.preprocess["classes"]
    k = min(cfg.topk, len(test))

    def recon(idx):
        with torch.no_grad():
            return model(torch.from_numpy(prep.x_test[idx]).to(device)).cpu().numpy()

    top = np.argsort(-test)[:k]
    caps = [("A " if prep.y_test[i] else "N ") + classes[prep.test_classes[i]][:11] for i in top]
    plot_image_pairs(prep.x_test[top], recon(top), test[top], caps, run.file("topk_errors.png"),
                     f"{k} highest-error test images (N = normal class, A = anomaly)")
    normal = np.flatnonzero(prep.y_test == 0)
    worst = normal[np.argsort(-test[normal])][:k]
    worst = worst[test[worst] > threshold] if (test[worst] > threshold).any() else worst[:1]
    plot_image_pairs(prep.x_test[worst], recon(worst), test[worst], [classes[cfg.normal_class][:11]] * len(worst),
                     run.file("false_positives.png"), "worst false positives: normal test images above the threshold")


def describe(cfg: AEConfig) -> str:
    what = {"fashion-oneclass": f"Fashion-MNIST one-class, normal = class {cfg.normal_class}",
            "shuttle": "ODDS Shuttle", "ucr-kdd135": f"UCR KDD-TSAD 135, window {cfg.window}"}[cfg.dataset]
    return f"{what}, bottleneck {cfg.bottleneck}{', denoising' if cfg.denoising else ''}"


def report_text(cfg: AEConfig, r: dict, plots: bool) -> str:
    ae = r["autoencoder"]
    unit = {"image": "images", "tabular": "rows", "series": "points"}[r["kind"]]
    lines = [f"# Autoencoder anomaly detection: {describe(cfg)}", "",
             f"Trained on {r['n_train']} normal training inputs only; the threshold is the "
             f"{100 * (1 - cfg.fpr):g}th percentile of the reconstruction errors of {r['n_val']} held-out normal "
             f"validation {unit} (target false-positive rate {cfg.fpr:g}: with no labelled anomalies, the only "
             "thing we can control is how often a normal input raises an alarm). Test: "
             f"{r['n_test']} {unit}, {100 * r['test_anomaly_rate']:.1f}% anomalous; test labels were used only "
             "for the numbers below.", "",
             "| method | ROC-AUC | PR-AUC | precision | recall | F1 | test FPR |", "|---|---|---|---|---|---|---|"]
    for name, label in {"autoencoder": "autoencoder", **BASELINES}.items():
        if name in r:
            m = r[name]
            lines.append(f"| {label} | {m['roc_auc']:.4f} | {m['pr_auc']:.4f} | {m['precision']:.3f} "
                         f"| {m['recall']:.3f} | {m['f1']:.3f} | {m['fpr']:.4f} |")
    lines += ["", f"Autoencoder threshold {ae['threshold']:.4g} (validation FPR {ae['val_fpr']:.4f}). Diagnostic "
              "only (chosen on test labels, never used): the F1-optimal test threshold "
              f"{ae['diagnostic_best_f1_threshold']:.4g} "
              f"would give F1 {ae['diagnostic_best_f1']:.3f}.", ""]
    if "top_point" in r:
        lines += [f"Highest-scoring point: {r['top_point']} (within 100 points of the labelled region: "
                  f"{r['top_point_hit']}).", ""]
    if plots:
        lines += ["![histogram](error_hist.png)", "", "![roc](roc_pr.png)", ""]
        if r["kind"] == "image":
            lines += ["![topk](topk_errors.png)", "", "![fp](false_positives.png)", ""]
        if r["kind"] == "series":
            lines += ["![series](series_error.png)", ""]
        lines += ["![loss](loss.png)", ""]
    return "\n".join(lines)


def run_experiment(cfg: AEConfig, run=None, resume: bool = False, plots: bool = True, baselines: bool = True,
                   quiet: bool = False) -> dict:
    prep = load(cfg)
    run = run or RunDir.create(PROJECT, cfg)
    model = fit(cfg, prep, run, resume=resume, quiet=quiet)
    result = evaluate_run(cfg, prep, model, run, plots=plots, baselines=baselines)
    result["run_dir"] = str(run.path)
    return result
