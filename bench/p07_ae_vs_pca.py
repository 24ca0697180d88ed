"""p07 bench: the conv autoencoder against PCA scored with the same rule, over the 10 Fashion-MNIST one-class
tasks, on the same classes, seeds and splits; every number is computed on two splits:

    val    for selection: per class, the class's images of the core's validation split are normal and the other
           nine classes' validation images are anomalies (4,500 per class)
    test   the official test set (1,000 normal, 9,000 anomalies), the protocol of the README's 10-class table

Scoring rules, applied alike to both models: "error" = the mean squared Gaussian-blurred residual (the package's
score); "error+w code" = that error plus w times the squared Mahalanobis distance of the code (the AE's bottleneck;
PCA's first k scores, i.e. Hotelling's T^2) under a Gaussian fitted on the training codes, each term standardised by
its mean and std on the normal validation images. PCA is fitted once per class with --pca-k's largest k and scored
with each k. --set key=value overrides the AE config; --members M averages M autoencoders (seeds seed*100 + m).
One torch thread.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

# this file is named like the package: keep bench/ off the import path so `p07_autoencoder` is the package
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def parse_value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


SPLITS = ("val", "test")
# scoring rules, applied alike to the AE and to PCA: z(error) + w * z(code distance), w below
RULES = {"error": 0.0, "error+code/2": 0.5, "error+code": 1.0, "error+2code": 2.0}


def mahalanobis(train_codes, codes):
    """Squared Mahalanobis distance of codes under a Gaussian fitted on the training codes (small ridge)."""
    import numpy as np

    mu = train_codes.mean(0)
    cov = np.cov(train_codes, rowvar=False) + 1e-6 * np.eye(train_codes.shape[1])
    d = codes - mu
    return (d @ np.linalg.inv(cov) * d).sum(1)


def combine(err_val, err_eval, code_val, code_eval, w):
    """error + w * code distance, each standardised by its mean and std on the normal validation images."""
    z = lambda v, e: (e - v.mean()) / (v.std() + 1e-12)
    return z(err_val, err_eval) + w * z(code_val, code_eval) if w else err_eval


def pca_error(pca, k, x, z, blur):
    """The AE's error measure (mean squared blurred residual) on the reconstruction from PCA's first k components."""
    from p07_autoencoder.model import residual_errors

    rec = z[:, :k] @ pca.components_[:k] + pca.mean_
    return residual_errors((rec - x.reshape(len(x), -1)).reshape(len(x), 1, 28, 28), blur).reshape(len(x), -1).mean(1)


def summarise(result: dict) -> dict:
    """Means over classes (and seeds) per split, rule and k; the AE's rule and PCA's (rule, k) chosen on val."""
    import numpy as np

    result = json.loads(json.dumps(result))  # as read back from the file: k and seed keys are strings
    rows, ks = result["rows"], [str(k) for k in result["pca_k"]]
    ae = lambda split, r, sel=lambda row: True: float(np.mean([row["ae"][split][r] for row in rows if sel(row)]))
    pca = lambda split, r, k, sel=lambda row: True: float(np.mean([row["pca"][split][r][k] for row in rows
                                                                   if sel(row)]))
    mean = {split: {"autoencoder": {r: ae(split, r) for r in RULES},
                    "pca": {r: {k: pca(split, r, k) for k in ks} for r in RULES}} for split in SPLITS}
    ae_rule = max(RULES, key=lambda r: mean["val"]["autoencoder"][r])
    pca_rule, pca_k = max(((r, k) for r in RULES for k in ks), key=lambda rk: mean["val"]["pca"][rk[0]][rk[1]])
    pca_err_k = max(ks, key=lambda k: mean["val"]["pca"]["error"][k])
    chosen = {"autoencoder": {"rule": ae_rule}, "pca": {"rule": pca_rule, "k": pca_k},
              "pca_error_only": {"rule": "error", "k": pca_err_k}, "autoencoder_error_only": {"rule": "error"}}
    for c in chosen.values():
        for split in SPLITS:
            for s in result["seeds"]:
                one = lambda row, s=s: row["seed"] == s
                c.setdefault(split + "_per_seed", {})[s] = (ae(split, c["rule"], one) if "k" not in c
                                                            else pca(split, c["rule"], c["k"], one))
            c[split] = ae(split, c["rule"]) if "k" not in c else pca(split, c["rule"], c["k"])
    ours, peer = chosen["autoencoder"]["test"], chosen["pca"]["test"]
    return {**result, "mean_roc_auc": mean, "chosen_on_val": chosen, "ours": ours, "peer": peer,
            "ratio": ours / peer, "difference": ours - peer,
            "goal": "test mean ROC-AUC of the AE minus PCA's, each with the rule (and PCA's k) chosen on val: >= 0.01"}


def write(result: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: result[k] for k in ("chosen_on_val", "ours", "peer", "difference", "wall_seconds")}))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="AEConfig override")
    p.add_argument("--members", type=int, default=1, help="autoencoders per detector (scores averaged)")
    p.add_argument("--pca-k", default="8,16,32,64,128", help="PCA components tried")
    p.add_argument("--name", default="", help="label of this AE variant in the output")
    p.add_argument("--out", default="bench/results/p07_ae_vs_pca.json")
    p.add_argument("--resummarise", action="store_true", help="recompute the summary of --out's rows; no training")
    args = p.parse_args()
    if args.resummarise:
        write(summarise(json.loads(Path(args.out).read_text())), Path(args.out))
        return 0

    import numpy as np
    import torch
    from sklearn.decomposition import PCA
    from sklearn.metrics import roc_auc_score

    from dlm_core.benchmark import machine
    from dlm_core.data import load_dataset
    from dlm_core.runs import RunDir
    from p07_autoencoder.config import base_config
    from p07_autoencoder.data import preprocess
    from p07_autoencoder.model import squared_errors
    from p07_autoencoder.train import fit

    torch.set_num_threads(1)
    overrides = dict(kv.split("=", 1) for kv in args.set)
    cfg0 = dataclasses.replace(base_config("sweep"), **{k: parse_value(v) for k, v in overrides.items()})
    seeds = [int(s) for s in args.seeds.split(",")]
    classes = [int(c) for c in args.classes.split(",")]
    ks = [int(k) for k in args.pca_k.split(",")]
    blur = cfg0.error_blur
    spec = {"kind": "image", "input_shape": [1, 28, 28], "scale": 1 / 255.0, "error_blur": blur}
    auc = lambda y, s: float(roc_auc_score(y, s))

    rows, t_start = [], time.perf_counter()
    for seed in seeds:
        ds = load_dataset("fashion-mnist", seed=seed)
        x_eval = {"val": preprocess(ds.val.x, spec), "test": preprocess(ds.test.x, spec)}
        for c in classes:
            x_train = preprocess(ds.train.x[ds.train.y == c], spec)
            x_val = preprocess(ds.val.x[ds.val.y == c], spec)  # normal only: what fit() selects epochs on
            y = {"val": (ds.val.y != c).astype(np.int64), "test": (ds.test.y != c).astype(np.int64)}
            cfg = dataclasses.replace(cfg0, normal_class=c, seed=seed)
            prep = type("Prep", (), {"kind": "image", "x_train": x_train, "x_val": x_val, "preprocess": spec})()
            t0 = time.perf_counter()
            ae_score = {split: {rule: 0.0 for rule in RULES} for split in SPLITS}
            for m in range(args.members):
                mcfg = dataclasses.replace(cfg, seed=seed * 100 + m) if args.members > 1 else cfg
                with tempfile.TemporaryDirectory() as tmp:
                    model = fit(mcfg, prep, RunDir.at(tmp), quiet=True)
                err = lambda x: squared_errors(model, x, blur_sigma=blur).mean(1)  # noqa: B023 (used at once)
                with torch.no_grad():
                    code = lambda x: model.encoder(torch.from_numpy(x)).double().numpy()  # noqa: B023
                    c_train, c_val = code(x_train), code(x_val)
                    e_val = err(x_val)
                    for split in SPLITS:
                        e, d = err(x_eval[split]), mahalanobis(c_train, code(x_eval[split]))
                        for rule, w in RULES.items():
                            s = combine(e_val, e, mahalanobis(c_train, c_val), d, w)
                            ae_score[split][rule] = ae_score[split][rule] + s / args.members
            ae_seconds = time.perf_counter() - t0
            t0 = time.perf_counter()
            pca = PCA(n_components=max(ks), random_state=seed).fit(x_train.reshape(len(x_train), -1))
            project = lambda x: (x.reshape(len(x), -1) - pca.mean_) @ pca.components_.T  # noqa: B023
            z_val = project(x_val)
            pca_auc = {split: {rule: {} for rule in RULES} for split in SPLITS}
            for k in ks:  # the first k components of one fit
                var = pca.explained_variance_[:k]
                e_val, d_val = pca_error(pca, k, x_val, z_val, blur), (z_val[:, :k] ** 2 / var).sum(1)
                for split in SPLITS:
                    z = project(x_eval[split])
                    e, d = pca_error(pca, k, x_eval[split], z, blur), (z[:, :k] ** 2 / var).sum(1)
                    for rule, w in RULES.items():
                        pca_auc[split][rule][k] = auc(y[split], combine(e_val, e, d_val, d, w))
            row = {"seed": seed, "class": c,
                   "ae": {split: {r: auc(y[split], v) for r, v in ae_score[split].items()} for split in SPLITS},
                   "ae_seconds": ae_seconds, "pca": pca_auc, "pca_seconds": time.perf_counter() - t0}
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("seed", "class", "ae", "ae_seconds")}), flush=True)

    result = {"bench": "p07_ae_vs_pca", "name": args.name or ",".join(args.set) or "default",
              "config": dataclasses.asdict(cfg0), "members": args.members, "seeds": seeds, "classes": classes,
              "rules": RULES, "pca_k": ks, "rows": rows, "wall_seconds": time.perf_counter() - t_start,
              "machine": {**machine(), "note": "2-core CPU shared with other jobs; 1 torch thread"}}
    write(summarise(result), Path(args.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
