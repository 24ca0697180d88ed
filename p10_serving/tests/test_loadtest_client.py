"""run_load's raw HTTP/1.1 client against a tiny asyncio server: the three ways a response body can end
(Content-Length, chunked, connection close), keep-alive reuse, the per-request timeout, and the latency counted
from the scheduled send time."""

import asyncio

from p10_serving.loadtest import run_load


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
        connections = 0

        async def counted(reader, writer):
            nonlocal connections
            connections += 1
            await handler(reader, writer)

        server, port = await serve(counted)
        async with server:
            args = dict(rate=50, duration=0.4, warmup=0.0, timeout=2.0, max_connections=4) | kw
            result = await run_load(f"http://127.0.0.1:{port}{path}", {"input": [1, 2]}, **args)
        return result, connections

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
    assert all(45 <= s["ms"] < 90 for s in r["samples"]), r["samples"]


def test_latency_counts_from_the_scheduled_time_not_the_send():
    """One connection, a request every 50 ms, 100 ms each: request i leaves only when i-1 is answered, at
    100 (i + 1) ms, so its latency from the schedule (50 i) is about 100 + 50 i ms: the queueing shows."""
    r, _ = load(one_per_100ms, "/", rate=20, duration=0.2, max_connections=1)
    lat = [s["ms"] for s in sorted(r["samples"], key=lambda s: s["t"])]
    assert len(lat) == 4 and r["success_ratio"] == 1.0
    for i, ms in enumerate(lat):
        assert 100 + 50 * i - 5 <= ms <= 100 + 50 * i + 40, lat


def test_content_length_and_chunked_bodies_reuse_connections():
    for path in ("/len", "/chunked"):
        r, connections = load(keep_alive, path)
        assert r["status_codes"] == {"200": 20} and r["success_ratio"] == 1.0, (path, r["status_codes"])
        assert connections <= 4, path  # kept alive: at most max_connections were ever opened


def test_status_codes_are_counted_as_sent():
    r, _ = load(keep_alive, "/missing")
    assert r["status_codes"] == {"404": 20} and r["success_ratio"] == 0.0


def test_a_close_delimited_body_opens_a_new_connection_each_time():
    r, connections = load(close_delimited, "/")
    assert r["status_codes"] == {"200": 20} and connections == 20
