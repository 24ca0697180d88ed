"""The live dashboard: GET /dashboard (one static page, uPlot vendored from the npm registry, no CDN) and
GET /v1/dashboard/data, the series it draws. A sampler task takes one point per model per second:

    requests/s and errors/s (non-2xx)   from the responses the Guard middleware saw in that second
    p50 / p99 latency, ms                of those responses
    mean batch size                      rows / executions of the serving version's batcher in that second
    drift                                per signal, the smallest Holm-adjusted p-value (and the worst PSI) of
                                         the monitor's latest report, beside the alert level
    live accuracy                        on the last labelled rows (feedback), beside the expected accuracy

plus the lifecycle events (alerts, retrains, gates, swaps, rollbacks) drawn as markers. 15 minutes are kept.
"""

from __future__ import annotations

import asyncio
import collections
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from .drift import ALPHA_ALERT, PSI_ALERT

STATIC = Path(__file__).parent / "static"
KEEP_S = 900

# Headless Chromium, as run_fullstack's screenshot and the browser test drive the page: no sandbox (root in CI),
# no network besides the page, a throwaway profile.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--hide-scrollbars", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]


def find_chromium() -> str | None:

    return shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


def run_chromium(url: str, profile: str | Path, *extra: str, budget_ms: int = 5000, timeout: float = 120):
    """Load url in headless Chromium (virtual time budget_ms for the page's scripts); the finished process."""

    exe = find_chromium()
    if exe is None:
        raise FileNotFoundError("chromium is not installed (apt-get install chromium)")
    cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}", *extra, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)


class Timeline:
    def __init__(self, registry, batchers: dict, monitors: dict, life, every: float = 1.0):
        self.registry, self.batchers, self.monitors, self.life, self.every = registry, batchers, monitors, life, every
        self.responses: dict[str, collections.deque] = collections.defaultdict(lambda: collections.deque(maxlen=50_000))
        self.points: dict[str, collections.deque] = collections.defaultdict(
            lambda: collections.deque(maxlen=int(KEEP_S / every)))
        self.last_counts: dict[tuple, tuple[int, int]] = {}
        self.viewed = 0.0  # when the page last asked: drift statistics are computed for it only while it is open

    def response(self, model: str, code: int, seconds: float) -> None:
        """Called for every response to a model route (the Guard middleware)."""
        self.responses[model].append((time.time(), code, seconds))

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.every)
            await self.sample()

    async def sample(self) -> None:
        now = time.time()
        for name in list(self.registry.models):
            p = self.registry.get(name)
            recent = [r for r in self.responses[name] if r[0] > now - self.every]
            lat = np.array([r[2] for r in recent]) * 1000
            point = {"t": now, "version": p.version, "rps": len(recent) / self.every,
                     "errors": sum(not 200 <= r[1] < 300 for r in recent) / self.every,
                     "p50": float(np.percentile(lat, 50)) if len(lat) else None,
                     "p99": float(np.percentile(lat, 99)) if len(lat) else None}
            b = self.batchers.get((p.name, p.version))
            if b is not None:
                prev = self.last_counts.get((p.name, p.version), (0, 0))
                rows, execs = b.rows_done - prev[0], b.executions_done - prev[1]
                self.last_counts[p.name, p.version] = (b.rows_done, b.executions_done)
                point["batch"] = rows / execs if execs else None
            m = self.monitors.get((p.name, p.version))
            if m is not None and (m.cached is not None or now - self.viewed < 30):
                # while the page is open, recomputed when `drift_every` new rows arrived; otherwise whatever the
                # lifecycle watcher or a /metrics scrape computed last (no statistics work nobody looks at)
                report = await asyncio.to_thread(m.report) if now - self.viewed < 30 else m.cached
                point["drift_verdict"] = report.get("verdict")
                for t in report.get("tests", []):
                    key = f"p_{t['signal']}" if "p_raw" in t else f"psi_{t['signal']}"
                    worse = min if "p_raw" in t else max
                    point[key] = t["value"] if point.get(key) is None else worse(point[key], t["value"])
            if self.life is not None and name in self.life.feedback:
                acc, _ = self.life.feedback[name].accuracy(p.version, self.life.policy.accuracy_window)
                point["accuracy"], point["expected_accuracy"] = acc, self.life.expected_accuracy(p)
            self.points[name].append(point)

    def data(self, since: float = 0.0) -> dict:
        self.viewed = time.time()
        return {"now": time.time(), "interval_s": self.every, "alert_p": ALPHA_ALERT, "psi_alert": PSI_ALERT,
                "models": {name: [pt for pt in pts if pt["t"] > since] for name, pts in self.points.items()},
                "events": [e for e in (self.life.events if self.life else []) if e["time"] > since]}
