"""The dynamic batcher's rules, checked batch by batch on a fake clock (no wall-clock assertions), then its
failure modes (queue full, timeout, model error) and batched == alone on real toy bundles."""

import asyncio
import threading

import numpy as np
import pytest

from dlm_core.predictors import BatchOutput
from p10_serving.batcher import Batcher, InlineExecutor, QueueFull, RequestTimeout


class FakeClock:
    def __init__(self):
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def output(rows) -> BatchOutput:
    n = len(rows)
    y = np.empty(n, object)
    y[:] = rows
    return BatchOutput([{"prediction": r} for r in rows], {"y": y}, np.zeros((n, 1)),
                       np.zeros(n), None)


class FakeModel:
    """Echoes its rows; logs (start, rows) and takes `compute` seconds of the fake clock per execution."""

    def __init__(self, clock: FakeClock, compute: float):
        self.clock, self.compute, self.batches = clock, compute, []

    def __call__(self, rows):
        self.batches.append((self.clock.t, list(rows)))
        self.clock.t += self.compute
        return output(rows)


async def settle():
    for _ in range(40):
        await asyncio.sleep(0)


async def simulate(arrivals, *, max_batch=8, delay=0.005, compute=0.002, tick=0.0005, batching=True,
                   queue_rows=10**6, depth=None):
    """Replay `arrivals` [(scheduled time, n rows)] on the fake clock, one tick at a time; each request's rows
    are (request index, row index). Returns the model's batch log and per request (stamp, rows, result or the
    exception it got). `depth`: a list that gets (rows, requests) waiting once each tick's arrivals are in."""
    clock = FakeClock()
    model = FakeModel(clock, compute)
    b = Batcher(model, max_batch_size=max_batch, max_delay_ms=delay * 1000, queue_rows=queue_rows,
                timeout_ms=1e9, batching=batching, clock=clock, executor=InlineExecutor())
    b.start()
    requests, i, step = [], 0, 0
    end = max(t for t, _ in arrivals) + 1.0
    while clock.t < end:
        while i < len(arrivals) and arrivals[i][0] <= clock.t:
            rows = [(i, j) for j in range(arrivals[i][1])]
            requests.append((clock.t, arrivals[i][0], rows, asyncio.ensure_future(b.submit(rows))))
            i += 1
        await asyncio.sleep(0)  # the new requests are queued (or refused), no batch has left yet
        if depth is not None:
            depth.append((b.queued_rows, len(b.waiting)))
        await settle()
        step += 1
        clock.t = max(clock.t, step * tick)
        b.wake.set()
    await settle()
    await b.stop()
    assert all(f.done() for *_, f in requests)
    return model.batches, [(stamp, sched, rows, f.exception() or f.result()) for stamp, sched, rows, f in requests]


def random_arrivals(seed: int, n: int = 300, rate: float = 400.0) -> list:
    rng = np.random.default_rng(seed)
    times = np.cumsum(rng.exponential(1 / rate, n))
    sizes = np.where(rng.random(n) < 0.05, rng.integers(9, 30, n), rng.integers(1, 4, n))  # a few split
    return [(round(float(t), 6), int(k)) for t, k in zip(times, sizes)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_batches_follow_the_rules_on_a_fake_clock(seed):
    max_batch, delay, compute, tick = 8, 0.005, 0.002, 0.0005
    arrivals = random_arrivals(seed)
    batches, requests = asyncio.run(simulate(arrivals, max_batch=max_batch, delay=delay, compute=compute, tick=tick))
    stamp = {rows[0][0]: s for s, _, rows, _ in requests}

    # every caller gets exactly its own rows back, in order (split requests included)
    for _, _, rows, out in requests:
        assert [r["prediction"] for r in out.results] == rows
        assert out.tensors["y"].tolist() == rows
    # every row runs exactly once, and no batch exceeds the maximum
    ran = [r for _, rows in batches for r in rows]
    assert sorted(ran) == sorted(r for _, _, rows, _ in requests for r in rows)
    assert max(len(rows) for _, rows in batches) <= max_batch
    assert any(len(rows) > 1 for _, rows in batches)
    assert any(len(rows) > max_batch for _, _, rows, _ in requests)  # the scenario splits some

    prev_end = 0.0
    for start, rows in batches:
        oldest = stamp[rows[0][0]]  # a batch starts with the oldest waiting request
        # a batch leaves early only when full; never sits past its oldest request's deadline
        assert len(rows) == max_batch or start >= oldest + delay - 1e-9
        assert start <= max(oldest + delay, prev_end) + tick + 1e-9
        prev_end = start + compute


def test_nobody_waits_longer_than_the_delay_plus_one_execution():
    # light load: fewer than a batch of rows arrives within any delay + execution window
    max_batch, delay, compute, tick = 8, 0.005, 0.003, 0.0005
    rng = np.random.default_rng(3)
    arrivals = [(round(0.004 * i + float(rng.uniform(0, 0.002)), 6), int(rng.integers(1, 3))) for i in range(150)]
    batches, requests = asyncio.run(simulate(arrivals, max_batch=max_batch, delay=delay, compute=compute, tick=tick))
    first_start = {}
    for start, rows in batches:
        for r in rows:
            first_start.setdefault(r[0], start)
    waits = [first_start[rows[0][0]] - sched for _, sched, rows, _ in requests]
    assert max(waits) <= delay + compute + tick + 1e-9
    assert np.mean([len(r) for _, r in batches]) > 1.5  # and they were batched


def test_the_queue_bound_counts_rows_not_requests():
    # 3x overload on the fake clock: 2000 requests/s of 1..12 rows (13,000 rows/s) against 4,000 rows/s
    max_batch, delay, compute, tick, bound = 8, 0.005, 0.002, 0.0005, 24
    rng = np.random.default_rng(7)
    arrivals = [(round(i * 0.0005, 6), int(rng.integers(1, 13))) for i in range(400)]
    depth = []
    batches, requests = asyncio.run(simulate(arrivals, max_batch=max_batch, delay=delay, compute=compute,
                                             tick=tick, queue_rows=bound, depth=depth))
    assert all(rows <= bound or n == 1 for rows, n in depth)  # over the bound only a lone request, taken whole
    refused = [rows for _, _, rows, out in requests if isinstance(out, QueueFull)]
    assert len(refused) > len(requests) / 2
    ran = {r for _, rows in batches for r in rows}
    assert not ran & {r for rows in refused for r in rows}  # a refused request never runs
    first_start = {}
    for start, rows in batches:
        for r in rows:
            first_start.setdefault(r[0], start)
    waits = [first_start[rows[0][0]] - stamp for stamp, _, rows, out in requests if not isinstance(out, Exception)]
    for _, _, rows, out in requests:
        if not isinstance(out, Exception):
            assert [r["prediction"] for r in out.results] == rows
    # whoever is taken waits for at most the bound's rows ahead of it (in full batches) and the one running
    assert max(waits) <= (bound // max_batch + 1) * compute + tick + 1e-9


def test_unbatched_runs_one_request_per_execution():
    batches, requests = asyncio.run(simulate(random_arrivals(4, n=60), batching=False))
    for _, rows in batches:
        assert len({r[0] for r in rows}) == 1 and len(rows) <= 8
    for _, _, rows, out in requests:
        assert [r["prediction"] for r in out.results] == rows


class GatedModel:
    """Blocks each execution until released (real threads): for the queue-full and timeout cases."""

    def __init__(self):
        self.started, self.release, self.batches = threading.Event(), threading.Event(), []

    def __call__(self, rows):
        self.batches.append(list(rows))
        self.started.set()
        assert self.release.wait(30)
        return output(rows)


async def until(event: threading.Event):
    for _ in range(3000):
        if event.is_set():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("model never started")


def test_queue_full_is_refused_and_the_rest_still_answer():
    async def main():
        model = GatedModel()
        b = Batcher(model, max_batch_size=4, max_delay_ms=0, queue_rows=2, timeout_ms=60_000)
        b.start()
        first = asyncio.ensure_future(b.submit(["a"]))
        await until(model.started)  # "a" is running; the queue is empty again
        waiting = [asyncio.ensure_future(b.submit([x])) for x in "bc"]
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await b.submit(["d"])
        model.release.set()
        outs = await asyncio.gather(first, *waiting)
        await b.stop()
        return model.batches, outs

    batches, outs = asyncio.run(main())
    assert [o.results[0]["prediction"] for o in outs] == ["a", "b", "c"]
    assert "d" not in [r for rows in batches for r in rows]


def test_an_empty_queue_takes_a_request_larger_than_the_row_bound():
    async def main():
        model = GatedModel()
        b = Batcher(model, max_batch_size=4, max_delay_ms=0, queue_rows=3, timeout_ms=60_000)
        b.start()
        first = asyncio.ensure_future(b.submit(list("abcdefg")))  # 7 rows > 3: taken, the queue was empty
        await until(model.started)  # "abcd" runs, "efg" waits: the queue is full
        with pytest.raises(QueueFull, match="3 rows waiting"):
            await b.submit(["x"])
        model.release.set()
        out = await first
        await b.stop()
        return model.batches, out

    batches, out = asyncio.run(main())
    assert [r["prediction"] for r in out.results] == list("abcdefg") and batches == [list("abcd"), list("efg")]


def test_timeout_answers_504_and_drops_the_rows_not_yet_run():
    async def main():
        model = GatedModel()
        b = Batcher(model, max_batch_size=4, max_delay_ms=0, queue_rows=10, timeout_ms=50)
        b.start()
        first = asyncio.ensure_future(b.submit(["a"]))
        await until(model.started)
        with pytest.raises(RequestTimeout):
            await b.submit(["late"])  # waits behind "a" past its timeout
        with pytest.raises(RequestTimeout):
            await first  # "a" itself is still running
        model.release.set()
        b.timeout = 60
        again = await b.submit(["b"])
        await b.stop()
        return model.batches, again

    batches, again = asyncio.run(main())
    assert again.results[0]["prediction"] == "b"
    assert batches == [["a"], ["b"]]  # "late" never ran


def test_a_failing_model_fails_only_its_batch():
    calls = []

    def model(rows):
        calls.append(rows)
        if "boom" in rows:
            raise RuntimeError("model failed")
        return output(rows)

    async def main():
        b = Batcher(model, max_batch_size=4, max_delay_ms=0, batching=False)
        b.start()
        with pytest.raises(RuntimeError):
            await b.submit(["boom", "x"])
        ok = await b.submit(["y"])
        await b.stop()
        return ok

    assert asyncio.run(main()).results[0]["prediction"] == "y"


@pytest.mark.parametrize("name", ["img", "txt", "search"])
def test_same_outputs_batched_or_alone(predictors, name):
    p = predictors[name]
    if p.task == "image-classification":
        rng = np.random.default_rng(0)
        items = [rng.integers(0, 256, (28, 28)).tolist() for _ in range(23)]
    else:
        from dlm_core.testing import toy_texts

        items = toy_texts(23, seed=5)
        if p.task == "text-retrieval":
            items = [{"query": t, "k": 1 + i % 7} for i, t in enumerate(items)]
    sizes = [1, 3, 2, 9, 1, 4, 3]  # 23 rows in 7 requests; the 9 is split over batches of 8
    groups, i = [], 0
    for n in sizes:
        groups.append(items[i:i + n])
        i += n

    async def main():
        b = Batcher(p.run, max_batch_size=8, max_delay_ms=50, name=name)
        b.start()
        outs = await asyncio.gather(*(b.submit([p.prepare(x) for x in g]) for g in groups))
        await b.stop()
        return outs

    outs = asyncio.run(main())
    for g, out in zip(groups, outs):
        for item, got in zip(g, out.results, strict=True):
            alone = p.predict([item])[0]
            assert got["prediction"] == alone["prediction"]
            if got.get("confidence") is not None:
                assert got["confidence"] == pytest.approx(alone["confidence"], abs=1e-5)
            if "results" in got:
                assert [h["id"] for h in got["results"]] == [h["id"] for h in alone["results"]]
