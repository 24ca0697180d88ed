"""A served model's life after deployment, orchestrated: labelled feedback in, the drift and accuracy windows
judged by the criteria (criteria.py), a retrain through the hook (hook.py), the gate (gate.py), the swap and the
rollback. It is also the one owner of drift statistics: the watcher evaluates each monitor off the event loop
and publishes the report (gauges, `last_report`); /metrics, the dashboard and GET .../drift only read it.

The swap starts the new version's batcher and drift monitor, then flips the default version in one assignment:
requests already routed finish on the old version, new ones go to the new one, nothing is dropped. The old
version keeps running, so `POST /v1/models/{name}/rollback` flips back at once. Every step is an event
(GET /v1/events, and events.jsonl in the hand-off folder): the dashboard's and the report's markers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time

import numpy as np

from dlm_core.errors import DlmError
from dlm_core.predictors import BadInput
from dlm_core.retrain import folders, write_event

from ..config import RetrainPolicy
from ..deployment import Deployment, ModelRepository
from ..metrics import Metrics
from .criteria import Decision, ModelState, Observation, judge
from .feedback import CLASSIFIERS, FeedbackStore, class_indices, training_example
from .gate import Gate
from .hook import Hook

log = logging.getLogger("p10_serving")


class Conflict(Exception):
    """The request is valid but the model's state forbids it now: answer 409."""


@dataclasses.dataclass
class Tracking:
    """The watcher's bookkeeping for one model (beside the criteria's pure state)."""

    criteria: ModelState = dataclasses.field(default_factory=ModelState)
    window_mark: int = 0            # the drift monitor's rows_seen when the last window was judged
    accuracy_mark: int = 0          # labelled rows of the serving version when its accuracy was last judged
    running: str | None = None      # the event id being retrained
    cooldown_until: float = 0.0
    previous: str | None = None     # the version a rollback goes back to
    last_window: dict | None = None  # the drift report of the last judged window
    windows_judged: int = 0         # drift windows judged so far
    stats: dict = dataclasses.field(default_factory=dict)  # the statistics behind the episode


class Lifecycle:
    def __init__(self, repo: ModelRepository, policy: RetrainPolicy, metrics: Metrics):
        self.repo, self.policy, self.metrics = repo, policy, metrics
        self.feedback = {name: FeedbackStore(policy.feedback_rows) for name in repo.models}
        self.track = {name: Tracking() for name in repo.models}
        self.events: list[dict] = []
        self.tasks: set[asyncio.Task] = set()
        self.dirs = folders(policy.dir) if policy.dir else None
        self.hook = Hook(self.dirs, policy.command, policy.timeout_s, policy.poll_s) if self.dirs else None
        self.gate = Gate(policy)
        self.expected: dict[tuple[str, str], float] = {}  # accuracy expected of a swapped-in version

    # ------------------------------------------------------------------------------------------ events
    def event(self, kind: str, model: str, **fields) -> dict:
        e = {"time": time.time(), "kind": kind, "model": model, **fields}
        self.events.append(e)
        self.metrics.lifecycle(model, kind)
        if self.dirs:
            with open(self.dirs["events"].parent / "events.jsonl", "a") as f:
                f.write(json.dumps(e, default=str) + "\n")
        log.warning("%s %s %s", kind, model, {k: v for k, v in fields.items() if k != "statistics"})
        return e

    # ------------------------------------------------------------------------------------------ feedback
    async def add_feedback(self, d: Deployment, items: list, labels: list) -> dict:
        """Label each item, run the serving version on it (off the event loop, not through the batcher: feedback
        is not live traffic and must not enter the drift window) and record whether it was right."""
        p = d.predictor
        ys = class_indices(p, labels)
        rows = p.prepare_all(items)
        out = await asyncio.to_thread(p.run, rows)
        correct = [int(s) == y for s, y in zip(out.signal, ys)]
        store = self.feedback[p.name]
        store.add([training_example(p, r, it) for r, it in zip(rows, items)], ys, correct, p.version)
        acc, n = store.accuracy(p.version, self.policy.accuracy_window)
        self.metrics.feedback(p.name, p.version, len(ys), acc)
        return {"model": p.name, "version": p.version, "accepted": len(ys), "correct": int(sum(correct)),
                "live_accuracy": acc, "live_accuracy_rows": n, "feedback_rows": store.count}

    # ------------------------------------------------------------------------------------------ the watcher
    async def watch(self) -> None:
        while True:
            await self.check_all()
            await asyncio.sleep(self.policy.poll_s)

    async def check_all(self) -> None:
        for name in list(self.repo.models):
            try:
                await self.check(name)
            except Exception:  # noqa: BLE001 - the watcher must survive one model's failure
                log.exception("lifecycle check failed for %s", name)
        for d in list(self.repo):  # a new report after `drift_every` fresh rows, at most every drift_interval_s
            m = d.monitor
            last = (m.last_report or {}) if m is not None else {}
            if m is not None and m.rows_seen > 0 and m.rows_seen - last.get("rows_seen", 0) >= m.every \
                    and time.time() - (last.get("computed_at") or 0) >= d.config.drift_interval_s:
                try:
                    await self.evaluate(d)
                except Exception:  # noqa: BLE001
                    log.exception("drift report failed for %s %s", d.name, d.version)

    async def evaluate(self, d: Deployment) -> dict:
        """A drift report now, in a worker thread; published as the gauges and the monitor's last_report."""
        report = await asyncio.to_thread(d.monitor.evaluate)
        self.metrics.drift(report)
        return report

    async def observe(self, d: Deployment, tr: Tracking) -> Observation:
        """What the criteria need now: a drift window of fresh rows judged, a fresh accuracy window, the feedback."""
        pol, m, store = self.policy, d.monitor, self.feedback[d.name]
        drift_alert = low = None
        last = (m.last_report or {}).get("computed_at") or 0 if m is not None else 0
        if m is not None and m.rows_seen - tr.window_mark >= m.window \
                and time.time() - last >= d.config.drift_interval_s:  # a window of fresh rows: judge it
            report = await self.evaluate(d)
            tr.window_mark, tr.last_window = report["rows_seen"], report
            drift_alert = report["verdict"] == "alert"
            tr.windows_judged += 1
        expected = self.expected_accuracy(d)
        if expected is not None and store.per_version[d.version] - tr.accuracy_mark >= pol.accuracy_window:
            tr.accuracy_mark = store.per_version[d.version]
            acc, _ = store.accuracy(d.version, pol.accuracy_window)
            low = acc < expected - pol.accuracy_drop
        can = bool(pol.dir) and tr.running is None and time.time() >= tr.cooldown_until
        return Observation(drift_alert, low, store.count, can)

    async def check(self, name: str) -> None:
        d, tr = self.repo.get(name), self.track[name]
        if d.task not in CLASSIFIERS:
            return
        decision = judge(tr.criteria, await self.observe(d, tr), self.policy)
        tr.criteria = decision.state
        self.record(d, tr, decision)
        if decision.retrain:
            await self.start_retrain(d, decision.reason, tr.stats, decision.state.onset)

    def record(self, d: Deployment, tr: Tracking, decision: Decision) -> None:
        """The events of a decision, and the statistics behind the criteria met now."""
        st = decision.state
        if decision.new_drift_alert:
            self.event("drift_alert", d.name, version=d.version, rows_seen=tr.last_window["rows_seen"],
                       statistics=alerting(tr.last_window))
        tr.stats = {}
        if st.alert_windows >= self.policy.drift_windows:
            tr.stats["drift"] = {"windows": st.alert_windows, "tests": alerting(tr.last_window)}
        if st.low_windows >= self.policy.accuracy_windows:
            acc, n = self.feedback[d.name].accuracy(d.version, self.policy.accuracy_window)
            tr.stats["accuracy"] = {"live_accuracy": acc, "rows": n, "windows": st.low_windows,
                                    "expected_accuracy": self.expected_accuracy(d), "drop": self.policy.accuracy_drop}
        if decision.new_episode:
            self.event("episode", d.name, version=d.version, reason=decision.reason, statistics=tr.stats)

    def expected_accuracy(self, d: Deployment) -> float | None:
        head, value = d.predictor.headline_metric
        held_out = float(value) if head == "accuracy" else None
        return self.expected.get((d.name, d.version), held_out)

    # ------------------------------------------------------------------------------------------ retraining
    async def start_retrain(self, d: Deployment, reason: str, stats: dict | None, start: int | None = 0) -> dict:
        pol, tr, p = self.policy, self.track[d.name], d.predictor
        if not pol.dir:
            raise Conflict("retraining is off; start the server with --retrain-dir")
        if tr.running:
            raise Conflict(f"a retrain of {d.name} is already running (event {tr.running})")
        if d.task not in CLASSIFIERS:
            raise BadInput(f"retraining takes labelled feedback; {d.name} is a {d.task} model")
        rows = self.feedback[d.name].since(start or 0)[-pol.max_feedback:]
        if len(rows) < pol.min_feedback:
            raise Conflict(f"{len(rows)} labelled rows since the episode began; a retrain needs {pol.min_feedback}")
        every = max(2, round(1 / pol.gate_share))
        gate = [r for i, r in enumerate(rows) if i % every == every - 1]
        train = [r for i, r in enumerate(rows) if i % every != every - 1]
        eid = f"{time.strftime('%Y%m%d-%H%M%S')}-{d.name}"
        x, y = np.stack([r[0] for r in train]), np.array([r[1] for r in train], np.int64)
        path = await asyncio.to_thread(write_event, pol.dir, {
            "id": eid, "model": d.name, "version": d.version, "task": d.task, "bundle": str(p.path.resolve()),
            "sha256": p.sha256, "reason": reason, "statistics": stats,
            "feedback": {"gate_rows": len(gate), "since_row": start or 0}}, x, y)
        tr.running = eid
        self.event("retrain_started", d.name, version=d.version, id=eid, reason=reason, statistics=stats,
                   feedback_rows=len(train), gate_rows=len(gate), old_sha256=p.sha256)
        task = asyncio.get_running_loop().create_task(self.retrain(d, eid, path, gate))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return {"id": eid, "event": str(path)}

    async def retrain(self, old: Deployment, eid: str, event_path, gate_rows: list) -> None:
        tr, t0 = self.track[old.name], time.time()
        try:
            result = await self.hook.run(eid, event_path)
            candidate = await asyncio.to_thread(self.gate.load, old.predictor, result["bundle"],
                                                set(self.repo.models[old.name]))
            checks = await asyncio.to_thread(self.gate.check, old.predictor, candidate, gate_rows)
            if not checks["passed"]:
                self.event("gate_rejected", old.name, id=eid, version=old.version, candidate=candidate.version,
                           gate=checks, seconds=round(time.time() - t0, 1))
            else:
                await self.swap(old, candidate, id=eid, gate=checks, seconds=round(time.time() - t0, 1))
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure is an event, never a crash of the server
            self.event("retrain_failed", old.name, id=eid, version=old.version,
                       error=str(err) if isinstance(err, DlmError) else repr(err))
        finally:
            tr.running = None
            tr.cooldown_until = time.time() + self.policy.cooldown_s

    # ------------------------------------------------------------------------------------------ swap
    async def swap(self, old: Deployment, new, **fields) -> None:
        d = await self.repo.add(new)   # its batcher and drift monitor run before any request can reach it
        gate, held_out = fields.get("gate") or {}, self.expected_accuracy(d)
        if held_out is not None and gate.get("new_feedback_accuracy") is not None:
            self.expected[d.name, d.version] = min(held_out, gate["new_feedback_accuracy"])
        self.repo.set_default(old.name, d.version)  # one assignment: the next lookup gets the new version
        self.reset(old.name, previous=old.version)
        self.event("swap", old.name, old_version=old.version, version=d.version, sha256=new.sha256, **fields)

    async def rollback(self, name: str) -> dict:
        tr = self.track[name]
        if tr.previous is None:
            raise Conflict(f"{name} has no previous version to roll back to")
        current = self.repo.default[name]
        self.repo.set_default(name, tr.previous)
        self.reset(name, previous=current)
        tr.cooldown_until = time.time() + self.policy.cooldown_s
        e = self.event("rollback", name, old_version=current, version=self.repo.default[name])
        return {"model": name, "version": e["version"], "previous": current}

    def reset(self, name: str, previous: str) -> None:
        """A new serving version: its criteria start from its own fresh windows."""
        tr, d = self.track[name], self.repo.get(name)
        tr.previous, tr.criteria = previous, ModelState()
        tr.window_mark = d.monitor.rows_seen if d.monitor else 0
        tr.accuracy_mark = self.feedback[name].per_version[d.version]

    def status(self, name: str) -> dict:
        d, tr = self.repo.get(name), self.track[name]
        st, store = tr.criteria, self.feedback[name]
        acc, n = store.accuracy(d.version, self.policy.accuracy_window)
        return {"model": name, "version": d.version, "versions": sorted(self.repo.models[name]),
                "previous": tr.previous, "drift_windows_judged": tr.windows_judged,
                "alert_windows": st.alert_windows, "low_accuracy_windows": st.low_windows,
                "expected_accuracy": self.expected_accuracy(d), "episode_reason": st.reason,
                "feedback_since_onset": None if st.onset is None else store.count - st.onset,
                "retraining": tr.running, "cooldown_s": max(0.0, round(tr.cooldown_until - time.time(), 1)),
                "live_accuracy": acc, "live_accuracy_rows": n, "held_out": dict([d.predictor.headline_metric]),
                "feedback_rows": store.count, "retrain_enabled": bool(self.policy.dir)}

    async def stop(self) -> None:
        if self.hook:
            self.hook.kill()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def alerting(report: dict | None) -> list[dict]:
    """The tests of a drift report that are in alert (what an event records)."""
    keep = ("signal", "statistic", "feature", "value", "alert", "wasserstein_sd", "js_distance", "mmd2")
    return [{k: t[k] for k in keep if k in t} for t in (report or {}).get("tests", []) if t.get("verdict") == "alert"]
