"""Drift monitoring: a sliding window of live rows per model, compared with the bundle's drift reference
(drift_reference.npz, computed on the validation split by the same predictor code as live traffic).

Three signals, each a handful of tests, each test a row {signal, statistic, feature, value, warn, alert,
worse, verdict}:

    features     per numeric input feature: KS (scipy) with Holm's correction over the features, gated by the
                 Wasserstein distance in reference standard deviations (an alert needs significance AND an
                 effect >= MIN_EFFECT_SD: on large windows KS flags differences too small to matter); PSI by
                 hand (reference decile bins, smoothed; 0.1 warn, 0.25 alert)
    prediction   class: chi-square on the 2 x K table of predicted-class counts, gated by the Jensen-Shannon
                 distance; score / length / top_score: KS (gated) + PSI on the signal; anomaly score with a
                 threshold: the alarm rate, Fisher's exact test against the reference's rate
    embedding    MMD^2 with an RBF kernel (median heuristic from the reference) and a permutation test by
                 hand, plus the centroid cosine distance, tested on the same permutations

The p-values of a signal are Holm-adjusted together (so each signal alone raises a false alert in at most
ALPHA_ALERT of the windows); a test is "warn" below ALPHA_WARN and "alert" below ALPHA_ALERT, and only when
its effect gate passes. PSI is compared with its fixed thresholds. A signal's verdict is its worst row, the
model's verdict the worst signal.
No verdict (and no statistic) while the window holds fewer than `min_rows` rows.
"""

from __future__ import annotations

import collections
import threading
import time
from pathlib import Path

import numpy as np
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, fisher_exact, ks_2samp, wasserstein_distance

ALPHA_WARN, ALPHA_ALERT = 0.05, 0.005  # on p-values Holm-adjusted within each signal (family-wise per signal)
MIN_EFFECT_SD = 0.1     # Wasserstein distance in reference SDs below which a KS "significant" is ignored
PSI_WARN, PSI_ALERT = 0.1, 0.25
PSI_BINS = 10
MIN_JS = 0.05           # Jensen-Shannon distance (base 2) below which a chi-square "significant" is ignored
MIN_ALARM_RATIO = 2.0   # the alarm rate must at least double before its test can warn or alert
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


def psi(ref: np.ndarray, cur: np.ndarray, bins: int = PSI_BINS, smooth: float = 0.5) -> float:
    """Population stability index: sum (q - p) ln(q / p) over the reference's quantile bins (p reference,
    q current proportions; `smooth` pseudo-counts per bin so an empty bin stays finite). Tied quantiles
    (discrete features) merge into one bin."""
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    k = len(edges) + 1
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=k) + smooth
    c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=k) + smooth
    p, q = r / r.sum(), c / c.sum()
    return float(np.sum((q - p) * np.log(q / p)))


def wasserstein_sd(ref: np.ndarray, cur: np.ndarray) -> float:
    """Wasserstein-1 distance in units of the reference's standard deviation (an effect size)."""
    w = wasserstein_distance(ref, cur)
    sd = float(np.std(ref))
    return float(w / sd) if sd > 0 else (0.0 if w == 0 else float("inf"))


def rbf_mmd_test(x: np.ndarray, y: np.ndarray, n_perm: int = 500, seed: int = 0) -> dict:
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
    tests = []
    for j, name in enumerate(names):
        ks, eff = ks_2samp(ref[:, j], cur[:, j]), wasserstein_sd(ref[:, j], cur[:, j])
        tests.append(p_test(signal, "ks", ks.pvalue, eff >= MIN_EFFECT_SD, name, ks_d=float(ks.statistic),
                            wasserstein_sd=eff, min_effect_sd=MIN_EFFECT_SD))
        tests.append(psi_test(signal, psi(ref[:, j], cur[:, j]), name))
    return tests


def class_tests(ref: np.ndarray, cur: np.ndarray, n_classes: int | None) -> list[dict]:
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
    return [p_test("prediction", "chi2", p, js >= MIN_JS, js_distance=js, min_js=MIN_JS,
                   classes_seen=int(counts.shape[1]))]


def alarm_tests(ref: np.ndarray, cur: np.ndarray, threshold: float, higher: bool) -> list[dict]:
    """The rate of scores past the anomaly threshold: one-sided Fisher exact test (more alarms than in the
    reference), gated by the rate at least doubling."""
    a_ref = int(np.sum(ref > threshold if higher else ref < threshold))
    a_cur = int(np.sum(cur > threshold if higher else cur < threshold))
    r_ref, r_cur = a_ref / len(ref), a_cur / len(cur)
    p = fisher_exact([[a_cur, len(cur) - a_cur], [a_ref, len(ref) - a_ref]], alternative="greater").pvalue
    return [p_test("prediction", "alarm_rate", p, r_cur >= MIN_ALARM_RATIO * r_ref, rate=r_cur,
                   reference_rate=r_ref, threshold=threshold)]


def embedding_tests(ref: np.ndarray, cur: np.ndarray, n_perm: int, seed: int) -> list[dict]:
    t = rbf_mmd_test(ref, cur, n_perm, seed)
    return [p_test("embedding", "mmd", t["mmd_p"], True, mmd2=t["mmd2"], bandwidth=t["bandwidth"],
                   permutations=n_perm, rows=[len(ref), len(cur)]),
            p_test("embedding", "centroid_cosine", t["cosine_p"], True, cosine_distance=t["cosine"],
                   permutations=n_perm)]


def worst(verdicts) -> str:
    return max(verdicts, key=LEVELS.__getitem__, default="ok")


def compare(ref: dict, cur: dict, kind: str, feature_names: list[str], *, n_classes: int | None = None,
            threshold: float | None = None, higher_is_anomalous: bool = True, n_perm: int = 500,
            mmd_rows: int = 300, seed: int = 0) -> dict:
    """Every test of `cur` against `ref` (dicts of features (n, F), predictions (n,), embeddings (n, D) or
    None): {"tests": [...], "signals": {signal: verdict}, "verdict": the worst}. Pure: what the monitor and
    the calibration script both call."""
    tests = numeric_tests("features", ref["features"], cur["features"], feature_names)
    if kind == "class":
        tests += class_tests(ref["predictions"], cur["predictions"], n_classes)
    else:
        tests += numeric_tests("prediction", ref["predictions"][:, None], cur["predictions"][:, None], [kind])
        if kind == "score" and threshold is not None:
            tests += alarm_tests(ref["predictions"], cur["predictions"], threshold, higher_is_anomalous)
    if ref.get("embeddings") is not None and cur.get("embeddings") is not None:
        rng = np.random.default_rng(seed)  # subsample both sides to at most mmd_rows (the test is O(N^2 P))
        pick = lambda a: a[np.sort(rng.choice(len(a), mmd_rows, replace=False))] if len(a) > mmd_rows else a  # noqa: E731
        tests += embedding_tests(pick(ref["embeddings"]), pick(cur["embeddings"]), n_perm, seed)
    signals = {}
    for signal in dict.fromkeys(t["signal"] for t in tests):
        group = [t for t in tests if t["signal"] == signal and "p_raw" in t]
        for t, p in zip(group, holm([t["p_raw"] for t in group])):  # family-wise control within the signal
            t["value"] = float(p)
            t["verdict"] = "ok" if not t["gate"] else "alert" if p < ALPHA_ALERT else "warn" if p < ALPHA_WARN else "ok"
        signals[signal] = worst(t["verdict"] for t in tests if t["signal"] == signal)
    return {"tests": tests, "signals": signals, "verdict": worst(signals.values())}


# ------------------------------------------------------------------------------------------- the monitor
class DriftMonitor:
    """The last `window` live rows of one model against its reference. `update(batch_output)` only appends
    (it runs on the serving path); `report()` computes the statistics (in a worker thread, not on the event
    loop), at most once per `every` new rows: between those it returns the cached report."""

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
        self.chunks: collections.deque = collections.deque()  # (features, signal, embeddings) per batch
        self.rows_in_window = self.rows_seen = 0
        self.lock = threading.Lock()          # guards the chunks (update vs snapshot)
        self.compute_lock = threading.Lock()  # one computation at a time; the others wait for its cache
        self.cached: dict | None = None

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

    def report(self, force: bool = False) -> dict:
        """Every statistic with its thresholds and verdict, the window size and rows seen (JSON-ready)."""
        with self.compute_lock:
            with self.lock:
                seen = self.rows_seen
            if self.cached is not None and not force and seen - self.cached["rows_seen"] < self.every:
                return self.cached
            cur, seen = self.current()
            n = len(cur["predictions"])
            out = {"model": self.name, "version": self.version, "rows_seen": seen, "window_rows": n,
                   "window": self.window, "min_rows": self.min_rows, "reference_rows": len(self.ref["predictions"]),
                   "prediction": self.kind, "computed_at": time.time()}
            if n < self.min_rows:
                out.update(verdict=None, signals={}, tests=[],
                           reason=f"{n} rows in the window; a verdict needs at least {self.min_rows}")
            else:
                out.update(compare(self.ref, cur, self.kind, self.feature_names, **self.options))
            self.cached = out
            return out

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
