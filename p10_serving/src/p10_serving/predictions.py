"""The prediction log: every answer gets an id (`prediction_id`), and a sample of the answers (id, time, model,
version, latency, output, and for classifiers the example a retrain would learn from) goes to the store, written
every half second by one background task in a worker thread, never on the request's own path. Feedback may then
name the id instead of sending the input again: the label joins the logged answer, the model is not run twice.
Answers not yet written wait in `pending` (feedback finds them there too)."""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid

from .lifecycle.feedback import CLASSIFIERS, training_example
from .store import Store

log = logging.getLogger("p10_serving")


class PredictionLog:
    def __init__(self, store: Store, sample: float = 1.0, flush_s: float = 0.5, max_pending: int = 50_000):
        self.store, self.sample, self.flush_s, self.max_pending = store, sample, flush_s, max_pending
        self.rows: list[tuple] = []
        self.pending: dict[str, dict] = {}  # pid -> what store.predictions() returns for it
        self.dropped = 0                     # rows not logged because the writer fell behind

    def record(self, d, rows: list, items: list, out, latency_ms: float) -> list[str]:
        """Ids for one answer's rows; logs them when the request is sampled."""
        ids = [uuid.uuid4().hex for _ in rows]
        if self.sample <= 0 or (self.sample < 1 and random.random() >= self.sample):
            return ids
        if len(self.rows) + len(rows) > self.max_pending:
            self.dropped += len(rows)
            return ids
        p, now = d.predictor, time.time()
        classifier = p.task in CLASSIFIERS
        for i, (pid, row, item) in enumerate(zip(ids, rows, items)):
            example = training_example(p, row, item) if classifier else None
            signal = int(out.signal[i]) if classifier else None
            self.rows.append((pid, now, p.name, p.version, latency_ms, out.results[i], signal, example))
            self.pending[pid] = {"model": p.name, "version": p.version, "signal": signal, "example": example,
                                 "output": out.results[i]}
        return ids

    async def find(self, pids: list[str]) -> dict[str, dict]:
        """pid -> the logged answer, from those not yet written, then from the store (ids in neither: absent)."""
        found = {p: self.pending[p] for p in pids if p in self.pending}
        rest = [p for p in pids if p not in found]
        if rest:
            found.update(await asyncio.to_thread(self.store.predictions, rest))
        return found

    async def run(self) -> None:
        try:
            while True:
                await asyncio.sleep(self.flush_s)
                await self.flush()
        finally:
            await self.flush()

    async def flush(self) -> None:
        rows, self.rows = self.rows, []
        if not rows:
            return
        try:
            await asyncio.to_thread(self.store.log_predictions, rows)
        except Exception:  # noqa: BLE001 - the log is best effort; answers were already sent
            log.exception("could not write %d prediction(s) to the log", len(rows))
            self.dropped += len(rows)
        for r in rows:
            self.pending.pop(r[0], None)
