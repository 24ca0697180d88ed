"""run_load's raw HTTP/1.1 client against a tiny asyncio server: the three ways a response body can end
(Content-Length, chunked, connection close), keep-alive reuse, a stale keep-alive connection reopened, the
per-request timeout, the latency counted from the scheduled send time, and the open-loop scheduler itself.
No assertion is a wall-clock window: only counts, scheduled offsets and lower bounds a busy machine cannot
break."""

import asyncio
import time

import pytest

from p10_serving.tools.loadtest import open_loop, run_load


async def serve(handler):
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def read_request(reader) -> str:
    head = (await reader.readuntil(b"\r\n\r\n")).decode()
    length = int(next(line.split(":")[1] for line in head.split("\r\n") if line.lower().startswith("content-length")))
    await reader.readexactly(length)
    return head.split(" ")[1]


def load(handler, path: str, **kw) -> tuple[dict, int]:
    async def main():
        handlers = []

        async def counted(reader, writer):
            handlers.append(asyncio.current_task())
            await handler(reader, writer)

        server, port = await serve(counted)
        async with server:
            args = dict(rate=50, duration=0.4, warmup=0.0, timeout=2.0, max_connections=4) | kw
            result = await run_load(f"http://127.0.0.1:{port}{path}", {"input": [1, 2]}, **args)
            await asyncio.wait(handlers, timeout=10)  # the client closed its connections: the handlers end
        return result, len(handlers)

    return asyncio.run(main())


async def keep_alive(reader, writer):
    try:
        while True:
            path = await read_request(reader)
            if path == "/chunked":
                writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n")
            else:
                code = b"404 Not Found" if path == "/missing" else b"200 OK"
                writer.write(b"HTTP/1.1 " + code + b"\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
    except asyncio.IncompleteReadError:
        writer.close()


async def close_delimited(reader, writer):
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbody until close")
    await writer.drain()
    writer.close()


async def closes_when_idle(reader, writer):
    """A keep-alive reply (no `Connection: close`), then the connection is closed as an idle one: the server's
    keep-alive timeout, at once. The client only learns it when it reuses the connection."""
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    await writer.drain()
    writer.close()


async def closes_with_a_request_in_flight(reader, writer):
    """One keep-alive reply; the next request on the connection arrives as the idle timer fires: the connection
    is closed without a byte of reply."""
    await read_request(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
    await writer.drain()
    try:
        await read_request(reader)
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


async def never_answers(reader, writer):
    await read_request(reader)
    writer.close()


async def one_per_100ms(reader, writer):
    try:
        while True:
            await read_request(reader)
            await asyncio.sleep(0.1)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            await writer.drain()
    except asyncio.IncompleteReadError:
        writer.close()


def test_a_slow_server_times_out():
    r, _ = load(one_per_100ms, "/", rate=20, duration=0.2, timeout=0.05)
    assert r["status_codes"] == {"timeout": 4}
    # a timed-out request's latency is at least the timeout (however late the machine noticed it)
    assert all(s["ms"] >= 49 for s in r["samples"]), r["samples"]


def test_latency_counts_from_the_scheduled_time_not_the_send():
    """One connection, a request due every 50 ms, 100 ms each: request i cannot be answered before 100 (i + 1)
    ms, so counted from its scheduled time (50 i ms) its latency is at least 100 + 50 i ms: the queueing shows.
    Counted from the actual send it would stay near 100 ms."""
    r, _ = load(one_per_100ms, "/", rate=20, duration=0.2, max_connections=1)
    samples = sorted(r["samples"], key=lambda s: s["t"])
    assert r["requests"] == 4 and r["success_ratio"] == 1.0
    assert [s["t"] for s in samples] == pytest.approx([0.0, 0.05, 0.1, 0.15], abs=1e-4)  # the schedule
    for i, s in enumerate(samples):
        assert s["ms"] >= 100 + 50 * i - 1, samples


def test_content_length_and_chunked_bodies_reuse_connections():
    for path in ("/len", "/chunked"):
        r, connections = load(keep_alive, path)
        assert r["status_codes"] == {"200": 20} and r["success_ratio"] == 1.0, (path, r["status_codes"])
        assert connections <= 4, path  # kept alive: at most max_connections were ever opened
        assert r["reconnects"] == 0


def test_status_codes_are_counted_as_sent():
    r, _ = load(keep_alive, "/missing")
    assert r["status_codes"] == {"404": 20} and r["success_ratio"] == 0.0


def test_a_close_delimited_body_opens_a_new_connection_each_time():
    r, connections = load(close_delimited, "/")
    assert r["status_codes"] == {"200": 20} and connections == 20
    assert r["reconnects"] == 0  # the server said so: a new connection, not a retry


@pytest.mark.parametrize("handler", [closes_when_idle, closes_with_a_request_in_flight])
def test_a_reused_connection_the_server_closed_is_reopened_and_the_request_sent_again(handler):
    """One connection in the pool, each closed by the server after one reply: every request after the first
    reuses a dead connection. Without the retry each of them fails (IncompleteReadError or a reset); with it
    every request is a 200, each over a new connection, and the retries are counted."""
    r, connections = load(handler, "/", max_connections=1)
    assert r["status_codes"] == {"200": 20}, r["status_codes"]
    assert r["reconnects"] == 19 and connections == 20


def test_a_fresh_connection_that_fails_is_not_retried():
    """The retry is for reused connections only: a request that fails on a connection just opened is an error,
    sent once (the server saw one connection per request)."""
    r, connections = load(never_answers, "/", max_connections=1)
    assert r["requests"] == 20 and r["success_ratio"] == 0.0 and r["reconnects"] == 0
    assert set(r["status_codes"]) <= {"IncompleteReadError", "ConnectionResetError"}, r["status_codes"]
    assert connections == 20


def test_open_loop_sends_at_fixed_offsets_without_waiting_for_answers():
    async def main():
        started, release = [], asyncio.Event()

        async def answer():
            await release.wait()

        def send(i, scheduled):
            started.append((i, scheduled))
            if i == 4:  # every send is in flight before the first answer comes
                release.set()
            return answer()

        n = await open_loop(200, 5, send, start=123.0)
        return n, started, release.is_set()

    n, started, released = asyncio.run(main())
    assert n == 5 and released
    assert started == [(i, pytest.approx(123.0 + i / 200, abs=1e-12)) for i in range(5)]


def test_open_loop_stops_early_and_reports_a_send_that_raised():
    async def main():
        calls = []

        async def fails(i):
            if i == 1:
                raise ValueError("boom")

        def send(i, scheduled):
            calls.append(i)
            return fails(i)

        with pytest.raises(ValueError, match="boom"):
            await open_loop(1000, 10, send, stop=lambda i: i >= 3)
        return calls

    assert asyncio.run(main()) == [0, 1, 2]


def test_open_loop_yields_between_sends_even_when_late():
    """Every send is already due (the schedule started 10 s ago): the sends still go one event-loop pass apart,
    so each one's task has started before the next is made (no burst that runs nothing until it ends)."""
    async def main():
        began, seen = [], []

        async def answer(i):
            began.append(i)

        def send(i, scheduled):
            seen.append(list(began))
            return answer(i)

        await open_loop(100, 5, send, start=time.perf_counter() - 10)
        return seen

    assert asyncio.run(main()) == [[], [0], [0, 1], [0, 1, 2], [0, 1, 2, 3]]
