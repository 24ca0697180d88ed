"""p10 drift cost (issue #30, "Drift off the request path"): the CPU time of one drift report per window of 500
rows, before and after the reference side moved to a detector built once.

    before  old_compare() below: the code path of p10_serving/src/p10_serving/drift.py at git 6de3d84 (compare and
            its helpers, verbatim but for the old_ prefix), which recomputes the reference's share on every
            report: PSI bin edges, reference SDs, the MMD bandwidth, the pooled (reference + window) kernel, the 500
            permutations, the class counts
    after   drift.Detector(reference, ...) built once (what DriftMonitor.__init__ does), then Detector.score(window)
            per window (what DriftMonitor.evaluate() runs)

One thread (OMP/OPENBLAS/MKL_NUM_THREADS=1, set before numpy loads), time.process_time, old and new timed in
turn on the same windows, each call after a cache flush (a server judges a window seconds after the last one),
medians. Synthetic fixed-seed data in the shapes of the two classifier bundles, with
the reference size of their drift_reference.npz (1,000 validation rows: p03's export n_drift, p06's section
classifier drift_inputs):

    image   fashion-cnn (p03, default width 32): 6 image features (dlm_core.predictors.image.image_features),
            10 classes, 128-d penultimate embedding (non-negative: ReLU + average pooling)
    text    package-section (p06 section classifier on the ens3 ensemble): 4 text features (n_chars, n_tokens,
            unk_fraction, truncated: integers and a 0/1 flag, so KS and PSI see ties), 50 classes (assumed; Debian
            has about that many sections), 2,304-d L2-normalised embedding

Windows: most without drift (a server's usual window), some with a shift. The after figure is the steady state
(`after`: KS p-values are memoised per (n1, n2, D); the memo has seen `--warmup` earlier windows, as a running
server's has); `after_cold` clears that memo before every window (the worst case). The script also checks that old
and new give the same verdicts, signals and p-values on every timed window (exit status 1 if not).

    .venv/bin/python bench/p10_drift_cost.py [--windows 16] [--rounds 3] [--warmup 100]

JSON to bench/results/p10_drift_cost.json.
"""

from __future__ import annotations

import os

if __name__ == "__main__":  # (tests import old_compare from here and keep their threads)
    for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_var] = "1"  # before numpy loads: the BLAS reads them once

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
from scipy.spatial.distance import jensenshannon  # noqa: E402
from scipy.stats import chi2_contingency, fisher_exact, ks_2samp, wasserstein_distance  # noqa: E402

from dlm_core.benchmark import machine, unshadow, write_result  # noqa: E402

unshadow(__file__, "p10_serving")  # bench/p10_serving.py would shadow the package

from p10_serving import drift  # noqa: E402
from p10_serving.drift import (  # noqa: E402
    ALPHA_ALERT,
    ALPHA_WARN,
    LEVELS,
    MIN_ALARM_RATIO,
    MIN_EFFECT_SD,
    MIN_JS,
    PSI_ALERT,
    PSI_BINS,
    PSI_WARN,
)

WINDOW, REFERENCE_ROWS = 500, 1000
GOAL = "ratio <= 0.2 (issue #30: the drift report costs <= 1/5 of today's CPU per window)"


# ------------------------------------------------------------------------------------------- before (6de3d84)
def old_holm(p: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (family-wise error control, uniformly stronger than Bonferroni)."""
    p = np.asarray(p, np.float64)
    m, order = len(p), np.argsort(p)
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


def old_psi(ref: np.ndarray, cur: np.ndarray, bins: int = PSI_BINS, smooth: float = 0.5) -> float:
    """Population stability index: sum (q - p) ln(q / p) over the reference's quantile bins (p reference,
    q current proportions; `smooth` pseudo-counts per bin so an empty bin stays finite). Tied quantiles
    (discrete features) merge into one bin."""
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    k = len(edges) + 1
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=k) + smooth
    c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=k) + smooth
    p, q = r / r.sum(), c / c.sum()
    return float(np.sum((q - p) * np.log(q / p)))


def old_wasserstein_sd(ref: np.ndarray, cur: np.ndarray) -> float:
    """Wasserstein-1 distance in units of the reference's standard deviation (an effect size)."""
    w = wasserstein_distance(ref, cur)
    sd = float(np.std(ref))
    return float(w / sd) if sd > 0 else (0.0 if w == 0 else float("inf"))


def old_rbf_mmd_test(x: np.ndarray, y: np.ndarray, n_perm: int = 500, seed: int = 0) -> dict:
    """MMD^2 (unbiased) between x (reference) and y (current) with an RBF kernel exp(-d^2 / h), h the median
    squared distance within the reference (median heuristic); and the centroid cosine distance. Both get a
    permutation p-value from the same `n_perm` seeded relabellings of the pooled rows, all at once: with Z
    the (N, P) membership matrix of x, every permutation's kernel sums are column sums of Z * (K @ Z)."""
    n, m = len(x), len(y)
    if min(n, m) < 2:
        raise ValueError(f"the MMD test needs at least 2 rows a side, got {n} and {m}")
    z = np.concatenate([x, y]).astype(np.float64)
    sq = (z * z).sum(1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2 * z @ z.T, 0.0)
    h = float(np.median(d2[:n, :n][np.triu_indices(n, 1)]))
    h = h if h > 0 else 1.0
    k = np.exp(-d2 / h)
    np.fill_diagonal(k, 0.0)  # unbiased: no i == j terms
    rng = np.random.default_rng(seed)
    member = np.zeros((n + m, n_perm + 1))
    member[:n, 0] = 1  # column 0: the observed split
    for j in range(1, n_perm + 1):
        member[rng.permutation(n + m)[:n], j] = 1
    kz = k @ member
    sxx = (member * kz).sum(0)                 # sum over x pairs
    sxy = ((1 - member) * kz).sum(0)           # sum over (y, x) pairs
    syy = k.sum() - sxx - 2 * sxy
    mmd2 = sxx / (n * (n - 1)) + syy / (m * (m - 1)) - 2 * sxy / (n * m)
    cx = member.T @ z / n
    cy = (z.sum(0)[None] - member.T @ z) / m
    cos = 1 - (cx * cy).sum(1) / (np.linalg.norm(cx, axis=1) * np.linalg.norm(cy, axis=1) + 1e-12)
    p = lambda s: float((1 + np.sum(s[1:] >= s[0])) / (1 + n_perm))  # noqa: E731
    return {"mmd2": float(mmd2[0]), "mmd_p": p(mmd2), "cosine": float(cos[0]), "cosine_p": p(cos),
            "bandwidth": h}


def old_p_test(signal: str, statistic: str, p: float, gate: bool, feature: str | None = None, **extra) -> dict:
    """A significance test; its verdict comes later, from its p-value Holm-adjusted within its signal, and
    only when its effect gate passes."""
    return {"signal": signal, "statistic": statistic, "feature": feature, "p_raw": float(p), "gate": bool(gate),
            "warn": ALPHA_WARN, "alert": ALPHA_ALERT, "worse": "below", **extra}


def old_psi_test(signal: str, value: float, feature: str | None = None) -> dict:
    verdict = "alert" if value >= PSI_ALERT else "warn" if value >= PSI_WARN else "ok"
    return {"signal": signal, "statistic": "psi", "feature": feature, "value": value, "warn": PSI_WARN,
            "alert": PSI_ALERT, "worse": "above", "verdict": verdict}


def old_numeric_tests(signal: str, ref: np.ndarray, cur: np.ndarray, names: list[str]) -> list[dict]:
    """KS (gated by the Wasserstein distance in reference SDs) and PSI for each column."""
    tests = []
    for j, name in enumerate(names):
        ks, eff = ks_2samp(ref[:, j], cur[:, j]), old_wasserstein_sd(ref[:, j], cur[:, j])
        tests.append(old_p_test(signal, "ks", ks.pvalue, eff >= MIN_EFFECT_SD, name, ks_d=float(ks.statistic),
                            wasserstein_sd=eff, min_effect_sd=MIN_EFFECT_SD))
        tests.append(old_psi_test(signal, old_psi(ref[:, j], cur[:, j]), name))
    return tests


def old_class_tests(ref: np.ndarray, cur: np.ndarray, n_classes: int | None) -> list[dict]:
    """Predicted-class mix: chi-square on the 2 x K contingency table (the reference is a sample too), gated
    by the Jensen-Shannon distance between the two class distributions."""
    k = int(max(ref.max(), cur.max()) + 1) if n_classes is None else n_classes
    counts = np.stack([np.bincount(ref.astype(int), minlength=k), np.bincount(cur.astype(int), minlength=k)])
    js = float(jensenshannon(counts[0] / counts[0].sum(), counts[1] / counts[1].sum(), base=2))
    # classes expected fewer than 5 times in either row are pooled into one cell (chi-square's approximation)
    expected = counts.sum(0) * counts.sum(1, keepdims=True) / counts.sum()
    rare = (expected < 5).any(0)
    counts = np.concatenate([counts[:, ~rare], counts[:, rare].sum(1, keepdims=True)], 1)
    counts = counts[:, counts.sum(0) > 0]
    p = chi2_contingency(counts).pvalue if counts.shape[1] > 1 else 1.0
    return [old_p_test("prediction", "chi2", p, js >= MIN_JS, js_distance=js, min_js=MIN_JS,
                   classes_seen=int(counts.shape[1]))]


def old_alarm_tests(ref: np.ndarray, cur: np.ndarray, threshold: float, higher: bool) -> list[dict]:
    """The rate of scores past the anomaly threshold: one-sided Fisher exact test (more alarms than in the
    reference), gated by the rate at least doubling."""
    a_ref = int(np.sum(ref > threshold if higher else ref < threshold))
    a_cur = int(np.sum(cur > threshold if higher else cur < threshold))
    r_ref, r_cur = a_ref / len(ref), a_cur / len(cur)
    p = fisher_exact([[a_cur, len(cur) - a_cur], [a_ref, len(ref) - a_ref]], alternative="greater").pvalue
    return [old_p_test("prediction", "alarm_rate", p, r_cur >= MIN_ALARM_RATIO * r_ref, rate=r_cur,
                   reference_rate=r_ref, threshold=threshold)]


def old_embedding_tests(ref: np.ndarray, cur: np.ndarray, n_perm: int, seed: int) -> list[dict]:
    t = old_rbf_mmd_test(ref, cur, n_perm, seed)
    return [old_p_test("embedding", "mmd", t["mmd_p"], True, mmd2=t["mmd2"], bandwidth=t["bandwidth"],
                   permutations=n_perm, rows=[len(ref), len(cur)]),
            old_p_test("embedding", "centroid_cosine", t["cosine_p"], True, cosine_distance=t["cosine"],
                   permutations=n_perm)]


def old_worst(verdicts) -> str:
    return max(verdicts, key=LEVELS.__getitem__, default="ok")


def old_compare(ref: dict, cur: dict, kind: str, feature_names: list[str], *, n_classes: int | None = None,
            threshold: float | None = None, higher_is_anomalous: bool = True, n_perm: int = 500,
            mmd_rows: int = 300, seed: int = 0) -> dict:
    """Every test of `cur` against `ref` (dicts of features (n, F), predictions (n,), embeddings (n, D) or
    None): {"tests": [...], "signals": {signal: verdict}, "verdict": the worst}. Pure: what the monitor and
    the calibration script both call."""
    tests = old_numeric_tests("features", ref["features"], cur["features"], feature_names)
    if kind == "class":
        tests += old_class_tests(ref["predictions"], cur["predictions"], n_classes)
    else:
        tests += old_numeric_tests("prediction", ref["predictions"][:, None], cur["predictions"][:, None], [kind])
        if kind == "score" and threshold is not None:
            tests += old_alarm_tests(ref["predictions"], cur["predictions"], threshold, higher_is_anomalous)
    if ref.get("embeddings") is not None and cur.get("embeddings") is not None:
        rng = np.random.default_rng(seed)  # subsample both sides to at most mmd_rows (the test is O(N^2 P))
        pick = lambda a: a[np.sort(rng.choice(len(a), mmd_rows, replace=False))] if len(a) > mmd_rows else a  # noqa: E731
        tests += old_embedding_tests(pick(ref["embeddings"]), pick(cur["embeddings"]), n_perm, seed)
    signals = {}
    for signal in dict.fromkeys(t["signal"] for t in tests):
        group = [t for t in tests if t["signal"] == signal and "p_raw" in t]
        for t, p in zip(group, old_holm([t["p_raw"] for t in group])):  # family-wise control within the signal
            t["value"] = float(p)
            t["verdict"] = "ok" if not t["gate"] else "alert" if p < ALPHA_ALERT else "warn" if p < ALPHA_WARN else "ok"
        signals[signal] = old_worst(t["verdict"] for t in tests if t["signal"] == signal)
    return {"tests": tests, "signals": signals, "verdict": old_worst(signals.values())}


# ------------------------------------------------------------------------------------------- data
class ImageShape:
    """fashion-cnn: 6 image features in 0..1, 10 classes, 128-d non-negative embedding."""
    name, kind, n_classes, dim = "image", "class", 10, 128
    features = ["brightness", "contrast", "ink_fraction", "center_row", "center_col", "edge_strength"]

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.centers = self.rng.normal(0.0, 1.0, (self.n_classes, self.dim))

    def rows(self, n: int, shift: float = 0.0) -> dict:
        rng = self.rng
        y = rng.integers(0, self.n_classes, n)
        f = np.stack([rng.beta(2, 5, n) + 0.1 * shift, rng.beta(3, 4, n), rng.beta(2, 6, n), rng.beta(20, 20, n),
                      rng.beta(20, 20, n), rng.beta(4, 8, n)], 1)
        emb = np.maximum(self.centers[y] + rng.normal(shift, 1.0, (n, self.dim)), 0.0)
        return {"features": f.astype(np.float32), "predictions": y.astype(np.float32),
                "embeddings": emb.astype(np.float32)}


class TextShape:
    """package-section: n_chars, n_tokens, unk_fraction, truncated; 50 classes (a skewed mix); 2,304-d unit
    embeddings."""
    name, kind, n_classes, dim = "text", "class", 50, 2304
    features = ["n_chars", "n_tokens", "unk_fraction", "truncated"]

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.centers = self.rng.normal(0.0, 1.0, (self.n_classes, self.dim)) / np.sqrt(self.dim) * 3
        w = 1 / np.arange(1, self.n_classes + 1) ** 0.8
        self.mix = w / w.sum()

    def rows(self, n: int, shift: float = 0.0) -> dict:
        rng = self.rng
        y = rng.choice(self.n_classes, n, p=self.mix)
        tokens = np.minimum(rng.poisson(40 * (1 + shift), n) + 2, 128)
        f = np.stack([np.round(tokens * rng.uniform(4, 7, n)), tokens,
                      np.round(rng.binomial(tokens, 0.02 + 0.05 * shift) / tokens, 3), (tokens >= 128) * 1.0], 1)
        emb = self.centers[y] + rng.normal(0.0, 1.0, (n, self.dim)) / np.sqrt(self.dim)
        emb[:, 0] += shift
        emb /= np.linalg.norm(emb, axis=1, keepdims=True)
        return {"features": f.astype(np.float32), "predictions": y.astype(np.float32),
                "embeddings": emb.astype(np.float32)}


# ------------------------------------------------------------------------------------------- checks
def differences(a: dict, b: dict) -> dict:
    """Same verdicts and signals? The largest differences of p-values and of the other statistics."""
    same = a["verdict"] == b["verdict"] and a["signals"] == b["signals"] and len(a["tests"]) == len(b["tests"])
    p_diff = stat_diff = 0.0
    for ta, tb in zip(a["tests"], b["tests"]):
        same &= ta["verdict"] == tb["verdict"] and ta.keys() == tb.keys()
        for k in ta:
            if isinstance(ta[k], float) and k not in ("warn", "alert"):
                d = abs(ta[k] - tb[k])
                if k == "p_raw" or (k == "value" and "p_raw" in ta):
                    p_diff = max(p_diff, d)
                else:
                    stat_diff = max(stat_diff, d)
    return {"same": bool(same), "p": p_diff, "stat": stat_diff}


_FLUSH: list[np.ndarray] = []


def cpu(fn, *args, flush: bool = True, **kw) -> tuple[float, object]:
    """CPU seconds of fn(*args, **kw) in this process, and its result. The caches are flushed first (not timed):
    in a server a report comes seconds after the last one, with requests served in between."""
    if flush:
        if not _FLUSH:
            _FLUSH.append(np.zeros(8_000_000))  # 64 MB, past any L3 here
        _FLUSH[0] += 1.0
    t = time.process_time()
    out = fn(*args, **kw)
    return time.process_time() - t, out


def measure(shape, windows: int, rounds: int, warmup: int, seed: int) -> dict:
    s = shape(seed)
    ref = s.rows(REFERENCE_ROWS)
    opts = {"n_classes": s.n_classes}
    build = [cpu(drift.Detector, ref, s.kind, s.features, window_rows=WINDOW, **opts)[0] for _ in range(3)]
    det = drift.Detector(ref, s.kind, s.features, window_rows=WINDOW, **opts)
    for _ in range(warmup):  # a server that has already judged `warmup` windows (the KS memo)
        det.score(s.rows(WINDOW))
    old_t, new_t, cold_t, checks = [], [], [], []
    for r in range(rounds):
        for i in range(windows):
            shift = 0.0 if i % 4 else (0.05, 0.3, 1.0)[(i // 4 + r) % 3]  # one window in four shifted
            cur = s.rows(WINDOW, shift)
            t, old = cpu(old_compare, ref, cur, s.kind, s.features, **opts)
            old_t.append(t)
            t, new = cpu(det.score, cur)
            new_t.append(t)
            memo = dict(drift._KS_MEMO)
            drift._KS_MEMO.clear()  # the worst case: no KS p-value seen before
            cold_t.append(cpu(det.score, cur)[0])
            drift._KS_MEMO.update(memo)
            checks.append({**differences(old, new), "verdict": old["verdict"]})
    # the monitor's own call: evaluate() on a full window (the window's copy out of the batches + score)
    mon = drift.DriftMonitor(ref, s.kind, s.features, window=WINDOW, **opts)

    class Batch:
        def __init__(self, rows):
            self.features, self.signal, self.embeddings = rows["features"], rows["predictions"], rows["embeddings"]

    batches = [Batch(s.rows(32)) for _ in range(WINDOW // 32 + 1)]
    update = [cpu(mon.update, b, flush=False)[0] for b in batches]  # the serving path: hot
    evaluate = [cpu(mon.evaluate)[0] for _ in range(5)]
    med = lambda ts: statistics.median(ts) * 1000  # noqa: E731
    return {
        "shape": {"features": len(s.features), "classes": s.n_classes, "embedding_dim": s.dim,
                  "reference_rows": REFERENCE_ROWS, "window_rows": WINDOW, "mmd_rows": 300, "permutations": 500},
        "before_ms": med(old_t), "after_ms": med(new_t), "after_cold_ms": med(cold_t),
        "ratio": med(new_t) / med(old_t), "ratio_cold": med(cold_t) / med(old_t),
        "construction_ms": med(build), "monitor_evaluate_ms": med(evaluate),
        "update_us_per_batch_of_32": statistics.median(update) * 1e6,
        "timed_windows": len(old_t),
        "same_verdicts": all(c["same"] for c in checks),
        "max_abs_p_value_diff": max(c["p"] for c in checks),
        "max_abs_statistic_diff": max(c["stat"] for c in checks),
        "verdicts": {v: sum(c["verdict"] == v for c in checks) for v in ("ok", "warn", "alert")},
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--windows", type=int, default=16, help="windows per round (one in four shifted)")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup", type=int, default=100, help="windows the detector scores before the timing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="JSON path (default bench/results/p10_drift_cost.json)")
    args = p.parse_args()
    t0 = time.time()
    shapes = {shape.name: measure(shape, args.windows, args.rounds, args.warmup, args.seed)
              for shape in (ImageShape, TextShape)}
    ratio = max(r["ratio"] for r in shapes.values())
    same = all(r["same_verdicts"] for r in shapes.values())
    result = {
        "bench": "p10_drift_cost", "machine": machine(),
        "ours": {f"cpu_ms_per_window_{k}": r["after_ms"] for k, r in shapes.items()}
        | {f"construction_ms_{k}": r["construction_ms"] for k, r in shapes.items()},
        "peer": {f"cpu_ms_per_window_{k}": r["before_ms"] for k, r in shapes.items()},
        "ratio": ratio, "goal": GOAL, "goal_met": ratio <= 0.2 and same,
        "ratio_note": "the larger of the shapes' ratios (after / before, medians of CPU ms per window)",
        "shapes": shapes, "threads": 1, "peer_code": "old_compare: p10_serving drift.py at git 6de3d84",
        "args": vars(args), "wall_s": round(time.time() - t0, 1),
    }
    write_result("p10_drift_cost", result, args.out)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
