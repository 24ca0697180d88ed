"""The live dashboard: GET /dashboard (one static page, uPlot vendored from the npm registry, no CDN) and
GET /v1/dashboard/data, the series it draws. A sampler task takes one point per model per second, all read from
what is already counted (nothing is computed for the page):

    requests/s and errors/s (non-2xx)   deltas of dlm_requests_total
    p50 / p99 latency, ms                from the deltas of dlm_request_duration_seconds' buckets (interpolated
                                         within a bucket, as Prometheus' histogram_quantile does)
    mean batch size                      rows / executions of the serving version's batcher in that second
    drift                                per signal, the smallest Holm-adjusted p-value (and the worst PSI) of the
                                         latest report the lifecycle watcher computed, beside the alert level
    live accuracy                        on the last labelled rows (feedback), beside the expected accuracy

plus the lifecycle events (alerts, retrains, gates, swaps, rollbacks) drawn as markers. 15 minutes are kept.
"""

from __future__ import annotations

import asyncio
import collections
import time
from pathlib import Path

from .drift import ALPHA_ALERT, PSI_ALERT
from .lifecycle.feedback import CLASSIFIERS

STATIC = Path(__file__).parent / "static"
KEEP_S = 900


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """The q-quantile from cumulative (upper bound, count) pairs, linear within the bucket; None without data."""
    n = buckets[-1][1] if buckets else 0
    if n <= 0:
        return None
    lower, below = 0.0, 0.0
    for bound, cum in buckets:
        if cum >= q * n:
            if bound == float("inf"):
                return lower
            return lower + (bound - lower) * (q * n - below) / max(cum - below, 1e-12)
        lower, below = bound, cum
    return lower


class Timeline:
    def __init__(self, repo, metrics, life, every: float = 1.0):
        self.repo, self.metrics, self.life, self.every = repo, metrics, life, every
        self.points: dict[str, collections.deque] = collections.defaultdict(
            lambda: collections.deque(maxlen=int(KEEP_S / every)))
        self.last: dict[str, tuple] = {}  # model -> (responses, errors, buckets) at the previous point
        self.last_batches: dict[tuple, tuple[int, int]] = {}

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            for d in self.repo.serving():
                self.points[d.name].append(self.point(d, time.time()))

    def point(self, d, now: float) -> dict:
        total, errors, buckets = self.metrics.totals(d.name)
        t0, e0, b0 = self.last.get(d.name, (0.0, 0.0, [(b, 0.0) for b, _ in buckets]))
        self.last[d.name] = (total, errors, buckets)
        delta = [(b, c - c0) for (b, c), (_, c0) in zip(buckets, b0)]
        p50, p99 = quantile(0.5, delta), quantile(0.99, delta)
        point = {"t": now, "version": d.version, "rps": (total - t0) / self.every, "errors": (errors - e0) / self.every,
                 "p50": None if p50 is None else p50 * 1000, "p99": None if p99 is None else p99 * 1000}
        if d.batcher is not None:
            rows, execs = d.batcher.rows_done, d.batcher.executions_done
            r0, x0 = self.last_batches.get((d.name, d.version), (0, 0))
            self.last_batches[d.name, d.version] = (rows, execs)
            point["batch"] = (rows - r0) / (execs - x0) if execs > x0 else None
        report = d.monitor.last_report if d.monitor is not None else None
        if report is not None:
            point["drift_verdict"] = report.get("verdict")
            for t in report.get("tests", []):
                key = f"p_{t['signal']}" if "p_raw" in t else f"psi_{t['signal']}"
                worse = min if "p_raw" in t else max
                point[key] = t["value"] if point.get(key) is None else worse(point[key], t["value"])
        if d.task in CLASSIFIERS:
            point["accuracy"] = self.life.live.get((d.name, d.version))
            point["expected_accuracy"] = self.life.expected_accuracy(d)
        return point

    def data(self, since: float = 0.0) -> dict:
        return {"now": time.time(), "interval_s": self.every, "alert_p": ALPHA_ALERT, "psi_alert": PSI_ALERT,
                "models": {name: [pt for pt in pts if pt["t"] > since] for name, pts in self.points.items()},
                "events": self.life.store.events(since, limit=500)}
