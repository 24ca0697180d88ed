"""The dynamic batcher, written by hand (the lesson of this package).

One batcher per model. Callers `await submit(rows)`; a single loop task collects the waiting rows and sends
them to the model in batches:

- a batch holds at most `max_batch_size` ROWS (a caller may send several rows; a request larger than a batch
  is split across consecutive batches);
- a batch leaves as soon as it is full, or `max_delay_ms` after the OLDEST waiting request arrived, whichever
  comes first (so nobody waits longer than the delay plus the one execution already running);
- the queue is bounded in ROWS (`queue_rows`, what the model has to work through, whatever the number of
  requests carrying them): a request whose rows do not fit is refused at once (QueueFull -> 503 + Retry-After),
  which keeps latency bounded under overload instead of growing a backlog nobody will wait for (an empty queue
  takes any request, so one larger than the bound is not refused forever);
- each request has a timeout (RequestTimeout -> 504); its rows not yet sent are dropped from the queue;
- the model runs on one worker thread per model (`run_in_executor`), so ONNX Runtime never blocks the event
  loop, and each caller gets exactly its own rows of the batch output back, in order.

The clock and the executor are injectable: the tests drive the same loop on a fake clock with an inline
executor, and check the rules above batch by batch.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import dataclasses
import logging
import math
import time
from collections.abc import Callable

from dlm_core.predictors import BatchOutput

log = logging.getLogger("p10_serving")


class QueueFull(Exception):
    """The model's queue is full: answer 503 with Retry-After."""


class RequestTimeout(Exception):
    """The request did not finish within the timeout: answer 504."""


class ShuttingDown(Exception):
    """The server stopped while the request waited: answer 503."""


@dataclasses.dataclass(eq=False)
class Request:
    rows: list
    arrival: float
    future: asyncio.Future
    taken: int = 0            # rows already put into a batch
    done: int = 0             # rows whose outputs came back
    parts: list = dataclasses.field(default_factory=list)  # BatchOutput slices, in row order
    dispatched: float | None = None  # when its first row went into a batch
    cancelled: bool = False   # timed out or the client went away: drop its remaining rows


def merge(parts: list[BatchOutput]) -> BatchOutput:
    """One caller's slices (several when its request was split) back into one output."""
    return BatchOutput.concat(parts)


class InlineExecutor(concurrent.futures.Executor):
    """Runs the model in the loop's own thread (deterministic; for tests with a fake clock)."""

    def submit(self, fn, /, *args, **kwargs):
        f = concurrent.futures.Future()
        try:
            f.set_result(fn(*args, **kwargs))
        except Exception as err:  # noqa: BLE001 - handed to the awaiting caller
            f.set_exception(err)
        return f


class Batcher:
    def __init__(self, run: Callable[[list], BatchOutput], *, max_batch_size: int = 32, max_delay_ms: float = 5.0,
                 queue_rows: int = 1024, timeout_ms: float = 10_000, batching: bool = True,
                 clock: Callable[[], float] = time.monotonic, executor: concurrent.futures.Executor | None = None,
                 metrics=None, name: str = "model", on_output: Callable[[BatchOutput], None] | None = None,
                 on_restart: Callable[[], None] | None = None):
        if max_batch_size < 1 or queue_rows < 1 or max_delay_ms < 0 or timeout_ms <= 0:
            raise ValueError("max_batch_size and queue_rows must be >= 1, max_delay_ms >= 0, timeout_ms > 0")
        self.run, self.name = run, name
        self.max_batch_size, self.max_delay = max_batch_size, max_delay_ms / 1000
        self.queue_rows, self.timeout = queue_rows, timeout_ms / 1000
        self.batching, self.clock, self.metrics = batching, clock, metrics
        self.on_output = on_output  # sees every executed batch (the drift monitor's append)
        self.on_restart = on_restart  # called when the loop died and was started again (a metric)
        self.restarts, self.stopping = 0, False
        self.executor = executor or concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"model-{name}")
        self.waiting: collections.deque[Request] = collections.deque()
        self.queued_rows = 0      # rows waiting, not yet in a batch
        self.wake = asyncio.Event()
        self.task: asyncio.Task | None = None
        self.rows_done = self.executions_done = 0  # what ran (the dashboard's mean batch size)

    # ------------------------------------------------------------------------------------------ callers
    async def submit(self, rows: list) -> BatchOutput:
        """Queue `rows` (one request); their outputs once every row has run. QueueFull / RequestTimeout."""
        if not rows:
            raise ValueError("a request needs at least one row")
        if not self.healthy():
            raise ShuttingDown(f"model {self.name!r} is not running")
        if self.queued_rows and self.queued_rows + len(rows) > self.queue_rows:
            raise QueueFull(f"model {self.name!r} has {self.queued_rows} rows waiting; {len(rows)} more would pass "
                            f"its queue bound of {self.queue_rows} rows; retry later")
        loop = asyncio.get_running_loop()
        req = Request(rows, self.clock(), loop.create_future())
        self.waiting.append(req)
        self._queued(len(rows))
        self.wake.set()
        # one timer per request (cheaper than wait_for + shield, which create a task and a future each)
        timer = loop.call_later(self.timeout, self._expire, req)
        try:
            return await req.future
        finally:
            timer.cancel()
            if req.cancelled or req.future.cancelled() or not req.future.done():  # client gone, or timed out
                req.cancelled = True
                self.wake.set()

    def _expire(self, req: Request) -> None:
        if not req.future.done():
            req.cancelled = True
            req.future.set_exception(RequestTimeout(f"model {self.name!r} did not answer within "
                                                    f"{self.timeout * 1000:g} ms"))
            self.wake.set()

    def healthy(self) -> bool:
        """The loop task runs (a task that died is noticed: readiness turns 503)."""
        return self.task is not None and not self.task.done()

    # ------------------------------------------------------------------------------------------ the loop
    def next_batch(self, now: float) -> list[tuple[Request, int, int]] | float:
        """The batch to run now, as (request, first row, end row) slices, oldest request first; or, when no
        batch is due, how many seconds until one is (inf: nothing waits)."""
        self._drop_cancelled()
        if not self.waiting:
            return math.inf
        if self.batching:
            due = self.waiting[0].arrival + self.max_delay
            if self.queued_rows < self.max_batch_size and now < due:
                return due - now
        batch, room = [], self.max_batch_size
        for req in self.waiting:
            n = min(len(req.rows) - req.taken, room)
            batch.append((req, req.taken, req.taken + n))
            room -= n
            if room == 0 or not self.batching:  # unbatched: one request per execution
                break
        for req, _, stop in batch:
            req.taken = stop
        while self.waiting and self.waiting[0].taken == len(self.waiting[0].rows):
            self.waiting.popleft()
        self._queued(-sum(stop - start for _, start, stop in batch))
        return batch

    async def loop(self) -> None:
        while True:
            plan = self.next_batch(self.clock())
            if isinstance(plan, float):
                self.wake.clear()
                try:
                    await asyncio.wait_for(self.wake.wait(), None if plan == math.inf else plan)
                except TimeoutError:
                    pass
                continue
            await self.execute(plan)

    async def execute(self, batch: list[tuple[Request, int, int]]) -> None:
        rows = [r for req, start, stop in batch for r in req.rows[start:stop]]
        started = self.clock()
        for req, _, _ in batch:
            if req.dispatched is None:
                req.dispatched = started
                if self.metrics:
                    self.metrics.queue_wait.observe(started - req.arrival)
        try:
            out = await asyncio.get_running_loop().run_in_executor(self.executor, self.run, rows)
        except Exception as err:  # the model failed: every caller in this batch gets the error
            for req, _, _ in batch:
                req.cancelled = True
                if not req.future.done():
                    req.future.set_exception(err)
            return
        self.rows_done += len(rows)
        self.executions_done += 1
        if self.metrics:
            self.metrics.executed(len(rows), self.clock() - started)
        if self.on_output:
            try:
                self.on_output(out)
            except Exception:  # noqa: BLE001 - monitoring must never fail a request
                log.exception("on_output failed for %s", self.name)
        offset = 0
        for req, start, stop in batch:
            req.parts.append(out.slice(offset, offset + stop - start))
            offset += stop - start
            req.done += stop - start
            if req.done == len(req.rows) and not req.future.done():
                req.future.set_result(merge(req.parts))

    def _drop_cancelled(self) -> None:
        for req in [r for r in self.waiting if r.cancelled]:
            self.waiting.remove(req)
            self._queued(-(len(req.rows) - req.taken))

    def _queued(self, delta: int) -> None:
        self.queued_rows += delta
        if self.metrics:
            self.metrics.queue_depth.set(self.queued_rows)

    # ------------------------------------------------------------------------------------------ life
    def start(self) -> None:
        self.stopping = False
        self.task = asyncio.get_running_loop().create_task(self.loop(), name=f"batcher-{self.name}")
        self.task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task) -> None:
        """The loop never returns: if it ended on an error (a bug), whoever waits gets a 503 and the loop starts
        again (counted in `restarts`); readiness is 503 in between."""
        if self.stopping or task.cancelled():
            return
        log.error("batcher %s died: %r; restarting it", self.name, task.exception())
        self._fail_waiting(ShuttingDown(f"model {self.name!r} restarted its batcher; retry"))
        self.restarts += 1
        if self.on_restart:
            self.on_restart()
        self.start()

    def _fail_waiting(self, err: Exception) -> None:
        for req in self.waiting:
            if not req.future.done():
                req.future.set_exception(err)
        self.waiting.clear()
        self._queued(-self.queued_rows)

    async def stop(self) -> None:
        """Stop the loop, fail whoever still waits (503), and let the worker thread finish."""
        self.stopping = True
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
            self.task = None
        self._fail_waiting(ShuttingDown(f"model {self.name!r} is shutting down"))
        self.executor.shutdown(wait=True)
