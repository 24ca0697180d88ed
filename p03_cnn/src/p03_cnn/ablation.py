"""The augmentation ablation: the same config with and without augmentation over several seeds; test
accuracy mean and spread, and the train/val gap per epoch that shows what augmentation changed."""

from __future__ import annotations

import dataclasses

import numpy as np

from dlm_core.io import read_json
from dlm_core.plotting import plt, save_figure
from dlm_core.runs import RunDir, print_metrics

from .train import train


def run_ablation(base, seeds: list[int], out=None) -> dict:
    root = RunDir.create("p03_cnn_ablation", base) if out is None else RunDir.at(out, base)
    results = {"on": [], "off": []}
    curves = {"on": [], "off": []}
    for seed in seeds:
        for arm in ("on", "off"):
            cfg = dataclasses.replace(base, augment=arm == "on", seed=seed)
            print(f"--- augmentation {arm}, seed {seed}", flush=True)
            res = train(cfg, run_dir=root.path / f"aug-{arm}-seed{seed}")
            ev = read_json(root.path / f"aug-{arm}-seed{seed}" / "evaluation.json")
            rows = RunDir(root.path / f"aug-{arm}-seed{seed}").metrics()
            results[arm].append({"seed": seed, "test_acc": ev["test_acc"], "best_val_acc": res["best_val_acc"],
                                 "final_gap": rows[-1]["train_acc"] - rows[-1]["val_acc"]})
            curves[arm].append([(r["epoch"], r["train_acc"] - r["val_acc"], r["val_loss"]) for r in rows])
    summary = {"config": dataclasses.asdict(base), "seeds": seeds, "runs": results}
    for arm in ("on", "off"):
        accs = np.array([r["test_acc"] for r in results[arm]])
        gaps = np.array([r["final_gap"] for r in results[arm]])
        summary[f"aug_{arm}"] = {"test_acc_mean": float(accs.mean()), "test_acc_std": float(accs.std(ddof=1))
                                 if len(accs) > 1 else 0.0, "test_acc_min": float(accs.min()),
                                 "test_acc_max": float(accs.max()), "final_gap_mean": float(gaps.mean())}
        print_metrics(augment=arm, test_acc_mean=accs.mean(), test_acc_std=summary[f"aug_{arm}"]["test_acc_std"],
                      train_val_gap=gaps.mean())
    root.write_json("ablation.json", summary)

    pyplot = plt()
    fig, (a, b) = pyplot.subplots(1, 2, figsize=(9, 3.5))
    for arm, color in (("on", "tab:blue"), ("off", "tab:red")):
        for i, rows in enumerate(curves[arm]):
            ep, gap, vloss = zip(*rows)
            a.plot(ep, gap, color=color, alpha=0.8, label=f"augment {arm}" if i == 0 else None)
            b.plot(ep, vloss, color=color, alpha=0.8, label=f"augment {arm}" if i == 0 else None)
    a.set_xlabel("epoch")
    a.set_title("train acc - val acc (gap)")
    a.legend()
    b.set_xlabel("epoch")
    b.set_title("val loss")
    b.legend()
    save_figure(fig, root.file("ablation_gap.png"))
    print(f"ablation: {root.path}", flush=True)
    return summary
