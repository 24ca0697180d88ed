"""A served model's life after deployment: labelled feedback, the retraining criteria, the retraining hook, the
gate, the swap and the rollback.

Retraining criteria (checked every `poll_s` for each classifier; see the README for the reasons):

    drift      the drift monitor's verdict is "alert" on `drift_windows` CONSECUTIVE, NON-OVERLAPPING windows
               (each window `--drift-window` fresh rows). One alert window is not enough: each window may
               false-alarm in up to ~5% of cases (calibrated), two in a row in ~0.25%.
    accuracy   the live accuracy on labelled feedback (`POST /v1/models/{name}/feedback`) is more than
               `accuracy_drop` below the accuracy expected of the serving version on `accuracy_windows`
               consecutive windows of `accuracy_window` fresh labelled rows. Expected: the bundle's held-out
               accuracy; for a version swapped in because the traffic shifted, its accuracy on the gate's
               held-out feedback if lower (a model retrained for rotated images is judged against what it
               reached on them, not against the clean test set, or it would be retrained forever).

Either opens an episode; a retrain starts once `min_feedback` labelled rows have arrived since the episode
began (the new model needs examples of the new traffic), not while a retrain runs, and not within `cooldown_s`
of the last swap, rejection or failure. It writes a dlm-retrain-event/1 (dlm_core.retrain: the reason, the
statistics, the windows, the old bundle's sha256, the feedback since the onset minus a held-out share for the
gate) and calls the hook: `command EVENT` as a subprocess here, or nothing when an external worker
(`run_retrain_worker`) watches the folder. When the result names a bundle, it is swapped in only if:

    1. it loads (every file's sha256) and passes its self-check (ONNX Runtime replays reference.npz);
    2. it is no worse on the fixed held-out test set: accuracy >= the serving model's - `gate_margin`;
    3. it is better on the held-out feedback (the drifted traffic it never trained on): McNemar's exact test
       on the rows the two models disagree on, one-sided, p < `gate_alpha`.

The swap starts the new version's batcher and drift monitor, then flips the default version in one
assignment: requests already routed finish on the old version, new ones go to the new one, nothing is
dropped. The old version keeps running, so `POST /v1/models/{name}/rollback` flips back at once.
Every step is an event (GET /v1/events, and events.jsonl in the folder): the dashboard's and the report's
markers.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import logging
import shlex
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from dlm_core.errors import DlmError
from dlm_core.predictors import BadInput, Predictor, load_predictor
from dlm_core.retrain import folders, write_event

log = logging.getLogger("p10_serving")
CLASSIFIERS = ("image-classification", "text-classification")


class Conflict(Exception):
    """The request is valid but the model's state forbids it now: answer 409."""


@dataclasses.dataclass
class RetrainPolicy:
    dir: str | None = None          # the hand-off folder (events/, feedback/, results/, logs/); None: no retraining
    command: str | None = None      # the hook: `command EVENT` runs here; None: an external worker handles events
    drift_windows: int = 2          # consecutive non-overlapping alert windows
    accuracy_drop: float = 0.05     # live accuracy this far below the bundle's held-out accuracy
    accuracy_window: int = 200      # labelled rows the live accuracy is computed over
    accuracy_windows: int = 2       # consecutive low-accuracy windows
    min_feedback: int = 640         # labelled rows since the episode began before a retrain starts
    max_feedback: int = 4000        # the most recent rows of those go to the event
    gate_share: float = 0.2         # of them, held out for the gate (every 1/share-th row)
    gate_margin: float = 0.01       # allowed accuracy loss on the fixed test set
    gate_alpha: float = 0.05        # McNemar's one-sided level on the held-out feedback
    gate_test_rows: int = 2000      # test images the gate uses (0: all)
    cooldown_s: float = 60.0        # no new retrain this long after a swap, rejection or failure
    timeout_s: float = 1800.0       # a retrain that has not answered by then has failed
    poll_s: float = 0.5
    feedback_rows: int = 10_000     # labelled rows kept per model (28x28 float32 images: 31 MB)


@dataclasses.dataclass
class ModelState:
    window_mark: int = 0            # the drift monitor's rows_seen when the last window was judged
    alert_windows: int = 0          # consecutive alert windows
    accuracy_mark: int = 0          # labelled rows of the serving version when its accuracy was last judged
    low_windows: int = 0            # consecutive low-accuracy windows
    onset: int | None = None        # feedback count when the current episode began
    reason: str | None = None
    running: str | None = None      # the event id being retrained
    cooldown_until: float = 0.0
    previous: str | None = None     # the version a rollback goes back to
    last_report: dict | None = None


class FeedbackStore:
    """Labelled rows per model: the training example (raw), its label, and whether the version serving at the
    time got it right (for the live accuracy). Bounded; `count` only grows (episode onsets refer to it)."""

    def __init__(self, size: int):
        self.rows: collections.deque = collections.deque(maxlen=size)
        self.count = 0
        self.per_version: collections.Counter = collections.Counter()

    def add(self, xs: list, labels: list[int], correct: list[bool], version: str) -> None:
        for x, y, c in zip(xs, labels, correct):
            self.rows.append((x, y, c, version, self.count))
            self.count += 1
        self.per_version[version] += len(labels)

    def accuracy(self, version: str, window: int) -> tuple[float | None, int]:
        """Accuracy over the last `window` rows answered by `version` (None until there are that many)."""
        hits = [c for _, _, c, v, _ in reversed(self.rows) if v == version][:window]
        return (float(np.mean(hits)) if len(hits) >= window else None), len(hits)

    def since(self, start: int) -> list[tuple]:
        return [r for r in self.rows if r[4] >= start]


def training_example(p: Predictor, row, item):
    """What a retrainer learns from: an image's pixels (H, W) in 0..255 (as the model saw them, after decoding
    and resizing), or a text as sent."""
    if p.task == "image-classification":
        return ((row * p.std + p.mean) / p.pre["scale"]).mean(0).astype(np.float32)
    return str(item)


class Lifecycle:
    def __init__(self, registry, monitors: dict, policy: RetrainPolicy, metrics,
                 add_model: Callable[[Predictor], Awaitable[None]]):
        self.registry, self.monitors, self.policy, self.metrics = registry, monitors, policy, metrics
        self.add_model = add_model
        self.feedback = {name: FeedbackStore(policy.feedback_rows) for name in registry.models}
        self.state = {name: ModelState() for name in registry.models}
        self.events: list[dict] = []
        self.tasks: set[asyncio.Task] = set()
        self.procs: set[asyncio.subprocess.Process] = set()
        self.dirs = folders(policy.dir) if policy.dir else None
        self.test_sets: dict[tuple, tuple] = {}
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
    async def add_feedback(self, p: Predictor, items: list, labels: list) -> dict:
        """Label each item, run the serving version on it (off the event loop, not through the batcher: feedback
        is not live traffic and must not enter the drift window) and record whether it was right."""
        if p.task not in CLASSIFIERS:
            raise BadInput(f"feedback takes class labels; {p.name} is a {p.task} model")
        names = list(p.post["labels"])
        ys = []
        for i, label in enumerate(labels):
            if isinstance(label, bool) or not isinstance(label, (int, str)):
                raise BadInput(f"labels[{i}]: a class name or index, got {label!r}")
            if isinstance(label, int):
                if not 0 <= label < len(names):
                    raise BadInput(f"labels[{i}]: class index {label} outside 0..{len(names) - 1}")
                ys.append(label)
            elif label in names:
                ys.append(names.index(label))
            else:
                raise BadInput(f"labels[{i}]: unknown class {label!r}; one of {names}")
        rows = p.prepare_all(items)
        out = await asyncio.to_thread(p.run, rows)
        correct = [int(s) == y for s, y in zip(out.signal, ys)]
        store = self.feedback[p.name]
        store.add([training_example(p, r, it) for r, it in zip(rows, items)], ys, correct, p.version)
        acc, n = store.accuracy(p.version, self.policy.accuracy_window)
        self.metrics.feedback(p.name, p.version, len(ys), acc)
        return {"model": p.name, "version": p.version, "accepted": len(ys), "correct": int(sum(correct)),
                "live_accuracy": acc, "live_accuracy_rows": n, "feedback_rows": store.count}

    # ------------------------------------------------------------------------------------------ criteria
    async def watch(self) -> None:
        while True:
            for name in self.registry.models:
                try:
                    await self.check(name)
                except Exception:  # noqa: BLE001 - the watcher must survive one model's failure
                    log.exception("lifecycle check failed for %s", name)
            await asyncio.sleep(self.policy.poll_s)

    async def check(self, name: str) -> None:
        p, st, pol = self.registry.get(name), self.state[name], self.policy
        if p.task not in CLASSIFIERS:
            return
        m = self.monitors.get((p.name, p.version))
        if m is not None and m.rows_seen - st.window_mark >= m.window:  # a window of fresh rows: judge it
            st.window_mark = m.rows_seen
            report = await asyncio.to_thread(m.report, True)
            self.metrics.drift(report)
            st.last_report = report
            if report["verdict"] == "alert":
                st.alert_windows += 1
                if st.alert_windows == 1:
                    self.event("drift_alert", name, version=p.version, rows_seen=report["rows_seen"],
                               statistics=alerting(report))
            else:
                st.alert_windows = 0
        store, expected = self.feedback[name], self.expected_accuracy(p)
        if expected is not None and store.per_version[p.version] - st.accuracy_mark >= pol.accuracy_window:
            st.accuracy_mark = store.per_version[p.version]  # a window of fresh labelled rows: judge it
            acc, _ = store.accuracy(p.version, pol.accuracy_window)
            st.low_windows = st.low_windows + 1 if acc < expected - pol.accuracy_drop else 0
        stats = {}  # every criterion met now (the reason says which: drift, accuracy or drift+accuracy)
        if st.alert_windows >= pol.drift_windows:
            stats["drift"] = {"windows": st.alert_windows, "tests": alerting(st.last_report)}
        if st.low_windows >= pol.accuracy_windows:
            acc, n = store.accuracy(p.version, pol.accuracy_window)
            stats["accuracy"] = {"live_accuracy": acc, "rows": n, "windows": st.low_windows,
                                 "expected_accuracy": expected, "drop": pol.accuracy_drop}
        reason = "+".join(stats) or None
        if reason is None:
            st.onset, st.reason = None, None
            return
        if st.onset is None:
            st.onset, st.reason = self.feedback[name].count, reason
            self.event("episode", name, version=p.version, reason=reason, statistics=stats)
        if not pol.dir or st.running or time.time() < st.cooldown_until:
            return
        if self.feedback[name].count - st.onset >= pol.min_feedback:
            await self.start_retrain(p, reason, stats, st.onset)

    def expected_accuracy(self, p: Predictor) -> float | None:
        head, value = p.headline_metric
        held_out = float(value) if head == "accuracy" else None
        return self.expected.get((p.name, p.version), held_out)

    # ------------------------------------------------------------------------------------------ the hook
    async def start_retrain(self, p: Predictor, reason: str, stats: dict | None, start: int = 0) -> dict:
        pol, st = self.policy, self.state[p.name]
        if not pol.dir:
            raise Conflict("retraining is off; start the server with --retrain-dir")
        if st.running:
            raise Conflict(f"a retrain of {p.name} is already running (event {st.running})")
        rows = self.feedback[p.name].since(start)[-pol.max_feedback:]
        if len(rows) < pol.min_feedback:
            raise Conflict(f"{len(rows)} labelled rows since the episode began; a retrain needs {pol.min_feedback}")
        every = max(2, round(1 / pol.gate_share))
        gate = [r for i, r in enumerate(rows) if i % every == every - 1]
        train = [r for i, r in enumerate(rows) if i % every != every - 1]
        eid = f"{time.strftime('%Y%m%d-%H%M%S')}-{p.name}"
        x, y = np.stack([r[0] for r in train]), np.array([r[1] for r in train], np.int64)
        path = await asyncio.to_thread(write_event, pol.dir, {
            "id": eid, "model": p.name, "version": p.version, "task": p.task, "bundle": str(p.path.resolve()),
            "sha256": p.sha256, "reason": reason, "statistics": stats,
            "feedback": {"gate_rows": len(gate), "since_row": start}}, x, y)
        st.running = eid
        self.event("retrain_started", p.name, version=p.version, id=eid, reason=reason, statistics=stats,
                   feedback_rows=len(train), gate_rows=len(gate), old_sha256=p.sha256)
        task = asyncio.get_running_loop().create_task(self.retrain(p, eid, path, gate))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return {"id": eid, "event": str(path)}

    async def retrain(self, old: Predictor, eid: str, event_path: Path, gate_rows: list) -> None:
        st, pol = self.state[old.name], self.policy
        result_path = self.dirs["results"] / f"{eid}.json"
        t0 = time.time()
        try:
            if pol.command:
                with open(self.dirs["logs"] / f"{eid}.log", "wb") as logf:
                    proc = await asyncio.create_subprocess_exec(*shlex.split(pol.command), str(event_path),
                                                                stdout=logf, stderr=asyncio.subprocess.STDOUT)
                    self.procs.add(proc)
                    try:
                        await asyncio.wait_for(proc.wait(), pol.timeout_s)
                    finally:
                        self.procs.discard(proc)
                        if proc.returncode is None:
                            proc.kill()
            while not result_path.exists():  # an external worker, or a hook that died without a result
                if time.time() - t0 > pol.timeout_s or (pol.command and proc.returncode is not None):
                    raise DlmError(f"no result after {time.time() - t0:.0f} s" + (
                        f" (hook exit code {proc.returncode}; log {self.dirs['logs'] / (eid + '.log')})"
                        if pol.command else ""))
                await asyncio.sleep(pol.poll_s)
            result = json.loads(result_path.read_text())
            if "error" in result:
                raise DlmError(f"the retrainer failed: {result['error']}")
            candidate, checks = await asyncio.to_thread(self.verify_and_gate, old, result["bundle"], gate_rows)
            if not checks["passed"]:
                self.event("gate_rejected", old.name, id=eid, version=old.version, candidate=candidate.version,
                           gate=checks, seconds=round(time.time() - t0, 1))
            else:
                await self.swap(old, candidate, id=eid, gate=checks, seconds=round(time.time() - t0, 1))
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - any failure is an event, never a crash of the server
            self.event("retrain_failed", old.name, id=eid, version=old.version, error=str(err))
        finally:
            st.running = None
            st.cooldown_until = time.time() + pol.cooldown_s

    # ------------------------------------------------------------------------------------------ the gate
    def test_set(self, p: Predictor) -> tuple[list, np.ndarray]:
        """The fixed held-out test split named in the bundle's provenance (the first gate_test_rows rows)."""
        prov = p.manifest.get("provenance", {})
        key = (prov.get("dataset"), prov.get("split_seed"))
        if key not in self.test_sets:
            from dlm_core.data import load_dataset

            try:
                test = load_dataset(prov["dataset"], seed=int(prov.get("split_seed", 0))).test
            except (DlmError, KeyError, OSError) as err:
                raise DlmError(f"no held-out test set for the gate ({err}); fetch it with `dlm data fetch`") from None
            n = self.policy.gate_test_rows or len(test.y)
            self.test_sets[key] = (list(test.x[:n]), np.asarray(test.y[:n]))
        return self.test_sets[key]

    def verify_and_gate(self, old: Predictor, bundle: str, gate_rows: list) -> tuple[Predictor, dict]:
        try:
            candidate = load_predictor(bundle, threads=1)
        except DlmError as err:
            raise DlmError(f"candidate {bundle} refused: {err}") from None
        if candidate.name != old.name or candidate.task != old.task:
            raise DlmError(f"candidate {bundle} is {candidate.name} ({candidate.task}), not {old.name}")
        if candidate.version in self.registry.models[old.name]:
            raise DlmError(f"version {candidate.version} of {old.name} is already loaded")
        candidate.self_check()
        test_x, test_y = self.test_set(old)
        fb_x, fb_y = [r[0] for r in gate_rows], np.array([r[1] for r in gate_rows])
        right = lambda p, xs, ys: predict_classes(p, xs) == ys  # noqa: E731
        old_test, new_test = right(old, test_x, test_y), right(candidate, test_x, test_y)
        old_fb, new_fb = right(old, fb_x, fb_y), right(candidate, fb_x, fb_y)
        gained, lost = int(np.sum(new_fb & ~old_fb)), int(np.sum(old_fb & ~new_fb))
        p_value = float(binomtest(gained, gained + lost, 0.5, alternative="greater").pvalue) if gained + lost else 1.0
        checks = {"test_rows": len(test_y), "old_test_accuracy": float(old_test.mean()),
                  "new_test_accuracy": float(new_test.mean()), "margin": self.policy.gate_margin,
                  "feedback_rows": len(fb_y), "old_feedback_accuracy": float(old_fb.mean()),
                  "new_feedback_accuracy": float(new_fb.mean()), "mcnemar_gained": gained, "mcnemar_lost": lost,
                  "mcnemar_p": p_value, "alpha": self.policy.gate_alpha}
        margin = self.policy.gate_margin
        checks["no_worse_on_test"] = checks["new_test_accuracy"] >= checks["old_test_accuracy"] - margin
        checks["better_on_feedback"] = p_value < self.policy.gate_alpha and gained > lost
        checks["passed"] = checks["no_worse_on_test"] and checks["better_on_feedback"]
        return candidate, checks

    # ------------------------------------------------------------------------------------------ swap
    async def swap(self, old: Predictor, new: Predictor, **fields) -> None:
        await self.add_model(new)      # its batcher and drift monitor run before any request can reach it
        gate, held_out = fields.get("gate") or {}, self.expected_accuracy(new)
        if held_out is not None and gate.get("new_feedback_accuracy") is not None:
            self.expected[new.name, new.version] = min(held_out, gate["new_feedback_accuracy"])
        self.registry.set_default(old.name, new.version)  # one assignment: the next lookup gets the new version
        self.reset(old.name, previous=old.version)
        self.event("swap", old.name, old_version=old.version, version=new.version, sha256=new.sha256, **fields)

    async def rollback(self, name: str) -> dict:
        st = self.state[name]
        if st.previous is None:
            raise Conflict(f"{name} has no previous version to roll back to")
        current = self.registry.default[name]
        self.registry.set_default(name, st.previous)
        self.reset(name, previous=current)
        st.cooldown_until = time.time() + self.policy.cooldown_s
        e = self.event("rollback", name, old_version=current, version=self.registry.default[name])
        return {"model": name, "version": e["version"], "previous": current}

    def reset(self, name: str, previous: str) -> None:
        """A new serving version: its criteria start from its own fresh windows."""
        st, version = self.state[name], self.registry.default[name]
        mon = self.monitors.get((name, version))
        st.previous, st.alert_windows, st.low_windows, st.onset, st.reason = previous, 0, 0, None, None
        st.window_mark = mon.rows_seen if mon else 0
        st.accuracy_mark = self.feedback[name].per_version[version]

    def status(self, name: str) -> dict:
        p, st = self.registry.get(name), self.state[name]
        acc, n = self.feedback[name].accuracy(p.version, self.policy.accuracy_window)
        return {"model": name, "version": p.version, "versions": sorted(self.registry.models[name]),
                "previous": st.previous, "alert_windows": st.alert_windows, "low_accuracy_windows": st.low_windows,
                "expected_accuracy": self.expected_accuracy(p), "episode_reason": st.reason,
                "feedback_since_onset": None if st.onset is None else self.feedback[name].count - st.onset,
                "retraining": st.running, "cooldown_s": max(0.0, round(st.cooldown_until - time.time(), 1)),
                "live_accuracy": acc, "live_accuracy_rows": n, "held_out": dict([p.headline_metric]),
                "feedback_rows": self.feedback[name].count, "retrain_enabled": bool(self.policy.dir)}

    async def stop(self) -> None:
        for proc in list(self.procs):
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def predict_classes(p: Predictor, items: list, batch: int = 256) -> np.ndarray:
    out = [p.run([p.prepare(x) for x in items[i:i + batch]]).signal for i in range(0, len(items), batch)]
    return np.concatenate(out).astype(int) if out else np.zeros(0, int)


def alerting(report: dict | None) -> list[dict]:
    """The tests of a drift report that are in alert (what an event records)."""
    keep = ("signal", "statistic", "feature", "value", "alert", "wasserstein_sd", "js_distance", "mmd2")
    return [{k: t[k] for k in keep if k in t} for t in (report or {}).get("tests", []) if t.get("verdict") == "alert"]
