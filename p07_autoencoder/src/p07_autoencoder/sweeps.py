"""The 10-class Fashion-MNIST one-class table and the latent-dim sweep: many run_experiment calls, one summary."""

from __future__ import annotations

import dataclasses

import numpy as np

from dlm_core.plotting import plt, save_figure
from dlm_core.runs import RunDir, new_run_id, print_metrics

from .config import AEConfig
from .evaluate import plot_latent_sweep
from .train import PROJECT, describe, run_experiment

METHODS = ("autoencoder", "isolation_forest", "pca_reconstruction")
EXTRA = ("pca_same_error",)  # analysis column: PCA scored with the same blurred error, present when blur > 0


def all_classes(cfg: AEConfig, classes: range | list[int] = range(10)) -> dict:
    """One detector per normal class; per-class ROC-AUC table beside IsolationForest and PCA (same splits)."""
    parent = RunDir.create(PROJECT, cfg, run_id=new_run_id("oneclass-all"))
    print(f"run: {parent.path}", flush=True)
    rows = []
    for c in classes:
        ccfg = dataclasses.replace(cfg, normal_class=c)
        r = run_experiment(ccfg, run=RunDir.at(parent.path / f"class{c}", ccfg), quiet=True)
        methods = [m for m in METHODS + EXTRA if m in r]
        row = {"class": c, "name": r["normal_class_name"], **{m: r[m]["roc_auc"] for m in methods},
               **{f"{m}_pr": r[m]["pr_auc"] for m in methods}, "ae_f1": r["autoencoder"]["f1"],
               "ae_test_fpr": r["autoencoder"]["fpr"], "run_dir": r["run_dir"]}
        rows.append(row)
        parent.log(**row)
        print_metrics(**{"class": c, "ae_auc": row["autoencoder"], "iforest_auc": row["isolation_forest"],
                         "pca_auc": row["pca_reconstruction"], "ae_test_fpr": row["ae_test_fpr"]})
    mean = {m: float(np.mean([r[m] for r in rows])) for m in METHODS + EXTRA if all(m in r for r in rows)}
    summary = {"rows": rows, "mean_roc_auc": mean, "config": dataclasses.asdict(cfg),
               "goal_beats_both_baselines": bool(mean["autoencoder"] > max(mean["isolation_forest"],
                                                                           mean["pca_reconstruction"]))}
    if "pca_same_error" in mean:
        summary["beats_pca_with_same_error"] = bool(mean["autoencoder"] > mean["pca_same_error"])
    parent.write_json("summary.json", summary)
    table = auc_table(rows, mean)
    _plot_bars(rows, parent.file("per_class_auc.png"))
    parent.write_report(f"# Fashion-MNIST one-class, all classes\n\n{describe(cfg)}; budget per class: "
                        f"{cfg.epochs} epochs on {cfg.max_train or 'all'} training images.\n\n{table}\n\n"
                        "![per-class AUC](per_class_auc.png)\n")
    print(table, flush=True)
    print_metrics(mean_ae_auc=mean["autoencoder"], mean_iforest_auc=mean["isolation_forest"],
                  mean_pca_auc=mean["pca_reconstruction"], goal_met=summary["goal_beats_both_baselines"])
    return summary


def auc_table(rows: list[dict], mean: dict) -> str:
    """Markdown table; bold = best of the AE and the two baselines; the PCA-with-blurred-error column is analysis."""
    extra = [m for m in EXTRA if m in mean]
    head = "| normal class | AE ROC-AUC | IsolationForest | PCA-reconstruction |"
    head += "".join(" PCA, blurred error |" for _ in extra) + " AE PR-AUC | AE test FPR |"
    lines = [head, "|---" * (head.count("|") - 1) + "|"]
    for r in rows:
        best = max(METHODS, key=lambda m: r[m])
        cells = [f"**{r[m]:.4f}**" if m == best else f"{r[m]:.4f}" for m in METHODS] + [f"{r[m]:.4f}" for m in extra]
        lines.append(f"| {r['class']} {r['name']} | {' | '.join(cells)} | {r['autoencoder_pr']:.4f} "
                     f"| {r['ae_test_fpr']:.4f} |")
    lines.append("| **mean** | " + " | ".join(f"**{mean[m]:.4f}**" for m in METHODS + tuple(extra)) + " | | |")
    return "\n".join(lines)


def _plot_bars(rows, path):
    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(9, 3.6))
    x = np.arange(len(rows))
    labels = {"autoencoder": "autoencoder", "isolation_forest": "IsolationForest", "pca_reconstruction": "PCA",
              "pca_same_error": "PCA, blurred error"}
    methods = [m for m in labels if all(m in r for r in rows)]
    w = 0.8 / len(methods)
    for i, m in enumerate(methods):
        ax.bar(x + (i - (len(methods) - 1) / 2) * w, [r[m] for r in rows], width=w, label=labels[m])
    ax.set_xticks(x)
    ax.set_xticklabels([f"{r['class']} {r['name'][:9]}" for r in rows], fontsize=8, rotation=20)
    ax.set_ylim(0.4, 1.0)
    ax.set_ylabel("test ROC-AUC")
    ax.set_title("Fashion-MNIST one-class: ROC-AUC per normal class")
    ax.legend(fontsize=8, ncol=len(methods), loc="lower left")
    return save_figure(fig, path)


def latent_sweep(cfg: AEConfig, dims: list[int]) -> list[dict]:
    """Train one model per bottleneck size (everything else fixed). The bottleneck of the headline runs was
    fixed before this sweep; its test AUC column is analysis, not a selection rule (val error is the only
    label-free signal, and it keeps falling with a wider bottleneck, which is the point of the plot)."""
    parent = RunDir.create(PROJECT, cfg, run_id=new_run_id(f"latent-{cfg.dataset}"))
    print(f"run: {parent.path}", flush=True)
    rows = []
    for b in dims:
        bcfg = dataclasses.replace(cfg, bottleneck=b)
        r = run_experiment(bcfg, run=RunDir.at(parent.path / f"latent{b}", bcfg), plots=False, quiet=True)
        row = {"bottleneck": b, "val_error": r["val_error"], "roc_auc": r["autoencoder"]["roc_auc"],
               "pr_auc": r["autoencoder"]["pr_auc"], "pca_roc_auc": r["pca_reconstruction"]["roc_auc"],
               "iforest_roc_auc": r["isolation_forest"]["roc_auc"]}
        rows.append(row)
        parent.log(**row)
        print_metrics(**row)
    parent.write_json("summary.json", {"rows": rows, "config": dataclasses.asdict(cfg)})
    plot_latent_sweep(rows, parent.file("latent_sweep.png"), describe(cfg).rsplit(", bottleneck", 1)[0])
    lines = ["| bottleneck | val error | AE ROC-AUC | PCA ROC-AUC (same k) |", "|---|---|---|---|"]
    lines += [f"| {r['bottleneck']} | {r['val_error']:.4g} | {r['roc_auc']:.4f} | {r['pca_roc_auc']:.4f} |"
              for r in rows]
    parent.write_report(f"# Latent-dim sweep\n\n{describe(cfg)}\n\n" + "\n".join(lines) +
                        "\n\n![sweep](latent_sweep.png)\n")
    return rows
