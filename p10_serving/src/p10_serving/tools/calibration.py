"""Drift calibration on real images: how often the monitor alerts when nothing changed (false alarms) and
when something did (detection), window by window, for shifts of several sizes.

Every window is a fresh random sample of held-out rows (never the reference's rows), run through the same
predictor as live traffic, then compared with the reference by `drift.compare`. Scenarios:

    none          the same distribution as the reference
    brightness    + d grey levels (0..255), clipped
    contrast      pixels pulled towards each image's mean: mean + c (x - mean)
    rotation      rotated by d degrees (bilinear, same size)
    class_mix     one class k times more frequent than the others
    anomaly_rate  (anomaly detectors) the share of other-class images rises from the reference's 1%
    domain        (text models) a share of the queries comes from another vocabulary
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from dlm_core.predictors import BatchOutput

from ..drift import Detector, compare

IMAGE_SIZES = {"brightness": [5, 10, 20, 40], "contrast": [0.9, 0.8, 0.7, 0.5], "rotation": [5, 10, 15, 30],
               "class_mix": [2, 3, 5]}
ANOMALY_SIZES = {"anomaly_rate": [0.02, 0.05, 0.10]}
DOMAIN_SIZES = {"domain": [0.05, 0.1, 0.25, 0.5]}
OTHER_WORDS = ("the weather today is mild with light rain and a cool breeze over the hills while markets "
               "opened higher after a quiet week of trading").split()


def brightness(x: np.ndarray, d: float) -> np.ndarray:
    return np.clip(x.astype(np.float32) + d, 0, 255)


def contrast(x: np.ndarray, c: float) -> np.ndarray:
    x = x.astype(np.float32)
    mean = x.mean((1, 2), keepdims=True)
    return np.clip(mean + c * (x - mean), 0, 255)


def rotation(x: np.ndarray, deg: float) -> np.ndarray:
    return np.clip(ndimage.rotate(x.astype(np.float32), deg, axes=(1, 2), reshape=False, order=1), 0, 255)


TRANSFORMS = {"brightness": brightness, "contrast": contrast, "rotation": rotation}


def run(p, items, batch: int = 256) -> dict:
    """Raw items through the predictor, as the arrays `compare` takes."""
    out = BatchOutput.concat([p.run([p.prepare(x) for x in items[i:i + batch]]) for i in range(0, len(items), batch)])
    return {"features": out.features, "predictions": out.signal, "embeddings": out.embeddings}


def take(arrays: dict, idx) -> dict:
    return {k: None if v is None else v[idx] for k, v in arrays.items()}


def options(p, ref: dict) -> dict:
    """The Detector's options for predictor `p`, as DriftMonitor.for_predictor sets them from the bundle."""
    if p.prediction_kind == "class":
        return {"n_classes": len(p.post["labels"])}
    if p.prediction_kind == "score":  # the threshold at the reference's 99th percentile, as p07 sets it
        return {"threshold": float(np.quantile(ref["predictions"], 0.99)), "higher_is_anomalous": True}
    return {}


def tally(results: list[dict]) -> dict:
    """Alert / warn rates over windows, and how often each signal alerted."""
    n = len(results)
    signals = sorted({s for r in results for s in r["signals"]})
    return {"windows": n, "alert_rate": sum(r["verdict"] == "alert" for r in results) / n,
            "warn_or_alert_rate": sum(r["verdict"] != "ok" for r in results) / n,
            "signal_alert_rate": {s: sum(r["signals"].get(s) == "alert" for r in results) / n for s in signals}}


def image_calibration(p, images: np.ndarray, labels: np.ndarray, *, windows: int = 100, window: int = 200,
                      ref_rows: int = 1000, sizes: dict | None = None, normal_class: int = 0, seed: int = 0,
                      null_windows: int | None = None, **compare_kw) -> dict:
    """False-alarm and detection rates for an image classifier or anomaly detector. `images` (n, H, W) uint8
    and `labels` are held-out rows (validation + test), never training rows. `windows` per shift size,
    `null_windows` (default: as many) with no shift. `normal_class`: the anomaly detector's normal class,
    and the class made more frequent in class_mix."""
    null_windows = null_windows or windows
    rng = np.random.default_rng(seed)
    anomaly = p.prediction_kind == "score"
    sizes = sizes if sizes is not None else ANOMALY_SIZES if anomaly else IMAGE_SIZES
    if anomaly:  # p07's setting: one normal class, the others are anomalies, 1% of them in the reference
        normal, other = np.flatnonzero(labels == normal_class), np.flatnonzero(labels != normal_class)
        normal, other = rng.permutation(normal), rng.permutation(other)
        n_ref_anom = round(0.01 * ref_rows)
        ref_idx = np.concatenate([normal[:ref_rows - n_ref_anom], other[:n_ref_anom]])
        pool_normal, pool_other = normal[ref_rows - n_ref_anom:], other[n_ref_anom:]
    else:
        order = rng.permutation(len(images))
        ref_idx, pool = order[:ref_rows], order[ref_rows:]
    ref = run(p, images[ref_idx])
    kw = {**options(p, ref), **compare_kw}
    held = run(p, images[pool]) if not anomaly else None  # unshifted outputs, indexed by position in `pool`

    def anomaly_window(rate: float) -> np.ndarray:
        k = rng.binomial(window, rate)
        return np.concatenate([rng.choice(pool_normal, window - k, replace=False),
                               rng.choice(pool_other, k, replace=False)])

    def check(cur: dict) -> dict:
        return compare(ref, cur, p.prediction_kind, p.feature_names, **kw)

    out = {"model": p.name, "version": p.version, "task": p.task, "window": window, "reference_rows": ref_rows,
           "seed": seed, "options": {k: v for k, v in kw.items() if k != "n_classes"}}
    if anomaly:
        out["none"] = tally([check(run(p, images[anomaly_window(0.01)])) for _ in range(null_windows)])
    else:
        out["none"] = tally([check(take(held, rng.choice(len(pool), window, replace=False)))
                             for _ in range(null_windows)])
    out["scenarios"] = {}
    for name, values in sizes.items():
        rows = []
        for v in values:
            results = []
            for _ in range(windows):
                if name == "anomaly_rate":
                    cur = run(p, images[anomaly_window(v)])
                elif name == "class_mix":  # class `normal_class` v times more frequent
                    w = np.where(labels[pool] == normal_class, float(v), 1.0)
                    cur = take(held, rng.choice(len(pool), window, replace=False, p=w / w.sum()))
                else:
                    cur = run(p, TRANSFORMS[name](images[rng.choice(pool, window, replace=False)], v))
                results.append(check(cur))
            rows.append({"size": v, **tally(results)})
        out["scenarios"][name] = rows
    return out


def other_domain_texts(n: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(OTHER_WORDS, rng.integers(3, 10))) for _ in range(n)]


def text_calibration(p, texts: list[str], other: list[str], *, windows: int = 100, window: int = 200,
                     ref_rows: int = 1000, sizes: dict | None = None, seed: int = 0, null_windows: int | None = None,
                     **compare_kw) -> dict:
    """False alarms on in-domain queries and detection when a share of them comes from `other` texts."""
    rng = np.random.default_rng(seed)
    sizes = sizes if sizes is not None else DOMAIN_SIZES
    order = rng.permutation(len(texts))
    ref = run(p, [texts[i] for i in order[:ref_rows]])
    held, alien = run(p, [texts[i] for i in order[ref_rows:]]), run(p, other)
    kw = {**options(p, ref), **compare_kw}
    n_held, n_alien = len(held["predictions"]), len(alien["predictions"])

    def mixed(share: float) -> dict:
        k = rng.binomial(window, share)
        a = take(held, rng.choice(n_held, window - k, replace=False))
        b = take(alien, rng.choice(n_alien, k, replace=False))
        return {key: None if a[key] is None else np.concatenate([a[key], b[key]]) for key in a}

    check = Detector(ref, p.prediction_kind, p.feature_names, window_rows=window, **kw).score  # compare(), built once
    out = {"model": p.name, "version": p.version, "task": p.task, "window": window, "reference_rows": ref_rows,
           "seed": seed, "options": {k: v for k, v in kw.items() if k != "n_classes"},
           "none": tally([check(mixed(0.0)) for _ in range(null_windows or windows)]),
           "scenarios": {}}
    for name, values in sizes.items():
        out["scenarios"][name] = [{"size": v, **tally([check(mixed(v)) for _ in range(windows)])} for v in values]
    return out


def ood_candidates(p, texts: list[str], other: list[str], *, ref_rows: int = 1000, seeds=(0, 1, 2),
                   quantile: float = 0.99, k: int = 10) -> dict:
    """How well candidate per-row out-of-domain scores of a text classifier separate `other` rows from in-domain
    `texts`, on a CHOOSING set (calibrate_drift.py --choose: validation descriptions vs Shakespeare), never the
    reported one. Per reference draw: `ref_rows` in-domain rows set each score's threshold at their `quantile`;
    the other in-domain rows and the `other` rows are scored. Per score, averaged over draws: AUROC (other vs
    held-out in-domain), the share of other rows past the threshold (what a window's alarm rate gains per
    other-domain row) and of held-out in-domain rows (~1 - quantile)."""
    from scipy.stats import mannwhitneyu

    def outputs(items, batch: int = 256) -> BatchOutput:
        return BatchOutput.concat([p.run([p.prepare(x) for x in items[i:i + batch]])
                                   for i in range(0, len(items), batch)])

    def scores(o: BatchOutput) -> dict:
        probs = np.clip(o.tensors["probabilities"].astype(np.float64), 1e-12, 1.0)
        entropy = -(probs * np.log(probs)).sum(1) / np.log(probs.shape[1])
        oov = o.features[:, p.feature_names.index("oov_fraction")].astype(np.float64)
        return {"oov_fraction": oov, "1 - max probability": 1 - probs.max(1), "entropy / ln K": entropy,
                "entropy / ln K + oov_fraction": entropy + oov}

    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)  # noqa: E731

    def knn(q: np.ndarray, bank: np.ndarray, loo: bool = False) -> np.ndarray:
        d = 1 - unit(q.astype(np.float64)) @ unit(bank.astype(np.float64)).T
        if loo:
            np.fill_diagonal(d, np.inf)
        return np.sort(d, 1)[:, :k].mean(1)

    mine, alien = outputs(texts), outputs(other)
    s_in, s_out = scores(mine), scores(alien)
    rows: dict[str, list] = {}
    for seed in seeds:
        order = np.random.default_rng(seed).permutation(len(texts))
        ref, held = order[:ref_rows], order[ref_rows:]
        cands = {name: (v[ref], v[held], s_out[name]) for name, v in s_in.items()}
        if mine.embeddings is not None:
            e = mine.embeddings[ref]
            cands[f"embedding kNN cosine distance (k={k})"] = (knn(e, e, True), knn(mine.embeddings[held], e),
                                                               knn(alien.embeddings, e))
        for name, (r, h, o) in cands.items():
            thr = np.quantile(r, quantile)
            auroc = float(mannwhitneyu(o, h).statistic / (len(o) * len(h)))
            rows.setdefault(name, []).append((auroc, float(np.mean(o > thr)), float(np.mean(h > thr))))
    return {"model": p.name, "version": p.version, "in_domain_rows": len(texts), "other_rows": len(other),
            "reference_rows": ref_rows, "seeds": list(seeds), "quantile": quantile,
            "scores": {name: dict(zip(("auroc", "other_past_threshold", "in_domain_past_threshold"),
                                      np.mean(v, 0).round(4).tolist())) for name, v in rows.items()}}
