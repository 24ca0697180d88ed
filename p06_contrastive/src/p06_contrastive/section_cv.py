"""K-fold cross-validation of the section classifier against TF-IDF + logistic regression.

The fixed test split has 2,000 packages over 54 sections, 15 of them with five packages or fewer: one package of a
one-package section moves macro-F1 by 1.9 points, so a paired bootstrap interval on it is about +-2 points wide
and cannot separate two models that differ by less. Here every package of train + test is scored once, by the
served recipe and by the baseline trained without it (K folds, a source package's documents always in one
fold, as in the dataset's own split), and the interval is taken over all of them, resampling source packages.

Nothing is tuned here: the settings are the ones val chose for the served model (SectionConfig; the linear
part's and the baseline's C, the baseline's features), and in every fold the choices the recipe makes on val
(the network's epoch, the linear part's share, each model's prior shift) are made again on the same fixed
validation split, which is never scored. Each fold's result is saved as it finishes, so a stopped run resumes.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from dlm_core.io import atomic_path, read_json, write_json

from .config import SectionConfig


def pooled_split(y: dict, max_pool: int = 0, seed: int = 0) -> np.ndarray:
    """Positions in train + test (train first) that the folds share out; `max_pool`: a seeded subset (tests)."""
    n = len(y["train"]) + len(y["test"])
    pool = np.arange(n)
    if max_pool and n > max_pool:
        pool = np.sort(np.random.default_rng(seed).choice(n, max_pool, replace=False))
    return pool


def pooled_sources(split_seed: int = 0) -> np.ndarray:
    """The source package of each train + test document (train first), the unit the folds keep together."""
    from .section import section_sources

    src = section_sources(split_seed)
    return np.concatenate([src["train"], src["test"]])


def fold_assignment(labels: np.ndarray, groups: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Each item's fold: all documents of one source package in the same fold (a library's -dev, -doc and
    runtime descriptions are near-copies of each other; the dataset's own split keeps them together too), and
    each section spread over the folds as evenly as that allows."""
    from sklearn.model_selection import StratifiedGroupKFold

    fold = np.empty(len(labels), dtype=np.int64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "The least populated class has only N members"
        splitter = StratifiedGroupKFold(folds, shuffle=True, random_state=seed)
        for k, (_, held) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
            fold[held] = k
    return fold


def run_fold(cfg: SectionConfig, k: int, folds: int, split_seed: int, max_pool: int, baseline_features: str,
             baseline_c: float, threads: int, out: Path) -> dict:
    """Train the served recipe and the baseline without fold k; their predictions for fold k's packages."""
    import torch
    from threadpoolctl import threadpool_limits

    from .section import (
        baseline_logp,
        choose_prior_shift,
        choose_share,
        fit_one_vs_rest,
        fit_section_model,
        log_prior,
        mix,
        predict_proba,
        scores,
        section_data,
        word_rows,
    )

    torch.set_num_threads(threads)
    t0 = time.time()

    def log(*args):
        print(f"[fold {k + 1}/{folds}]", *args, flush=True)

    with threadpool_limits(threads):
        texts, y, labels = section_data(split_seed)
        all_texts, all_y = texts["train"] + texts["test"], np.concatenate([y["train"], y["test"]])
        pool = pooled_split(y, max_pool, split_seed)
        fold = fold_assignment(all_y[pool], pooled_sources(split_seed)[pool], folds, split_seed)
        held, kept = pool[fold == k], pool[fold != k]
        d_texts = {"train": [all_texts[i] for i in kept], "val": texts["val"], "test": [all_texts[i] for i in held]}
        d_y = {"train": all_y[kept], "val": y["val"], "test": all_y[held]}
        log(f"{len(kept)} train / {len(y['val'])} val / {len(held)} held-out packages")
        vecs, model, choice, x = fit_section_model(d_texts, d_y, labels, cfg, log)
        p_net = {s: predict_proba(model, x[s]) for s in ("val", "test")}
        linear = fit_one_vs_rest(x["train"], d_y["train"], cfg.linear_c, len(labels))
        p_lin = {s: linear.proba(x[s]) for s in ("val", "test")}
        share = choose_share(p_net["val"], p_lin["val"], d_y["val"])["share"]
        log(f"linear part C={cfg.linear_c:g}: share {share}")
        n_text = len(vecs[0].vocabulary_) + len(vecs[1].vocabulary_)
        xs = word_rows(d_texts) if baseline_features == "word" else {s: m[:, :n_text] for s, m in x.items()}
        base_logp = baseline_logp(baseline_features, xs, d_y["train"], baseline_c, len(labels))
        prior = log_prior(d_y["train"], len(labels))
        preds, taus = {}, {}
        for who, logp in (("model", {s: np.log(mix(p_net[s], p_lin[s], share) + 1e-12) for s in p_net}),
                          ("network", {s: np.log(p_net[s] + 1e-12) for s in p_net}),
                          ("tfidf_logreg", base_logp)):
            taus[who] = choose_prior_shift(logp["val"], d_y["val"], prior)["tau"]
            preds[who] = (logp["test"] - taus[who] * prior).argmax(1)
        result = {"fold": k, "folds": folds, "items": held.tolist(), "labels": d_y["test"].tolist(),
                  "predictions": {w: p.tolist() for w, p in preds.items()},
                  "scores": {w: scores(d_y["test"], p) for w, p in preds.items()},
                  "choices": {"epoch": choice["epoch"], "share": share, "tau": taus},
                  "train_packages": int(len(kept)), "seconds": round(time.time() - t0, 1),
                  "settings": _settings(cfg, folds, split_seed, max_pool, baseline_features, baseline_c)}
    # the val and held-out probabilities of the network, the linear part and the baseline, for analyses of other
    # decision rules (chosen on val)
    with atomic_path(out / f"fold-{k}.npz") as tmp, open(tmp, "wb") as fh:
        probs = {"network": p_net, "linear": p_lin, "tfidf_logreg": {s: np.exp(lp) for s, lp in base_logp.items()}}
        np.savez_compressed(fh, items=held, prior=prior, share=share,
                            **{f"{who}_{s}": p.astype(np.float32) for who, ps in probs.items() for s, p in ps.items()})
    write_json(out / f"fold-{k}.json", result)
    log(json.dumps({w: {m: round(v, 4) for m, v in s.items()} for w, s in result["scores"].items()})
        + f" ({result['seconds']:.0f} s)")
    return result


def _settings(cfg, folds, split_seed, max_pool, baseline_features, baseline_c) -> dict:
    return {"config": dataclasses.asdict(cfg), "folds": folds, "fold_unit": "source package", "split_seed": split_seed,
            "max_pool": max_pool, "baseline_features": baseline_features, "baseline_c": baseline_c}


def cross_validate(cfg: SectionConfig, out: Path, folds: int = 6, jobs: int = 2, split_seed: int = 0,
                   max_pool: int = 0, baseline_features: str = "word+char", baseline_c: float = 100.0,
                   resamples: int = 2000, log=print) -> dict:
    """All folds (`jobs` at a time, one thread each; finished folds of an identical earlier run are reused),
    then the pooled scores and the paired bootstrap interval of model minus baseline over every scored package."""
    from .section import paired_bootstrap, scores

    out.mkdir(parents=True, exist_ok=True)
    settings = _settings(cfg, folds, split_seed, max_pool, baseline_features, baseline_c)
    done, todo = {}, []
    for k in range(folds):
        f = out / f"fold-{k}.json"
        if f.exists() and read_json(f).get("settings") == json.loads(json.dumps(settings)):
            done[k] = read_json(f)
            log(f"fold {k + 1}/{folds}: reused {f}")
        else:
            todo.append(k)
    t0 = time.time()
    threads = max(1, (os.cpu_count() or 1) // max(1, min(jobs, len(todo) or 1)))
    args = [(cfg, k, folds, split_seed, max_pool, baseline_features, baseline_c, threads, out) for k in todo]
    if jobs > 1 and len(todo) > 1:
        with ProcessPoolExecutor(min(jobs, len(todo)), mp_context=get_context("spawn")) as ex:
            for r in ex.map(run_fold, *zip(*args)):
                done[r["fold"]] = r
    else:
        for a in args:
            r = run_fold(*a)
            done[r["fold"]] = r
    rows = [done[k] for k in range(folds)]
    y = np.concatenate([r["labels"] for r in rows])
    groups = pooled_sources(split_seed)[np.concatenate([r["items"] for r in rows])]
    pred = {w: np.concatenate([r["predictions"][w] for r in rows]) for w in rows[0]["predictions"]}
    result = {"settings": settings, "packages": int(len(y)),
              "scores": {w: scores(y, p) for w, p in pred.items()},
              "per_fold": [{"fold": r["fold"], "train_packages": r["train_packages"], "held_out": len(r["labels"]),
                            "seconds": r["seconds"], "choices": r["choices"], "scores": r["scores"]} for r in rows],
              # resampling source packages (the interval to read) and, for comparison, single packages
              "bootstrap_model_minus_tfidf": paired_bootstrap(y, pred["model"], pred["tfidf_logreg"], resamples,
                                                              groups=groups),
              "bootstrap_model_minus_tfidf_by_item": paired_bootstrap(y, pred["model"], pred["tfidf_logreg"],
                                                                      resamples),
              "bootstrap_network_minus_tfidf": paired_bootstrap(y, pred["network"], pred["tfidf_logreg"], resamples,
                                                                groups=groups),
              "wall_seconds_this_call": round(time.time() - t0, 1)}
    with atomic_path(out / "predictions.npz") as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, items=np.concatenate([r["items"] for r in rows]), labels=y, **pred)
    write_json(out / "section_cv.json", result)
    return result
