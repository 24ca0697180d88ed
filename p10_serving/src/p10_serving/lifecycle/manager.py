"""A served model's life after deployment, orchestrated: labelled feedback in, the drift and accuracy windows
judged by the criteria (criteria.py), a retrain through the hook (hook.py), the gate (gate.py), the swap and the
rollback. It is also the one owner of drift statistics: the watcher evaluates each monitor off the event loop
and publishes the report (gauges, `last_report`); /metrics, the dashboard and GET .../drift only read it.

The swap starts the new version's batcher and drift monitor, then flips the default version in one assignment:
requests already routed finish on the old version, new ones go to the new one, nothing is dropped. The old
version keeps running, so `POST /v1/models/{name}/rollback` flips back at once. Every step is an event
(GET /v1/events, and events.jsonl in the hand-off folder): the dashboard's and the report's markers.

All of it is durable (store.py): feedback rows are committed before the 2xx, every event is written as it happens,
and each model's state (serving and previous version, criteria, running retrain, cooldown) is saved on every
change, so `resume()` on a restart carries on where the killed process stopped.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import signal
import socket
import time
from pathlib import Path

import numpy as np

from dlm_core.errors import DlmError
from dlm_core.predictors import BadInput
from dlm_core.retrain import folders, write_event

from ..config import RetrainPolicy
from ..deployment import Deployment, ModelNotFound, ModelRepository
from ..metrics import Metrics
from ..store import DuplicateFeedback, Store
from .criteria import Decision, ModelState, Observation, judge
from .feedback import CLASSIFIERS, class_indices, training_example
from .gate import Gate
from .hook import Hook

log = logging.getLogger("p10_serving")


LEASE = "lifecycle"  # one replica at a time judges the criteria and retrains (store.lease)


class Conflict(Exception):
    """The request is valid but the model's state forbids it now: answer 409."""


class PredictionNotFound(ModelNotFound):
    """Feedback names a prediction id that is not in the log: 404."""


@dataclasses.dataclass
class Tracking:
    """The watcher's bookkeeping for one model (beside the criteria's pure state)."""

    criteria: ModelState = dataclasses.field(default_factory=ModelState)
    window_mark: int = 0            # the drift monitor's rows_seen when the last window was judged
    accuracy_mark: int = 0          # labelled rows of the serving version when its accuracy was last judged
    running: str | None = None      # the event id being retrained
    retrain: dict | None = None     # how to pick it up again after a restart (event path, feedback rows, pid)
    cooldown_until: float = 0.0
    previous: str | None = None     # the version a rollback goes back to
    last_window: dict | None = None  # the drift report of the last judged window
    windows_judged: int = 0         # drift windows judged so far
    request_mark: int = 0           # the last retrain_requested event (from another replica) acted on
    stats: dict = dataclasses.field(default_factory=dict)  # the statistics behind the episode


class Lifecycle:
    def __init__(self, repo: ModelRepository, policy: RetrainPolicy, metrics: Metrics, store: Store,
                 predictions, replica: str | None = None):
        self.repo, self.policy, self.metrics, self.store = repo, policy, metrics, store
        self.predictions = predictions  # the PredictionLog: feedback by prediction id looks answers up there
        self.track = {name: Tracking() for name in repo.models}
        self.tasks: set[asyncio.Task] = set()
        self.dirs = folders(policy.dir) if policy.dir else None
        self.hook = Hook(self.dirs, policy.command, policy.timeout_s, policy.poll_s) if self.dirs else None
        self.gate = Gate(policy)
        self.expected: dict[tuple[str, str], float] = {}  # accuracy expected of a swapped-in version
        self.live: dict[tuple[str, str], float | None] = {}  # the live accuracy after the last feedback (dashboard)
        self.replica = replica or f"{socket.gethostname()}-{os.getpid()}"
        self.leading = False       # holds the lifecycle lease: judges the criteria, runs retrains, swaps
        self.refused: set[tuple[str, str]] = set()  # stored versions that failed to load here (not tried again)
        self.load = None           # how a stored bundle is loaded (registry.load_verified), set by resume()
        self.lock = asyncio.Lock()  # a local swap/rollback and following the store never interleave

    # ------------------------------------------------------------------------------------------ events
    def event(self, kind: str, model: str, **fields) -> dict:
        e = {"time": time.time(), "kind": kind, "model": model, **fields}
        e["seq"] = self.store.add_event(e)
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
        examples = [training_example(p, r, it) for r, it in zip(rows, items)]
        return await self.commit_feedback(p.name, p.version, list(zip(examples, ys, correct, [None] * len(ys))))

    async def add_feedback_by_id(self, d: Deployment, pids: list, labels: list) -> dict:
        """Labels for logged predictions: the answer the model gave then is judged, the model is not run again."""
        ys = class_indices(d.predictor, labels)
        for i, pid in enumerate(pids):
            if not isinstance(pid, str) or not pid:
                raise BadInput(f"prediction_ids[{i}]: a prediction id (a string), got {pid!r}")
        found = await self.predictions.find(pids)
        missing = [p for p in pids if p not in found]
        if missing:
            raise PredictionNotFound(f"prediction {missing[0]} is not in the prediction log (sampled out, older than "
                                     f"the newest it keeps, or unknown): send the input with its label instead")
        other = [p for p in pids if found[p]["model"] != d.name]
        if other:
            raise BadInput(f"prediction {other[0]} was made by model {found[other[0]]['model']!r}, not {d.name!r}")
        by_version: dict[str, list] = {}
        for pid, y in zip(pids, ys):
            f = found[pid]
            by_version.setdefault(f["version"], []).append((f["example"], y, f["signal"] == y, pid))
        answer = {}
        for version, rows in by_version.items():
            answer = await self.commit_feedback(d.name, version, rows)
        return {**answer, "accepted": len(ys), "correct": sum(r[2] for rows in by_version.values() for r in rows)}

    async def commit_feedback(self, name: str, version: str, rows: list[tuple]) -> dict:
        """Commit (example, label, correct, prediction id) rows; the answer once they are on disk."""
        try:
            count = await asyncio.to_thread(self.store.add_feedback, name, version, rows)
        except DuplicateFeedback as err:
            raise Conflict(str(err)) from None
        acc, n = await asyncio.to_thread(self.store.accuracy, name, version, self.policy.accuracy_window)
        self.live[name, version] = acc
        self.metrics.feedback(name, version, len(rows), acc)
        return {"model": name, "version": version, "accepted": len(rows), "correct": int(sum(r[2] for r in rows)),
                "live_accuracy": acc, "live_accuracy_rows": n, "feedback_rows": count}

    # ------------------------------------------------------------------------------------------ the watcher
    async def watch(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # noqa: BLE001 - the watcher must survive a failing store call
                log.exception("lifecycle tick failed")
            await asyncio.sleep(self.policy.poll_s)

    async def tick(self) -> None:
        """One look: follow the store's serving versions; the lease holder (the leader) also judges the criteria
        and acts on them; every replica computes the drift reports of its own traffic for its /metrics."""
        await self.follow_all()
        lead = await asyncio.to_thread(self.store.lease, LEASE, self.replica, self.policy.lease_s)
        if lead and not self.leading:
            await self.take_over()
        self.leading = lead
        if lead:
            for name in list(self.repo.models):
                try:
                    await self.check(name)
                except Exception:  # noqa: BLE001 - the watcher must survive one model's failure
                    log.exception("lifecycle check failed for %s", name)
        await self.drift_reports()

    async def drift_reports(self) -> None:
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
        pol, m, store = self.policy, d.monitor, self.store
        drift_alert = low = None
        last = (m.last_report or {}).get("computed_at") or 0 if m is not None else 0
        if m is not None and m.rows_seen - tr.window_mark >= m.window \
                and time.time() - last >= d.config.drift_interval_s:  # a window of fresh rows: judge it
            report = await self.evaluate(d)
            tr.window_mark, tr.last_window = report["rows_seen"], report
            drift_alert = report["verdict"] == "alert"
        expected = self.expected_accuracy(d)
        labelled = await asyncio.to_thread(store.feedback_count, d.name, d.version)
        if expected is not None and labelled - tr.accuracy_mark >= pol.accuracy_window:
            tr.accuracy_mark = labelled
            acc, _ = await asyncio.to_thread(store.accuracy, d.name, d.version, pol.accuracy_window)
            low = acc < expected - pol.accuracy_drop
        can = bool(pol.dir) and tr.running is None and time.time() >= tr.cooldown_until
        return Observation(drift_alert, low, await asyncio.to_thread(store.feedback_count, d.name), can)

    async def check(self, name: str) -> None:
        d, tr = self.repo.get(name), self.track[name]
        await self.requests(d, tr)
        if d.task not in CLASSIFIERS:
            return
        obs = await self.observe(d, tr)
        decision = judge(tr.criteria, obs, self.policy)
        changed = decision.state != tr.criteria
        tr.criteria = decision.state
        tr.windows_judged += obs.drift_alert is not None  # after the verdict: status() reads them in reverse
        await self.record(d, tr, decision)
        if changed:
            self.save(name)
        if decision.retrain:
            await self.start_retrain(d, decision.reason, tr.stats, decision.state.onset)

    async def requests(self, d: Deployment, tr: Tracking) -> None:
        """Manual retrains asked of replicas that do not lead: one retrain for the requests since the last look
        (or a retrain_refused event saying why not)."""
        asked = await asyncio.to_thread(self.store.events_after, "retrain_requested", d.name, tr.request_mark)
        if not asked:
            return
        tr.request_mark = asked[-1]["seq"]
        self.save(d.name)
        try:
            await self.start_retrain(d, "manual", None)
        except (Conflict, BadInput) as err:
            self.event("retrain_refused", d.name, version=d.version, request=tr.request_mark, reason=str(err))

    async def request_retrain(self, d: Deployment) -> dict:
        """On a replica that does not lead: record the request; the leader starts the retrain at its next look."""
        holder = await asyncio.to_thread(self.store.lease_holder, LEASE)
        e = self.event("retrain_requested", d.name, version=d.version, replica=self.replica, leader=holder)
        return {"model": d.name, "requested": e["seq"], "leader": holder,
                "note": "the leader starts it at its next look (GET /v1/events: retrain_started or retrain_refused)"}

    async def record(self, d: Deployment, tr: Tracking, decision: Decision) -> None:
        """The events of a decision, and the statistics behind the criteria met now."""
        st = decision.state
        if decision.new_drift_alert:
            self.event("drift_alert", d.name, version=d.version, rows_seen=tr.last_window["rows_seen"],
                       statistics=alerting(tr.last_window))
        tr.stats = {}
        if st.alert_windows >= self.policy.drift_windows:
            tr.stats["drift"] = {"windows": st.alert_windows, "tests": alerting(tr.last_window)}
        if st.low_windows >= self.policy.accuracy_windows:
            acc, n = await asyncio.to_thread(self.store.accuracy, d.name, d.version, self.policy.accuracy_window)
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
        if not self.leading:  # (the route turns a manual retrain on a follower into a request: request_retrain)
            raise Conflict(f"this replica ({self.replica}) does not hold the lifecycle lease")
        if tr.running:
            raise Conflict(f"a retrain of {d.name} is already running (event {tr.running})")
        if d.task not in CLASSIFIERS:
            raise BadInput(f"retraining takes labelled feedback; {d.name} is a {d.task} model")
        upto = await asyncio.to_thread(self.store.feedback_count, d.name)
        rows = await asyncio.to_thread(self.store.feedback_since, d.name, start or 0, pol.max_feedback, upto)
        if len(rows) < pol.min_feedback:
            raise Conflict(f"{len(rows)} labelled rows since the episode began; a retrain needs {pol.min_feedback}")
        gate, train = self.split(rows)
        eid = f"{time.strftime('%Y%m%d-%H%M%S')}-{d.name}"
        x, y = np.stack([r[0] for r in train]), np.array([r[1] for r in train], np.int64)
        path = await asyncio.to_thread(write_event, pol.dir, {
            "id": eid, "model": d.name, "version": d.version, "task": d.task, "bundle": str(p.path.resolve()),
            "sha256": p.sha256, "reason": reason, "statistics": stats,
            "feedback": {"gate_rows": len(gate), "since_row": start or 0}}, x, y)
        tr.running = eid
        tr.retrain = {"id": eid, "event": str(path), "start": start or 0, "upto": upto, "time": time.time(),
                      "version": d.version}
        self.event("retrain_started", d.name, version=d.version, id=eid, reason=reason, statistics=stats,
                   feedback_rows=len(train), gate_rows=len(gate), old_sha256=p.sha256)
        self.save(d.name)
        self.spawn(self.retrain(d, eid, path, gate))
        return {"id": eid, "event": str(path)}

    def split(self, rows: list) -> tuple[list, list]:
        """(gate rows, training rows): every 1/gate_share-th row is held out for the gate."""
        every = max(2, round(1 / self.policy.gate_share))
        return ([r for i, r in enumerate(rows) if i % every == every - 1],
                [r for i, r in enumerate(rows) if i % every != every - 1])

    def spawn(self, coro) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def retrain(self, old: Deployment, eid: str, event_path, gate_rows: list, started: float | None = None
                      ) -> None:
        tr, t0 = self.track[old.name], started or time.time()
        try:
            result = await self.hook.run(eid, event_path, on_start=lambda pid: self.note_pid(old.name, pid),
                                         started=started)
            candidate = await asyncio.to_thread(self.gate.load, old.predictor, result["bundle"],
                                                set(self.repo.models[old.name]))
            checks = await asyncio.to_thread(self.gate.check, old.predictor, candidate, gate_rows)
            if not await asyncio.to_thread(self.store.lease, LEASE, self.replica, self.policy.lease_s):
                # this process lost the lease while it retrained (paused past --lease-s): the new leader has
                # picked the same event up; only the lease holder may act on the verdict
                self.event("retrain_abandoned", old.name, id=eid, version=old.version, replica=self.replica)
                return
            if not checks["passed"]:
                await asyncio.to_thread(self.store.mark_version, old.name, candidate.version, "rejected")
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
            tr.running = tr.retrain = None
            tr.cooldown_until = time.time() + self.policy.cooldown_s
            self.save(old.name)

    def note_pid(self, name: str, pid: int) -> None:
        """The retrain hook's process: a restart reaps it if the killed server left it running."""
        tr = self.track[name]
        if tr.retrain is not None:
            tr.retrain["pid"] = pid
            self.save(name)

    # ------------------------------------------------------------------------------------------ swap
    async def swap(self, old: Deployment, new, **fields) -> None:
        d = await self.repo.add(new)   # its batcher and drift monitor run before any request can reach it
        gate, held_out = fields.get("gate") or {}, self.expected_accuracy(d)
        if held_out is not None and gate.get("new_feedback_accuracy") is not None:
            self.expected[d.name, d.version] = min(held_out, gate["new_feedback_accuracy"])
        async with self.lock:  # the serving version and the store change together (follow_all waits)
            self.repo.set_default(old.name, d.version)  # one assignment: the next lookup gets the new version
            await self.reset(old.name, previous=old.version)
            await asyncio.to_thread(self.store.mark_version, old.name, d.version, "served")
            self.event("swap", old.name, old_version=old.version, version=d.version, sha256=new.sha256, **fields)
            self.save(old.name)
        self.spawn(self.unload_later(old.name))

    async def unload_later(self, name: str) -> None:
        """After the grace period (requests routed to an old version finish), unload every version that is neither
        serving nor the rollback target: a chain of swaps does not keep every model it ever served in memory."""
        await asyncio.sleep(self.policy.unload_grace_s)
        keep = {self.repo.default[name], self.track[name].previous}
        for version in [v for v in self.repo.models[name] if v not in keep]:
            await self.repo.remove(name, version)
            self.event("unloaded", name, version=version)

    async def rollback(self, name: str) -> dict:
        """Serve the previous version again; any replica may take the call: the store says what every replica then
        serves (they follow it within a poll), and the leader's criteria start afresh."""
        async with self.lock:
            await self.follow_all(locked=True)
            tr = self.track[name]
            if tr.previous is None:
                raise Conflict(f"{name} has no previous version to roll back to")
            current = self.repo.default[name]
            self.repo.set_default(name, tr.previous)
            await self.reset(name, previous=current)
            tr.cooldown_until = time.time() + self.policy.cooldown_s
            await asyncio.to_thread(self.store.mark_version, name, current, "rolled_back")
            await asyncio.to_thread(self.store.mark_version, name, self.repo.default[name], "served")
            e = self.event("rollback", name, old_version=current, version=self.repo.default[name])
            self.save(name)
        self.spawn(self.unload_later(name))
        return {"model": name, "version": e["version"], "previous": current}

    async def reset(self, name: str, previous: str) -> None:
        """A new serving version: its criteria start from its own fresh windows."""
        tr, d = self.track[name], self.repo.get(name)
        tr.previous, tr.criteria = previous, ModelState()
        tr.window_mark = d.monitor.rows_seen if d.monitor else 0
        tr.accuracy_mark = await asyncio.to_thread(self.store.feedback_count, name, d.version)

    def status(self, name: str) -> dict:
        """Blocking (store reads): routes call it in a worker thread."""
        d, tr = self.repo.get(name), self.track[name]
        # the watcher (event loop) sets criteria, then windows_judged; read in the other order, from this thread, a
        # count that includes a window comes with that window's verdict (read after the store, the count could be
        # one window newer than the criteria read before it)
        judged = tr.windows_judged
        st = tr.criteria
        acc, n = self.store.accuracy(name, d.version, self.policy.accuracy_window)
        count = self.store.feedback_count(name)
        return {"model": name, "version": d.version, "versions": sorted(self.repo.models[name]),
                "previous": tr.previous, "drift_windows_judged": judged,
                "alert_windows": st.alert_windows, "low_accuracy_windows": st.low_windows,
                "expected_accuracy": self.expected_accuracy(d), "episode_reason": st.reason,
                "feedback_since_onset": None if st.onset is None else count - st.onset,
                "retraining": tr.running, "cooldown_s": max(0.0, round(tr.cooldown_until - time.time(), 1)),
                "live_accuracy": acc, "live_accuracy_rows": n, "held_out": dict([d.predictor.headline_metric]),
                "feedback_rows": count, "retrain_enabled": bool(self.policy.dir), "durable": self.store.durable,
                "replica": self.replica, "leader": self.leading}

    # ------------------------------------------------------------------------------------------ durability
    def save(self, name: str) -> None:
        """The model's state, as a restart needs it (one small write; on every change)."""
        tr = self.track[name]
        prev = self.repo.models[name].get(tr.previous) if tr.previous else None
        self.store.save_state(name, {
            "serving": bundle_ref(self.repo.get(name).predictor), "previous": prev and bundle_ref(prev.predictor),
            "criteria": dataclasses.asdict(tr.criteria), "accuracy_mark": tr.accuracy_mark,
            "cooldown_until": tr.cooldown_until, "windows_judged": tr.windows_judged, "retrain": tr.retrain,
            "request_mark": tr.request_mark,
            "expected": {v: a for (n, v), a in self.expected.items() if n == name}})

    async def resume(self, load) -> list[dict]:
        """Carry on from the store at start (a restart, or one more replica): serve the versions it names (a
        retrained bundle the command line does not name is loaded through `load(path, sha256)`, verified again);
        if this replica gets the lease, the criteria, the cooldown and a retrain that was running too (its orphaned
        hook reaped and run again, or its result picked up). One `resumed` event per model with saved state."""
        self.load = load
        found = {}
        for name in list(self.repo.models):
            st = await asyncio.to_thread(self.store.load_state, name)
            if not st:  # a first start: the state as started, so that a kill from now on has one to resume
                self.save(name)
            else:
                found[name] = await self.follow(name, st)
        self.leading = await asyncio.to_thread(self.store.lease, LEASE, self.replica, self.policy.lease_s)
        picked = await self.take_over() if self.leading else {}
        out = []
        for name, problems in found.items():
            tr = self.track[name]
            out.append(self.event("resumed", name, version=self.repo.default[name], previous=tr.previous,
                                  retrain=tr.running, episode=tr.criteria.reason, leader=self.leading,
                                  replica=self.replica, problems=problems + picked.get(name, [])))
        return out

    async def follow_all(self, locked: bool = False) -> None:
        """Serve what the store says each model serves (a swap or rollback another replica made)."""
        if not locked:
            async with self.lock:
                return await self.follow_all(locked=True)
        for name in list(self.repo.models):
            st = await asyncio.to_thread(self.store.load_state, name)
            serving = ((st or {}).get("serving") or {}).get("version")
            prev = ((st or {}).get("previous") or {}).get("version")
            if st and (serving != self.repo.default[name] or prev != self.track[name].previous):
                before = self.repo.default[name]
                problems = await self.follow(name, st)
                if self.repo.default[name] != before:
                    log.warning("%s: now serving %s (from the store; was %s)", name, self.repo.default[name], before)
                    self.spawn(self.unload_later(name))
                for p in problems:
                    log.error("%s: %s", name, p)

    async def follow(self, name: str, st: dict) -> list[str]:
        """Load and serve the stored serving version and rollback target; the problems (nothing loaded twice)."""
        tr, problems = self.track[name], []
        for key in ("serving", "previous"):
            ref = st.get(key)
            if ref and ref["version"] not in self.repo.models[name] and (name, ref["version"]) not in self.refused:
                try:
                    await self.repo.add(await asyncio.to_thread(self.load, ref["path"], ref["sha256"]))
                except Exception as err:  # noqa: BLE001 - said (event or log); the server keeps serving
                    self.refused.add((name, ref["version"]))
                    problems.append(f"{key} version {ref['version']}: {err}")
        serving = (st.get("serving") or {}).get("version")
        if serving in self.repo.models[name] and serving != self.repo.default[name]:
            self.repo.set_default(name, serving)  # a new serving version: its criteria start afresh here too
            tr.criteria = ModelState()
            tr.window_mark = self.repo.get(name).monitor.rows_seen if self.repo.get(name).monitor else 0
            tr.accuracy_mark = await asyncio.to_thread(self.store.feedback_count, name, serving)
        prev = (st.get("previous") or {}).get("version")
        tr.previous = prev if prev in self.repo.models[name] else None
        self.expected.update({(name, v): a for v, a in (st.get("expected") or {}).items()})
        return problems

    async def take_over(self) -> dict[str, list[str]]:
        """This replica just got the lease: adopt the stored criteria and cooldown, and pick up a retrain that the
        previous leader (or this process before a restart) left running. {model: problems}."""
        problems: dict[str, list[str]] = {}
        for name in list(self.repo.models):
            st = await asyncio.to_thread(self.store.load_state, name)
            if not st:
                continue
            tr = self.track[name]
            tr.criteria = ModelState(**st.get("criteria", {}))
            tr.accuracy_mark, tr.windows_judged = st.get("accuracy_mark", 0), st.get("windows_judged", 0)
            tr.cooldown_until = st.get("cooldown_until", 0.0)
            tr.request_mark = max(tr.request_mark, st.get("request_mark", 0))
            rt = st.get("retrain")
            if rt and tr.running != rt["id"]:
                if self.hook and rt.get("version") in self.repo.models[name]:
                    reap(rt.get("pid"), rt["id"])
                    rows = await asyncio.to_thread(self.store.feedback_since, name, rt["start"],
                                                   self.policy.max_feedback, rt["upto"])
                    tr.running, tr.retrain = rt["id"], {k: v for k, v in rt.items() if k != "pid"}
                    self.spawn(self.retrain(self.repo.get(name, rt["version"]), rt["id"], Path(rt["event"]),
                                            self.split(rows)[0], started=rt["time"]))
                else:
                    problems[name] = [f"retrain {rt['id']} cannot be picked up (retraining off or its version gone)"]
            self.save(name)
        return problems

    async def stop(self) -> None:
        if self.leading:  # another replica takes over at its next look, not after the lease runs out
            await asyncio.to_thread(self.store.release, LEASE, self.replica)
        if self.hook:
            self.hook.kill()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def alerting(report: dict | None) -> list[dict]:
    """The tests of a drift report that are in alert (what an event records)."""
    keep = ("signal", "statistic", "feature", "value", "alert", "wasserstein_sd", "js_distance", "mmd2")
    return [{k: t[k] for k in keep if k in t} for t in (report or {}).get("tests", []) if t.get("verdict") == "alert"]


def bundle_ref(p) -> dict:
    return {"version": p.version, "path": str(Path(p.path).resolve()) if getattr(p, "path", None) else None,
            "sha256": p.sha256}


def reap(pid: int | None, eid: str) -> None:
    """Kill the retrain hook that a killed server left behind (only if that pid still runs that event)."""
    if not pid:
        return
    try:
        if eid.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
            os.kill(pid, signal.SIGKILL)
            log.warning("reaped the orphaned retrain hook %s of event %s", pid, eid)
    except (OSError, ValueError):
        pass
