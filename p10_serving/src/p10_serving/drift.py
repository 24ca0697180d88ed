"""Drift monitoring: a sliding window of live rows per model, compared with the bundle's drift reference
(drift_reference.npz, computed on the validation split by the same predictor code as live traffic).

Three signals (four with `ood`), each a handful of tests, each test a row {signal, statistic, feature, value,
warn, alert, worse, verdict}:

    features     per numeric input feature: KS (scipy) with Holm's correction over the features, gated by the
                 Wasserstein distance in reference standard deviations (an alert needs significance AND an
                 effect >= MIN_EFFECT_SD: on large windows KS flags differences too small to matter); PSI by
                 hand (reference decile bins, smoothed; 0.1 warn, 0.25 alert)
    prediction   class: chi-square on the 2 x K table of predicted-class counts, gated by the Jensen-Shannon
                 distance; score / length / top_score: KS (gated) + PSI on the signal; anomaly score with a
                 threshold: the alarm rate, Fisher's exact test against the reference's rate
    embedding    MMD^2 with an RBF kernel (median heuristic from the reference) and a permutation test by
                 hand, plus the centroid cosine distance, tested on the same permutations
    ood          (models whose predictor gives each row an `ood_score` feature: p06's section classifier) the rate
                 of rows past the reference's 99th percentile of that score, Fisher's exact test against the
                 reference's rate (issue #33: a 10% share of other-domain text moves no distribution enough)

The p-values of a signal are Holm-adjusted together (so each signal alone raises a false alert in at most
ALPHA_ALERT of the windows); a test is "warn" below ALPHA_WARN and "alert" below ALPHA_ALERT, and only when
its effect gate passes. PSI is compared with its fixed thresholds. A signal's verdict is its worst row, the
model's verdict the worst signal.
No verdict (and no statistic) while the window holds fewer than `min_rows` rows.

Reference side once (issue #30). As in alibi-detect (`KSDrift(x_ref)`, `MMDDrift(x_ref)`), each signal's test is
an object built from the reference, which does the reference's share of the work once, and whose `tests(cur)`
scores one window:

    NumericDetector   KS + Wasserstein / SD + PSI per column: sorted reference columns, their SDs, PSI bin edges
                      and reference bin proportions (numeric_tests() builds one and scores)
    ClassDetector     chi-square + JS: the reference's class counts (class_tests())
    AlarmDetector     Fisher: the reference's alarm count (alarm_tests())
    OODDetector       Fisher on the out-of-domain rows: the threshold (the reference's 99th percentile of ood_score)
                      and the reference's count past it
    MMDDetector       MMD^2 + centroid cosine: the reference subsample, its bandwidth, its kernel block and, per
                      window size, the fixed permutations' reference-only share of every kernel sum
                      (rbf_mmd_test(), embedding_tests())
    Detector          all of a model's signals; score(cur) -> {tests, signals, verdict}. compare() is
                      Detector(ref, ...).score(cur): one code path for the monitor and the calibration.

Same seeds, same permutations, same results as the one-shot compare() of before (git 6de3d84; bench/p10_drift_cost.py
keeps it as old_compare and checks): the pooled kernel is the same, only its new blocks (reference x window,
window x window) are computed per window. The permutation sums run as float32 matrix products with a rigorous
error bound; a relabelling whose statistic lies within that bound of the observed one is recomputed in float64,
so every p-value is the float64 one, and MMD^2 agrees to float64 rounding (~1e-15).

DriftMonitor: update() appends (the serving path), evaluate() computes a report (the lifecycle watcher, once per
window of fresh rows), last_report is what every reader (/metrics, the dashboard, GET drift) shows.
"""

from __future__ import annotations

import collections
import logging
import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.linalg.blas import strmm
from scipy.spatial.distance import jensenshannon
from scipy.special import chdtrc
from scipy.stats import fisher_exact, ks_2samp, wasserstein_distance

ALPHA_WARN, ALPHA_ALERT = 0.05, 0.005  # on p-values Holm-adjusted within each signal (family-wise per signal)
MIN_EFFECT_SD = 0.1     # Wasserstein distance in reference SDs below which a KS "significant" is ignored
PSI_WARN, PSI_ALERT = 0.1, 0.25
PSI_BINS = 10
MIN_JS = 0.05           # Jensen-Shannon distance (base 2) below which a chi-square "significant" is ignored
MIN_ALARM_RATIO = 2.0   # the alarm rate must at least double before its test can warn or alert
OOD_FEATURE = "ood_score"  # a predictor's per-row out-of-domain score, when it has one (OODDetector)
OOD_QUANTILE = 0.99     # its alarm threshold: the reference's 99th percentile, as p07 sets its anomaly threshold
LEVELS = {"ok": 0, "warn": 1, "alert": 2}


# ------------------------------------------------------------------------------------------- statistics
def holm(p: np.ndarray) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (family-wise error control, uniformly stronger than Bonferroni)."""
    p = np.asarray(p, np.float64)
    m, order = len(p), np.argsort(p)
    adj = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adj, 1.0)
    return out


def chi2_pvalue(counts: np.ndarray) -> float:
    """scipy.stats.chi2_contingency(counts).pvalue (Pearson, Yates' correction at one degree of freedom), with the
    same arithmetic but without its per-call machinery (a third of the class test's time); tested equal."""
    obs = np.asarray(counts, np.float64)
    expected = obs.sum(1, keepdims=True) * obs.sum(0, keepdims=True) / obs.sum()
    dof = expected.size - sum(expected.shape) + expected.ndim - 1
    if dof == 0:
        return 1.0
    if dof == 1:
        diff = expected - obs
        obs = obs + np.minimum(0.5, np.abs(diff)) * np.sign(diff)
    return float(chdtrc(dof, ((obs - expected) ** 2 / expected).sum()))


def psi_reference(ref: np.ndarray, bins: int = PSI_BINS, smooth: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """The reference's share of the PSI: its quantile bin edges (tied quantiles merged) and smoothed bin
    proportions."""
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1) + smooth
    return edges, r / r.sum()


def psi_score(edges: np.ndarray, p: np.ndarray, cur: np.ndarray, smooth: float = 0.5) -> float:
    """The PSI of `cur` against a reference given by psi_reference()."""
    c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1) + smooth
    q = c / c.sum()
    return float(np.sum((q - p) * np.log(q / p)))


def psi(ref: np.ndarray, cur: np.ndarray, bins: int = PSI_BINS, smooth: float = 0.5) -> float:
    """Population stability index: sum (q - p) ln(q / p) over the reference's quantile bins (p reference,
    q current proportions; `smooth` pseudo-counts per bin so an empty bin stays finite). Tied quantiles
    (discrete features) merge into one bin."""
    return psi_score(*psi_reference(ref, bins, smooth), cur, smooth)


def wasserstein_sd(ref: np.ndarray, cur: np.ndarray) -> float:
    """Wasserstein-1 distance in units of the reference's standard deviation (an effect size)."""
    return effect_sd(float(wasserstein_distance(ref, cur)), float(np.std(ref)))


def effect_sd(w: float, sd: float) -> float:
    return float(w / sd) if sd > 0 else (0.0 if w == 0 else float("inf"))


_vecdot = np.vecdot if hasattr(np, "vecdot") else (lambda a, b: np.sum(a * b))  # what scipy's W1 uses
KS_EXACT_MAX = 10_000      # ks_2samp(method="auto") is exact up to this many rows a side
_KS_MEMO: dict[tuple[int, int, int], tuple[float, float]] = {}


def ks_w1_sorted(u: np.ndarray, cur: np.ndarray) -> tuple[float, float, float]:
    """KS statistic, KS p-value (both as scipy's ks_2samp(method="auto")) and the Wasserstein-1 distance (as
    scipy's wasserstein_distance) of a window column against `u`, the reference column sorted in float64.

    One merge of the two sorted samples gives both ECDFs. For windows up to KS_EXACT_MAX rows ks_2samp's p-value
    is its exact one, a function of (n1, n2, h) alone with D = h / lcm(n1, n2): memoised (a server's windows
    keep the same sizes, and D takes few values), the first occurrence of each h asks ks_2samp itself."""
    v = np.sort(np.asarray(cur, dtype=float))
    n1, n2 = len(u), len(v)
    if n2 == 0 or np.isnan(u[-1:]).any() or np.isnan(v[-1:]).any():  # NaN sorts last; scipy's own handling
        ks = ks_2samp(u, v) if n2 else ks_2samp(u, cur)
        return float(ks.statistic), float(ks.pvalue), float(wasserstein_distance(u, cur))
    both = np.concatenate((u, v))
    both.sort(kind="mergesort")
    cu, cv = u.searchsorted(both, "right"), v.searchsorted(both, "right")
    w = float(_vecdot(np.abs(cu[:-1] / n1 - cv[:-1] / n2), np.diff(both)))  # scipy's _cdf_distance, p = 1
    if max(n1, n2) > KS_EXACT_MAX:  # scipy's asymptotic branch uses D as a float: let it compute
        ks = ks_2samp(u, v)
        return float(ks.statistic), float(ks.pvalue), w
    g = math.gcd(n1, n2)
    lcm = n1 // g * n2
    diff = cu * (lcm // n1) - cv * (lcm // n2)   # lcm * (F_ref - F_cur) at every point, in integers
    key = (n1, n2, int(max(diff.max(), -diff.min(), 0)))
    hit = _KS_MEMO.get(key)
    if hit is None:
        ks = ks_2samp(u, v)
        hit = float(ks.statistic), float(ks.pvalue)
        if len(_KS_MEMO) >= 1 << 16:
            _KS_MEMO.clear()
        _KS_MEMO[key] = hit
    return hit[0], hit[1], w


def rbf_mmd_test(x: np.ndarray, y: np.ndarray, n_perm: int = 500, seed: int = 0) -> dict:
    """MMD^2 (unbiased) between x (reference) and y (current) with an RBF kernel exp(-d^2 / h), h the median
    squared distance within the reference (median heuristic); and the centroid cosine distance. Both get a
    permutation p-value from the same `n_perm` seeded relabellings of the pooled rows (see MMDDetector)."""
    return MMDDetector(x, n_perm=n_perm, seed=seed).test(y)


# ------------------------------------------------------------------------------------------- test rows
def p_test(signal: str, statistic: str, p: float, gate: bool, feature: str | None = None, **extra) -> dict:
    """A significance test; its verdict comes later, from its p-value Holm-adjusted within its signal, and
    only when its effect gate passes."""
    return {"signal": signal, "statistic": statistic, "feature": feature, "p_raw": float(p), "gate": bool(gate),
            "warn": ALPHA_WARN, "alert": ALPHA_ALERT, "worse": "below", **extra}


def psi_test(signal: str, value: float, feature: str | None = None) -> dict:
    verdict = "alert" if value >= PSI_ALERT else "warn" if value >= PSI_WARN else "ok"
    return {"signal": signal, "statistic": "psi", "feature": feature, "value": value, "warn": PSI_WARN,
            "alert": PSI_ALERT, "worse": "above", "verdict": verdict}


def numeric_tests(signal: str, ref: np.ndarray, cur: np.ndarray, names: list[str]) -> list[dict]:
    """KS (gated by the Wasserstein distance in reference SDs) and PSI for each column."""
    return NumericDetector(signal, ref, names).tests(cur)


def class_tests(ref: np.ndarray, cur: np.ndarray, n_classes: int | None) -> list[dict]:
    """Predicted-class mix: chi-square on the 2 x K contingency table (the reference is a sample too), gated
    by the Jensen-Shannon distance between the two class distributions."""
    return ClassDetector(ref, n_classes).tests(cur)


def alarm_tests(ref: np.ndarray, cur: np.ndarray, threshold: float, higher: bool) -> list[dict]:
    """The rate of scores past the anomaly threshold: one-sided Fisher exact test (more alarms than in the
    reference), gated by the rate at least doubling."""
    return AlarmDetector(ref, threshold, higher).tests(cur)


def embedding_tests(ref: np.ndarray, cur: np.ndarray, n_perm: int, seed: int) -> list[dict]:
    return MMDDetector(ref, n_perm=n_perm, seed=seed).tests(cur)


def worst(verdicts) -> str:
    return max(verdicts, key=LEVELS.__getitem__, default="ok")


def verdicts(tests: list[dict]) -> dict:
    """Holm within each signal, each test's verdict, each signal's and the overall one (the worst)."""
    signals = {}
    for signal in dict.fromkeys(t["signal"] for t in tests):
        group = [t for t in tests if t["signal"] == signal and "p_raw" in t]
        for t, p in zip(group, holm([t["p_raw"] for t in group])):  # family-wise control within the signal
            t["value"] = float(p)
            t["verdict"] = "ok" if not t["gate"] else "alert" if p < ALPHA_ALERT else "warn" if p < ALPHA_WARN else "ok"
        signals[signal] = worst(t["verdict"] for t in tests if t["signal"] == signal)
    return {"tests": tests, "signals": signals, "verdict": worst(signals.values())}


def compare(ref: dict, cur: dict, kind: str, feature_names: list[str], *, n_classes: int | None = None,
            threshold: float | None = None, higher_is_anomalous: bool = True, n_perm: int = 500,
            mmd_rows: int = 300, seed: int = 0) -> dict:
    """Every test of `cur` against `ref` (dicts of features (n, F), predictions (n,), embeddings (n, D) or
    None): {"tests": [...], "signals": {signal: verdict}, "verdict": the worst}. Pure: the calibration calls
    it per window; it builds the Detector (the reference's share) and scores `cur`, the code path of the
    monitor. To score many windows against one reference, build the Detector once."""
    return Detector(ref, kind, feature_names, n_classes=n_classes, threshold=threshold,
                    higher_is_anomalous=higher_is_anomalous, n_perm=n_perm, mmd_rows=mmd_rows, seed=seed).score(cur)


# ------------------------------------------------------------------------------------------- detectors
class NumericDetector:
    """KS (gated by the Wasserstein distance in reference SDs) and PSI per column of `ref` (n, F). Built once:
    the sorted columns, their SDs, the PSI bin edges and reference proportions."""

    def __init__(self, signal: str, ref: np.ndarray, names: list[str]):
        ref = np.asarray(ref)
        self.signal, self.names = signal, list(names)
        self.sorted = [np.sort(np.asarray(ref[:, j], dtype=float)) for j in range(len(self.names))]
        self.sd = [float(np.std(ref[:, j])) for j in range(len(self.names))]
        self.psi_ref = [psi_reference(ref[:, j]) for j in range(len(self.names))]

    def tests(self, cur: np.ndarray) -> list[dict]:
        cur = np.asarray(cur)
        tests = []
        for j, name in enumerate(self.names):
            d, p, w = ks_w1_sorted(self.sorted[j], cur[:, j])
            eff = effect_sd(w, self.sd[j])
            tests.append(p_test(self.signal, "ks", p, eff >= MIN_EFFECT_SD, name, ks_d=d, wasserstein_sd=eff,
                                min_effect_sd=MIN_EFFECT_SD))
            tests.append(psi_test(self.signal, psi_score(*self.psi_ref[j], cur[:, j]), name))
        return tests


class ClassDetector:
    """Predicted-class mix against the reference's class counts (chi-square gated by the JS distance)."""

    def __init__(self, ref: np.ndarray, n_classes: int | None):
        ref = np.asarray(ref)
        self.n_classes = n_classes
        self.ref_max = ref.max() if n_classes is None else None
        self.ref_counts = np.bincount(ref.astype(int))

    def tests(self, cur: np.ndarray) -> list[dict]:
        cur = np.asarray(cur)
        k = int(max(self.ref_max, cur.max()) + 1) if self.n_classes is None else self.n_classes
        ref_counts = self.ref_counts
        if len(ref_counts) < k:
            ref_counts = np.concatenate([ref_counts, np.zeros(k - len(ref_counts), ref_counts.dtype)])
        counts = np.stack([ref_counts, np.bincount(cur.astype(int), minlength=k)])
        js = float(jensenshannon(counts[0] / counts[0].sum(), counts[1] / counts[1].sum(), base=2))
        # classes expected fewer than 5 times in either row are pooled into one cell (chi-square's approximation)
        expected = counts.sum(0) * counts.sum(1, keepdims=True) / counts.sum()
        rare = (expected < 5).any(0)
        counts = np.concatenate([counts[:, ~rare], counts[:, rare].sum(1, keepdims=True)], 1)
        counts = counts[:, counts.sum(0) > 0]
        p = chi2_pvalue(counts) if counts.shape[1] > 1 else 1.0
        return [p_test("prediction", "chi2", p, js >= MIN_JS, js_distance=js, min_js=MIN_JS,
                       classes_seen=int(counts.shape[1]))]


class AlarmDetector:
    """The alarm rate (scores past `threshold`) against the reference's alarm count: one-sided Fisher exact test,
    gated by the rate at least doubling. `signal` / `statistic` name its row (an anomaly detector's prediction;
    OODDetector's out-of-domain rows)."""

    def __init__(self, ref: np.ndarray, threshold: float, higher: bool, signal: str = "prediction",
                 statistic: str = "alarm_rate"):
        ref = np.asarray(ref)
        self.threshold, self.higher, self.signal, self.statistic = threshold, higher, signal, statistic
        self.alarms, self.rows = int(np.sum(ref > threshold if higher else ref < threshold)), len(ref)

    def tests(self, cur: np.ndarray) -> list[dict]:
        cur = np.asarray(cur)
        a_cur = int(np.sum(cur > self.threshold if self.higher else cur < self.threshold))
        r_ref, r_cur = self.alarms / self.rows, a_cur / len(cur)
        p = fisher_exact([[a_cur, len(cur) - a_cur], [self.alarms, self.rows - self.alarms]],
                         alternative="greater").pvalue
        return [p_test(self.signal, self.statistic, p, r_cur >= MIN_ALARM_RATIO * r_ref, rate=r_cur,
                       reference_rate=r_ref, threshold=self.threshold)]


class OODDetector:
    """Out-of-domain rows (issue #33): a rare share of rows from another domain barely moves a window's feature
    distributions, class mix or MMD, but each such row is unusual on its own. A predictor that can score that
    gives each row an `ood_score` feature (p06's section classifier: normalised predictive entropy + the share
    of out-of-vocabulary words); here its threshold is the reference's `quantile` (the 99th percentile, as p07
    sets its anomaly threshold: from the reference, never from live rows), and the window's rate of rows past
    it is tested like an anomaly detector's alarms (AlarmDetector: one-sided Fisher exact test against the
    reference's rate, gated by the rate at least doubling), as the signal "ood". Built once from the
    reference's column; a window costs one comparison per row."""

    def __init__(self, ref_scores: np.ndarray, column: int, quantile: float = OOD_QUANTILE):
        ref_scores = np.asarray(ref_scores, np.float64)
        self.column, self.quantile = column, quantile
        self.threshold = float(np.quantile(ref_scores, quantile))
        self.alarms = AlarmDetector(ref_scores, self.threshold, True, signal="ood", statistic="alarm_rate")

    def tests(self, cur_features: np.ndarray) -> list[dict]:
        t = self.alarms.tests(np.asarray(cur_features)[:, self.column].astype(np.float64))
        t[0].update(feature=OOD_FEATURE, quantile=self.quantile)
        return t


@dataclass
class _Window:
    """One window's side of an MMDDetector test: its rows in float64 (a scratch buffer) and float32, their squared
    norms and sum, the pooled rows' sum, gram (n + m, m): the Gram blocks [x y^T; y y^T], and kc (n + m, m): the
    kernel's new columns [Kxy; Kyy] (filled by _kernel)."""
    y: np.ndarray
    y32: np.ndarray
    sqy: np.ndarray
    y_sum: np.ndarray
    tot: np.ndarray
    gram: np.ndarray
    kc: np.ndarray

    @property
    def m(self) -> int:
        return len(self.y)

    @property
    def d(self) -> int:
        return self.y.shape[1]


def _centroid_cosine(e: np.ndarray, tot: np.ndarray, n: int, m: int) -> np.ndarray:
    """The centroid cosine distance from the x sides' sums e (k, D), as the pooled code had it."""
    cx, cy = e / n, (tot[None] - e) / m
    return 1 - (cx * cy).sum(1) / (np.linalg.norm(cx, axis=1) * np.linalg.norm(cy, axis=1) + 1e-12)


def _cosine_from_sums(ee: np.ndarray, et: np.ndarray, tt: float, n: int, m: int) -> np.ndarray:
    """The centroid cosine distance from e.e and e.tot (e the x side's sum, tt = tot.tot)."""
    ny2 = np.maximum(tt - 2 * et + ee, 0.0)
    return 1 - (et - ee) / (n * m) / (np.sqrt(ee) / n * np.sqrt(ny2) / m + 1e-12)


def _mmd_weights(n: int, m: int) -> tuple[float, float, float]:
    """The unbiased MMD^2's weights of the x-x, y-y and x-y kernel sums."""
    return 1 / (n * (n - 1)), 1 / (m * (m - 1)), 2 / (n * m)


def _mmd2(q: np.ndarray, ra: np.ndarray, total: float, n: int, m: int) -> np.ndarray:
    """Unbiased MMD^2 from sxx = a^T K a (q), r^T a (ra) and the kernel's total: sxy = (1 - a)^T K a, syy the rest."""
    cn, cm, cnm = _mmd_weights(n, m)
    sxy = ra - q
    return q * cn + (total - q - 2 * sxy) * cm - sxy * cnm


def _perm_p(s: np.ndarray, n_perm: int) -> float:
    """The permutation p-value of the observed statistic s[0] against the relabellings' s[1:]."""
    return float((1 + np.sum(s[1:] >= s[0])) / (1 + n_perm))


class MMDDetector:
    """MMD^2 (unbiased, RBF kernel exp(-d^2 / h), h the median squared distance within the reference) and the
    centroid cosine distance of a window against the reference `x`, each with a permutation p-value from the
    same `n_perm` seeded relabellings of the pooled rows. `max_rows`: both sides subsampled to at most that
    many rows (the test is O(N^2 P)), the reference once here, the window per test, from the seeded stream that
    compare() always used (reference first, then the window).

    With a the (N,) membership of the x side in one relabelling and K = [[Kxx, Kxy], [Kyx, Kyy]] the pooled
    kernel, every kernel sum is a^T K a or r^T a (r = K's row sums), and a^T K a = ax^T Kxx ax + 2 ax^T Kxy ay +
    ay^T Kyy ay. The relabellings depend only on (n, m, n_perm, seed): for a window size m (plan()) they are drawn
    once, with ax^T Kxx ax, Kxx's share of r^T a and the x rows' share of each relabelling's centroid. Per window:
    the kernel's new columns [Kxy; Kyy] (N x m) and their products with the window side of the relabellings.

    Precision: those products run in float32 (half the time of float64). Their terms are non-negative, so the
    error of each relabelling's sum has a bound (k u of the sum, k its non-zero terms, u = 2^-24); a relabelling
    whose statistic lies within that bound of the observed one is recomputed in float64. The observed statistic
    itself is float64 throughout. So every p-value is what the float64 computation gives (the pooled code of
    before), and the statistics agree with it to float64 rounding. The centroid sums likewise, in float32 with a
    bound: for D <= GRAM_D from y^T ay, else from the Gram blocks x y^T, y y^T that the distances need anyway
    (D-free; the bound from Cauchy-Schwarz, the relabellings within it refined in float64 from the same blocks)."""

    PLANS = 2      # window sizes kept (the window fills up through a few sizes, then stays at max_rows)
    GRAM_D = 900   # above this embedding width the centroid sums come from the Gram blocks

    def __init__(self, x: np.ndarray, *, n_perm: int = 500, seed: int = 0, max_rows: int | None = None):
        x = np.asarray(x)
        rng = np.random.default_rng(seed)
        if max_rows is not None and len(x) > max_rows:
            x = x[np.sort(rng.choice(len(x), max_rows, replace=False))]
        self._pick_state = rng.bit_generator.state  # where the window's subsample continues the stream
        self.n_perm, self.seed, self.max_rows = n_perm, seed, max_rows
        self.x = x.astype(np.float64)
        self.n = n = len(self.x)
        self._plans: collections.OrderedDict = collections.OrderedDict()
        self._picks: dict[int, np.ndarray] = {}  # window length -> the rows pick() keeps
        self._scratch: dict[tuple[str, str], np.ndarray] = {}
        self._lock, self._run_lock = threading.Lock(), threading.Lock()
        self.bandwidth = 1.0
        if n < 2:
            return  # test() says why
        self.sq = (self.x * self.x).sum(1)
        d2 = np.maximum(self.sq[:, None] + self.sq[None, :] - 2 * self.x @ self.x.T, 0.0)
        h = float(np.median(d2[np.triu_indices(n, 1)]))
        self.bandwidth = h if h > 0 else 1.0
        self.kxx = np.exp(-d2 / self.bandwidth)
        np.fill_diagonal(self.kxx, 0.0)  # unbiased: no i == j terms
        self.kxx_rows, self.kxx_sum = self.kxx.sum(1), float(self.kxx.sum())
        self.x_sum = self.x.sum(0)

    def pick(self, y: np.ndarray) -> np.ndarray:
        """The window's subsample (at most max_rows rows, from the same seeded stream as before: the rows it
        picks depend only on the window's length, so they are drawn once per length)."""
        if self.max_rows is None or len(y) <= self.max_rows:
            return y
        idx = self._picks.get(len(y))
        if idx is None:
            rng = np.random.Generator(np.random.PCG64())
            rng.bit_generator.state = self._pick_state
            idx = self._picks[len(y)] = np.sort(rng.choice(len(y), self.max_rows, replace=False))
        return y[idx]

    def plan(self, m: int) -> dict:
        """The relabellings for a window of m rows (after pick) and their reference-only sums (cached)."""
        with self._lock:
            if m in self._plans:
                self._plans.move_to_end(m)
                return self._plans[m]
            n, big_p = self.n, self.n_perm
            rng = np.random.default_rng(self.seed)
            member = np.zeros((n + m, big_p + 1))
            member[:n, 0] = 1  # column 0: the observed split
            for j in range(1, big_p + 1):
                member[rng.permutation(n + m)[:n], j] = 1
            zx, zy = member[:n], member[n:]
            ex = zx.T @ self.x                                          # the x rows' share of each x-side sum
            plan = {"zx": zx.astype(bool), "zy": zy.astype(bool), "zy32": zy.astype(np.float32),  # (rows, P + 1)
                    # the window side again in Fortran order, the layout of the triangular products' operand and
                    # result: the per-window copies and element-wise sums then run along memory (~4x faster)
                    "zyF": np.asfortranarray(zy, dtype=bool),
                    "ky": zy.sum(0),                                    # window rows on the x side
                    "qxx": np.einsum("ip,ip->p", zx, self.kxx @ zx),   # ax^T Kxx ax
                    "rxx": self.kxx_rows @ zx,                          # (Kxx 1)^T ax
                    "exx": np.einsum("pd,pd->p", ex, ex),               # ax^T (x x^T) ax
                    "ex_sum": ex @ self.x_sum,
                    "sx": zx.T @ np.sqrt(self.sq)}                     # ax^T |x|: the Gram sums' error bound
            if self.x.shape[1] <= self.GRAM_D:  # (P + 1, D): wide rows get their few rows when needed
                plan["ex"] = ex
            self._plans[m] = plan
            while len(self._plans) > self.PLANS:
                self._plans.popitem(last=False)
            return plan

    def _buf(self, name: str, shape: tuple, dtype=np.float64, order: str = "C") -> np.ndarray:
        """A scratch array kept between windows (fresh large temporaries cost page faults: ~1/5 of the time)."""
        size, dtype = math.prod(shape), np.dtype(dtype)
        flat = self._scratch.get((name, dtype.str))
        if flat is None or flat.size < size:
            flat = self._scratch[name, dtype.str] = np.empty(size, dtype)
        return flat[:size].reshape(shape, order=order)

    def test(self, y: np.ndarray) -> dict:
        """{mmd2, mmd_p, cosine, cosine_p, bandwidth, rows, refined} of the window `y` (subsampled by pick());
        `refined`: the relabellings recomputed in float64 (MMD, cosine). One window at a time (scratch arrays)."""
        with self._run_lock:
            return self._test(np.asarray(y))

    def _test(self, y: np.ndarray) -> dict:
        y = self.pick(y)
        n, m = self.n, len(y)
        if min(n, m) < 2:
            raise ValueError(f"the MMD test needs at least 2 rows a side, got {n} and {m}")
        pl = self.plan(m)
        w = self._window(y)
        self._kernel(w)
        cross, inner, prod, gram_terms = self._float32_products(w, pl)
        if gram_terms is None:  # narrow rows: the centroid sums from y^T ay
            cos, near_cos = self._cosines(w, pl, *self._float32_centroid_sums(w, pl, prod))
        else:                   # wide rows: from the Gram blocks, the candidates again in float64
            cos, near_cos = self._cosines(w, pl, *self._gram_centroid_sums(w, pl, *gram_terms),
                                          refine=lambda cols: self._gram_ee(w, pl, cols))
        mmd2, near = self._mmds(w, pl, cross, inner)
        return {"mmd2": float(mmd2[0]), "mmd_p": _perm_p(mmd2, self.n_perm), "cosine": float(cos[0]),
                "cosine_p": _perm_p(cos, self.n_perm), "bandwidth": self.bandwidth, "rows": [n, m],
                "refined": [int(len(near)), int(len(near_cos))]}

    def _window(self, y: np.ndarray) -> _Window:
        """The window's rows in float64 (a scratch copy) and float32, and the Gram blocks [x y^T; y y^T] in kc."""
        n, (m, d) = self.n, y.shape
        y32 = np.asarray(y, np.float32)
        y, given = self._buf("y", (m, d)), y
        y[...] = given  # float64, from the rows as given
        sqy = np.multiply(y, y, out=self._buf("yy", (m, d))).sum(1)
        if d <= 512:  # a contiguous y^T makes the narrow product faster; for wide rows the copy costs more
            yt = self._buf("yt", (d, m))
            yt[...] = y.T
        else:
            yt = y.T
        gram = self._buf("gram", (n + m, m))  # the Gram blocks [x y^T; y y^T]
        np.matmul(self.x, yt, out=gram[:n])
        np.matmul(y, y.T, out=gram[n:])  # y y^T: exactly symmetric
        y_sum = y.sum(0)
        return _Window(y=y, y32=y32, sqy=sqy, y_sum=y_sum, tot=self.x_sum + y_sum, gram=gram,
                       kc=self._buf("kc", (n + m, m)))

    def _ex(self, pl: dict, cols) -> np.ndarray:
        """The x rows' share of the x-side sums of these relabellings."""
        return pl["ex"][cols] if "ex" in pl else pl["zx"][:, cols].T @ self.x

    def _gram_centroid_sums(self, w: _Window, pl: dict, xg: np.ndarray, upper: np.ndarray) -> tuple[np.ndarray, ...]:
        """e.e and e.tot per relabelling (e its x side's sum) from the Gram blocks: e.e = ax^T Gxx ax +
        2 ax^T Gxy ay + ay^T Gyy ay, the last two from the float32 products (xg = ax^T Gxy ay, upper = ay^T
        triu(Gyy) ay); and the slack of the cosine that their rounding allows. Each float32 sum has at most ky
        non-zero terms, so its error is below (ky + 2) u times the sum of their absolute values, and
        |g_ij| <= |x_i| |y_j| (Cauchy-Schwarz) bounds that sum by Sx Sy (Sx = ax^T |x|, Sy = ay^T |y|)."""
        n, zy, f64 = self.n, pl["zyF"], np.float64
        gyy = w.gram[n:]
        ee = pl["exx"] + 2 * xg + 2 * upper - np.einsum("i,ip->p", np.diag(gyy), zy, dtype=f64)
        et = pl["ex_sum"] + np.einsum("ip,i->p", pl["zx"], self.x @ w.y_sum, dtype=f64) \
            + np.einsum("ip,i->p", zy, w.y @ w.tot, dtype=f64)
        sy = np.einsum("ip,i->p", zy, np.sqrt(w.sqy), dtype=f64)
        size = 2 * pl["sx"] * sy + 2 * sy * sy
        err = 1.1 * (pl["ky"] + 2) * 2.0 ** -24 * size + 1e-12 * (pl["exx"] + size)
        tt = float(w.tot @ w.tot)
        cos = _cosine_from_sums(ee, et, tt, n, w.m)
        # the cosine moves by at most twice its change at either end of [ee - err, ee + err] (first order; the
        # 1e-9 covers the second); no bound where err reaches half of |e|^2 or of the other side's |.|^2
        slack = 2 * np.maximum(np.abs(_cosine_from_sums(ee + err, et, tt, n, w.m) - cos),
                               np.abs(_cosine_from_sums(np.maximum(ee - err, 0.0), et, tt, n, w.m) - cos)) + 1e-9
        slack[(err >= ee / 2) | (err >= np.maximum(tt - 2 * et + ee, 0.0) / 2)] = np.inf
        return ee, et, slack

    def _gram_ee(self, w: _Window, pl: dict, cols: np.ndarray) -> np.ndarray:
        """e.e of these relabellings in float64 from the Gram blocks (only rounding left)."""
        n, f64 = self.n, np.float64
        zb = pl["zy"][:, cols].astype(f64)
        gz = w.gram[:n] @ zb
        return pl["exx"][cols] + 2 * np.einsum("ip,ip->p", pl["zx"][:, cols], gz, dtype=f64) \
            + np.einsum("ip,ip->p", zb, w.gram[n:] @ zb, dtype=f64)

    def _kernel(self, w: _Window) -> None:
        """The pooled kernel's new columns [Kxy; Kyy] from the Gram blocks, into kc: exp(-max(sq_i + sq_j -
        2 z_i.z_j, 0) / h) with the pooled code's arithmetic, a block of rows at a time."""
        n, m, kc = self.n, w.m, w.kc
        sq_all, part = np.concatenate([self.sq, w.sqy]), self._buf("part", (128, m))
        for lo in range(0, n + m, 128):
            rows = np.multiply(w.gram[lo:lo + 128], 2, out=kc[lo:lo + 128])
            np.subtract(np.add.outer(sq_all[lo:lo + 128], w.sqy, out=part[:len(rows)]), rows, out=rows)
        np.maximum(kc, 0.0, out=kc)
        np.divide(kc, -self.bandwidth, out=kc)  # = -(kc / h), exactly
        np.exp(kc, out=kc)
        kc[n + np.arange(m), np.arange(m)] = 0.0  # unbiased: no i == j terms

    def _float32_products(self, w: _Window, pl: dict) -> tuple:
        """The float32 products with the window side of the relabellings, in one matrix product and triangular
        ones: ax^T Kxy ay (cross), ay^T Kyy ay / 2 (inner: Kyy is symmetric with a zero diagonal), prod =
        [Kxy; y^T] ay (y^T ay: the centroid sums of narrow rows) and, for wide rows (above GRAM_D), the Gram
        blocks' share of the centroid sums instead: (ax^T Gxy ay, ay^T triu(Gyy) ay); None for narrow rows."""
        n, m, d, cols, f64 = self.n, w.m, w.d, self.n_perm + 1, np.float64
        gram = "ex" not in pl
        lhs = self._buf("lhs", (n + (n if gram else d), m), np.float32)
        lhs[:n] = w.kc[:n]
        lhs[n:] = w.gram[:n] if gram else w.y32.T
        prod = np.matmul(lhs, pl["zy32"], out=self._buf("prod", (len(lhs), cols), np.float32))
        cross = np.einsum("ip,ip->p", pl["zx"], prod[:n], dtype=f64)
        inner, upper = (self._upper32(w.kc[n:], pl, "k"), self._upper32(w.gram[n:], pl, "g") if gram else None)
        gram_terms = (np.einsum("ip,ip->p", pl["zx"], prod[n:], dtype=f64), upper) if gram else None
        return cross, inner, prod, gram_terms

    def _upper32(self, block: np.ndarray, pl: dict, tag: str) -> np.ndarray:
        """ay^T triu(block) ay per relabelling, by a float32 triangular product (block: m x m, symmetric)."""
        m, cols = len(block), self.n_perm + 1
        b32 = self._buf(f"{tag}yy32", (m, m), np.float32)
        b32[...] = block
        zb32 = self._buf("zb32", (m, cols), np.float32, order="F")
        zb32[...] = pl["zyF"]
        return np.einsum("ip,ip->p", pl["zyF"], strmm(1.0, b32.T, zb32, lower=0, overwrite_b=1), dtype=np.float64)

    def _float32_centroid_sums(self, w: _Window, pl: dict, prod: np.ndarray) -> tuple[np.ndarray, ...]:
        """e.e and e.tot per relabelling from the float32 y^T ay, and the slack of the cosine that their rounding
        allows (inf where the bound says nothing)."""
        n, d, tot = self.n, w.d, w.tot
        e = np.add(pl["ex"], prod[n:].T, out=self._buf("e", (self.n_perm + 1, d)))
        ee, et = np.einsum("pd,pd->p", e, e), e @ tot
        # float32 sums of ky products (exact for float32 rows, else rounded once): |error| <= (ky + 1) u
        # sum_j |y_j| (per coordinate); the cosine of two vectors moves by at most 2 |du| / |u| + 2 |dv| / |v|
        err = 1.1 * (pl["ky"] + 2) * 2.0 ** -24 * np.linalg.norm(np.abs(w.y).sum(0))
        nx, ny = np.sqrt(ee), np.sqrt(np.maximum(tot @ tot - 2 * et + ee, 0.0))
        slack = 2 * err * (1 / np.maximum(nx, 1e-300) + 1 / np.maximum(ny, 1e-300)) + 1e-9
        slack[(err >= nx / 2) | (err >= ny / 2)] = np.inf
        return ee, et, slack

    def _cosines(self, w: _Window, pl: dict, ee: np.ndarray, et: np.ndarray, slack: np.ndarray,
                 refine=None) -> tuple:
        """The centroid cosine distance of every relabelling from its sums; the observed one, and those within
        `slack` of it, as the pooled code had them (float64). `refine(cols)`: e.e of those in float64, then only
        the ones within rounding (1e-9) of the observed go on. Returns them and the recomputed relabellings."""
        n, m, tot = self.n, w.m, w.tot
        tt = float(tot @ tot)
        cos = _cosine_from_sums(ee, et, tt, n, m)
        cos[0] = float(_centroid_cosine(self._ex(pl, slice(0, 1)), tot, n, m)[0])  # the observed split
        near = np.flatnonzero(np.abs(cos - cos[0]) <= slack)
        near = near[near > 0]
        if refine is not None and len(near):
            cos[near] = _cosine_from_sums(refine(near), et[near], tt, n, m)
            near = near[np.abs(cos[near] - cos[0]) <= 1e-9]
        if len(near):  # recomputed as the pooled code did, in float64
            cos[near] = _centroid_cosine(self._ex(pl, near) + pl["zy"][:, near].T @ w.y, tot, n, m)
        return cos, near

    def _mmds(self, w: _Window, pl: dict, cross: np.ndarray, inner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """MMD^2 of every relabelling; those within the float32 error bound of the observed one (column 0, float64
        throughout: its ay = 0) recomputed in float64. Returns them and the recomputed relabellings."""
        n, m, kc, f64 = self.n, w.m, w.kc, np.float64
        zx, zy = pl["zx"], pl["zy"]
        kxy, kyy = kc[:n], kc[n:]
        rows_xy, cols_xy, rows_yy = kxy.sum(1), kxy.sum(0), kyy.sum(1)
        total = self.kxx_sum + 2 * float(rows_xy.sum()) + float(rows_yy.sum())
        ra = pl["rxx"] + np.einsum("i,ip->p", rows_xy, zx, dtype=f64) \
            + np.einsum("i,ip->p", cols_xy + rows_yy, zy, dtype=f64)  # r^T a per relabelling
        new = 2 * (cross + inner)
        mmd2 = _mmd2(pl["qxx"] + new, ra, total, n, m)
        # each float32 entry sums at most ky non-negative terms rounded once from float64: relative error below
        # (ky + 1) u, with slack for the second-order terms; the float64 rest adds ~1e-16
        cn, cm, cnm = _mmd_weights(n, m)
        bound = (cn + cm + cnm) * new * (1.1 * (pl["ky"] + 2) * 2.0 ** -24) + 1e-12 * (abs(mmd2[0]) + cn * pl["qxx"])
        near = np.flatnonzero(np.abs(mmd2 - mmd2[0]) <= bound)
        near = near[near > 0]
        if len(near):
            kz = kc @ zy[:, near]
            exact = 2 * np.einsum("ip,ip->p", zx[:, near], kz[:n], dtype=f64) \
                + np.einsum("ip,ip->p", zy[:, near], kz[n:], dtype=f64)
            mmd2[near] = _mmd2(pl["qxx"][near] + exact, ra[near], total, n, m)
        return mmd2, near

    def tests(self, cur: np.ndarray) -> list[dict]:
        t = self.test(cur)
        return [p_test("embedding", "mmd", t["mmd_p"], True, mmd2=t["mmd2"], bandwidth=t["bandwidth"],
                       permutations=self.n_perm, rows=t["rows"]),
                p_test("embedding", "centroid_cosine", t["cosine_p"], True, cosine_distance=t["cosine"],
                       permutations=self.n_perm)]


class Detector:
    """Every drift test of one model against its reference (a dict of features (n, F), predictions (n,),
    embeddings (n, D) or None), the reference's share computed here, once; `score(cur)` scores one window:
    {"tests": [...], "signals": {signal: verdict}, "verdict": the worst} (what compare() returns).
    `window_rows`: the monitor's window, to draw the MMD permutations for its full size now rather than on the
    first full window. Thread-safe (score() only reads, its caches are locked)."""

    def __init__(self, reference: dict, kind: str, feature_names: list[str], *, n_classes: int | None = None,
                 threshold: float | None = None, higher_is_anomalous: bool = True, n_perm: int = 500,
                 mmd_rows: int = 300, seed: int = 0, window_rows: int | None = None):
        self.kind, self.feature_names = kind, list(feature_names)
        self.features = NumericDetector("features", reference["features"], self.feature_names)
        self.alarms = None
        if kind == "class":
            self.prediction = ClassDetector(reference["predictions"], n_classes)
        else:
            self.prediction = NumericDetector("prediction", np.asarray(reference["predictions"])[:, None], [kind])
            if kind == "score" and threshold is not None:
                self.alarms = AlarmDetector(reference["predictions"], threshold, higher_is_anomalous)
        emb = reference.get("embeddings")
        self.embedding = None if emb is None else MMDDetector(emb, n_perm=n_perm, seed=seed, max_rows=mmd_rows)
        if self.embedding is not None and window_rows and self.embedding.n >= 2:
            self.embedding.plan(min(window_rows, mmd_rows))
        self.ood = None  # the rate of out-of-domain rows, for predictors with a per-row score
        if OOD_FEATURE in self.feature_names:
            j = self.feature_names.index(OOD_FEATURE)
            self.ood = OODDetector(np.asarray(reference["features"])[:, j], j)

    def score(self, cur: dict) -> dict:
        tests = self.features.tests(cur["features"])
        if self.kind == "class":
            tests += self.prediction.tests(cur["predictions"])
        else:
            tests += self.prediction.tests(np.asarray(cur["predictions"])[:, None])
            if self.alarms is not None:
                tests += self.alarms.tests(cur["predictions"])
        if self.embedding is not None and cur.get("embeddings") is not None:
            tests += self.embedding.tests(cur["embeddings"])
        if self.ood is not None:
            tests += self.ood.tests(cur["features"])
        return verdicts(tests)


# ------------------------------------------------------------------------------------------- the monitor
class DriftMonitor:
    """The last `window` live rows of one model against its reference.

    - `update(batch_output)` only appends (it runs on the serving path: no statistics, no copies of the window);
    - the Detector (the reference's share of every test) is built once, here;
    - `evaluate()` is the one method that computes statistics: a report of the current window, now (thread-safe:
      one computation at a time), kept as `last_report`;
    - `last_report` is the latest computed report, None before the first evaluation; `latest()` is the same, or
      before the first evaluation a placeholder report (verdict None, no tests) built from the counters. Readers
      (/metrics, the dashboard, GET drift) read these and compute nothing.

    Ownership: the lifecycle watcher is the one caller of evaluate() (once per window of fresh rows); everybody
    else reads last_report. `report(force=False)` is kept for the callers not yet moved to that split: it
    evaluates when `every` new rows arrived since the last report (or when forced) and otherwise returns
    last_report. `cached` is last_report's old name."""

    def __init__(self, reference: dict, kind: str, feature_names: list[str], *, window: int = 500,
                 min_rows: int = 200, every: int = 50, n_classes: int | None = None, threshold: float | None = None,
                 higher_is_anomalous: bool = True, n_perm: int = 500, mmd_rows: int = 300, seed: int = 0,
                 name: str = "model", version: str = ""):
        if not 1 <= min_rows <= window:
            raise ValueError(f"need 1 <= min_rows ({min_rows}) <= window ({window})")
        self.ref = {k: None if v is None else np.asarray(v, np.float32) for k, v in reference.items()}
        self.kind, self.feature_names, self.name, self.version = kind, list(feature_names), name, version
        self.window, self.min_rows, self.every = window, min_rows, max(every, 1)
        self.options = dict(n_classes=n_classes, threshold=threshold, higher_is_anomalous=higher_is_anomalous,
                            n_perm=n_perm, mmd_rows=mmd_rows, seed=seed)
        self.detector = Detector(self.ref, kind, self.feature_names, window_rows=window, **self.options)
        self.chunks: collections.deque = collections.deque()  # (features, signal, embeddings) per batch
        self.rows_in_window = self.rows_seen = 0
        self.lock = threading.Lock()          # guards the chunks (update vs snapshot)
        self.compute_lock = threading.Lock()  # one computation at a time; the others wait for its result
        self._last: dict | None = None

    @property
    def last_report(self) -> dict | None:
        """The latest computed report (None before the first evaluation). Computes nothing."""
        return self._last

    @classmethod
    def for_predictor(cls, p, **kw) -> DriftMonitor | None:
        """The monitor for a dlm_core predictor (None if its manifest has no drift section)."""
        section = p.manifest.get("drift")
        if not section:
            return None
        ref = p.bundle.npz(section["file"])
        post = p.manifest.get("postprocess", {})
        extra = {}
        if section["prediction"] == "class" and post.get("labels"):
            extra["n_classes"] = len(post["labels"])
        if section["prediction"] == "score" and "threshold" in post:
            extra = dict(threshold=float(post["threshold"]), higher_is_anomalous=post.get("higher_is_anomalous", True))
        reference = {"features": ref["features"], "predictions": ref["predictions"],
                     "embeddings": ref["embeddings"] if "embeddings" in ref else None}
        if OOD_FEATURE in getattr(p, "feature_names", ()) and OOD_FEATURE not in section["features"]:
            logging.getLogger(__name__).warning(
                "%s/%s: its drift reference has no %s column (exported before the predictor had one): no "
                "out-of-domain test; re-export the bundle to get it", p.name, p.version, OOD_FEATURE)
        return cls(reference, section["prediction"], section["features"], name=p.name, version=p.version,
                   **extra, **kw)

    def update(self, out) -> None:
        """Append one executed batch (a BatchOutput); drop whole chunks that fell out of the window."""
        chunk = (out.features, out.signal, out.embeddings)
        with self.lock:
            self.chunks.append(chunk)
            self.rows_in_window += len(out.signal)
            self.rows_seen += len(out.signal)
            while self.rows_in_window - len(self.chunks[0][1]) >= self.window:
                self.rows_in_window -= len(self.chunks.popleft()[1])

    def current(self) -> tuple[dict, int]:
        """The window's arrays (the last `window` rows) and the rows seen so far."""
        with self.lock:
            chunks, seen = list(self.chunks), self.rows_seen
        if not chunks:
            return {"features": np.zeros((0, len(self.feature_names)), np.float32),
                    "predictions": np.zeros(0, np.float32), "embeddings": None}, seen
        cat = lambda i: np.concatenate([c[i] for c in chunks])[-self.window:].astype(np.float32)  # noqa: E731
        return {"features": cat(0), "predictions": cat(1),
                "embeddings": cat(2) if chunks[0][2] is not None else None}, seen

    def _header(self, seen: int, n: int) -> dict:
        return {"model": self.name, "version": self.version, "rows_seen": seen, "window_rows": n,
                "window": self.window, "min_rows": self.min_rows, "reference_rows": len(self.ref["predictions"]),
                "prediction": self.kind}

    def _evaluate(self) -> dict:  # under compute_lock
        cur, seen = self.current()
        n = len(cur["predictions"])
        out = {**self._header(seen, n), "computed_at": time.time()}
        if n < self.min_rows:
            out.update(verdict=None, signals={}, tests=[],
                       reason=f"{n} rows in the window; a verdict needs at least {self.min_rows}")
        else:
            out.update(self.detector.score(cur))
        self._last = out
        return out

    def evaluate(self) -> dict:
        """Every statistic of the current window with its thresholds and verdict, the window size and rows seen
        (JSON-ready), computed now and kept as last_report. The only method that computes statistics."""
        with self.compute_lock:
            return self._evaluate()

    def latest(self) -> dict:
        """last_report, or before the first evaluation a placeholder (verdict None, no tests, computed_at None)
        from the counters. Computes no statistics."""
        last = self._last
        if last is not None:
            return last
        with self.lock:
            seen, n = self.rows_seen, min(self.rows_in_window, self.window)
        return {**self._header(seen, n), "computed_at": None, "verdict": None, "signals": {}, "tests": [],
                "reason": "no drift report computed yet"}

    def report(self, force: bool = False) -> dict:
        """Backward compatible: evaluate() when forced or when `every` new rows arrived since last_report,
        otherwise last_report (callers waiting on a running computation get its result)."""
        with self.compute_lock:
            last = self._last
            with self.lock:
                seen = self.rows_seen
            if last is not None and not force and seen - last["rows_seen"] < self.every:
                return last
            return self._evaluate()

    def dump(self, folder: str | Path) -> Path:
        """The reference and the current window as one .npz (ref_* and cur_* arrays) for a look offline."""
        cur, seen = self.current()
        arrays = {f"ref_{k}": v for k, v in self.ref.items() if v is not None}
        arrays.update({f"cur_{k}": v for k, v in cur.items() if v is not None})
        arrays["feature_names"] = np.array(self.feature_names)
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"drift-{self.name}-{self.version}-{seen}rows-{time.strftime('%Y%m%d-%H%M%S')}.npz"
        np.savez_compressed(path, **arrays)
        return path
