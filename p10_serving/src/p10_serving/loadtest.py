"""run_loadtest: an open-loop load generator, by hand on asyncio (what vegeta does).

Open loop: request i is SCHEDULED at t0 + i / rate whatever happened to the earlier ones, and its latency is
measured from that scheduled time, not from when it actually left. A closed loop (send, wait, send again)
slows down with the server and hides the queueing a real user would see ("coordinated omission").

The run: `warmup` seconds whose requests are sent but not counted, then `duration` seconds measured; bounded
by `max_requests` and by the request timeout. Loopback only: this tool is not for loading other machines.

The client is raw HTTP/1.1 over asyncio streams with keep-alive connections (a pool of at most
`max_connections`), one prebuilt request, no HTTP library: the generator must cost far less per request than
the server it measures (httpx's AsyncClient, used before, fell far behind the offered rate on 2 cores: see
the README's Bench section).
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import json
import math
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from dlm_core.errors import DlmError


def check_loopback(url: str) -> None:
    """DlmError unless every address the URL's host resolves to is a loopback address."""
    host = urlsplit(url).hostname
    if not host:
        raise DlmError(f"{url!r} is not an http URL")
    try:
        addrs = {info[4][0] for info in socket.getaddrinfo(host, None)}
    except socket.gaierror as err:
        raise DlmError(f"cannot resolve {host!r}: {err}") from None
    if not all(ipaddress.ip_address(a.split("%")[0]).is_loopback for a in addrs):
        raise DlmError(f"run_loadtest only loads this machine; {host!r} is not a loopback address")


def percentiles(latencies_ms: list[float]) -> dict:
    if not latencies_ms:
        return {k: None for k in ("p50", "p90", "p95", "p99", "max", "mean")}
    a = np.asarray(latencies_ms)
    q = np.percentile(a, [50, 90, 95, 99])
    return {"p50": float(q[0]), "p90": float(q[1]), "p95": float(q[2]), "p99": float(q[3]),
            "max": float(a.max()), "mean": float(a.mean())}


# ------------------------------------------------------------------------------------ raw HTTP/1.1 client
class Connection:
    """One keep-alive HTTP/1.1 connection: send the prebuilt request, read one response, return its status."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer = reader, writer
        self.reusable = True

    async def exchange(self, request: bytes) -> int:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
        if headers.get("connection", "").lower() == "close":
            self.reusable = False
        if "content-length" in headers:
            await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await self.reader.readexactly(size + 2)  # the chunk and its CRLF (the last one: just CRLF)
                if size == 0:
                    break
        else:  # the body ends when the server closes the connection
            await self.reader.read()
            self.reusable = False
        return status

    def close(self) -> None:
        self.writer.close()


def build_request(url: str, body: dict) -> tuple[str, int, bytes]:
    """(host, port, the request's bytes) for POST `body` as JSON to `url`."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise DlmError(f"{url!r}: only plain http:// URLs are supported")
    host, port = parts.hostname, parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    data = json.dumps(body, separators=(",", ":")).encode()
    head = (f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: keep-alive\r\n\r\n")
    return host, port, head.encode() + data


async def run_load(url: str, body: dict, rate: float, duration: float, warmup: float = 1.0,
                   max_requests: int = 100_000, timeout: float = 10.0, max_connections: int = 256) -> dict:
    """Offer `rate` requests/s of POST `body` to `url`; the report and the raw samples."""
    check_loopback(url)
    if rate <= 0 or duration <= 0 or warmup < 0:
        raise DlmError("--rate and --duration must be > 0, --warmup >= 0")
    host, port, request = build_request(url, body)
    total = min(int(math.ceil(rate * (warmup + duration))), max_requests)
    samples = []  # (scheduled offset s, latency ms, status or error name, measured?)
    loop = asyncio.get_running_loop()
    # the pool: live connections, most recent on top, and one None per connection not open yet
    pool: asyncio.LifoQueue[Connection | None] = asyncio.LifoQueue()
    for _ in range(max_connections):
        pool.put_nowait(None)

    async def one(scheduled: float) -> None:
        conn, taken, code = None, False, "timeout"
        try:
            async with asyncio.timeout(timeout):
                conn = await pool.get()  # waits (the clock runs) while every connection is busy
                taken = True
                if conn is None:
                    conn = Connection(*await asyncio.open_connection(host, port))
                code = str(await conn.exchange(request))
        except TimeoutError:
            pass
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError) as err:
            code = err.__class__.__name__
        if taken:  # hand the connection back, or its slot if it cannot serve another request
            if conn is not None and code.isdigit() and conn.reusable:
                pool.put_nowait(conn)
            else:
                if conn is not None:
                    conn.close()
                pool.put_nowait(None)
        samples.append((scheduled - t0, (time.perf_counter() - scheduled) * 1000, code, scheduled - t0 >= warmup))

    # the scheduler: request i leaves at t0 + i / rate, late or not (its latency counts from that time)
    t0 = time.perf_counter() + 0.05
    tasks = set()
    for i in range(total):
        scheduled = t0 + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = loop.create_task(one(scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    while tasks:
        await asyncio.gather(*list(tasks))
    finished = time.perf_counter() - t0
    while not pool.empty():
        conn = pool.get_nowait()
        if conn is not None:
            conn.close()
    return report(samples, rate, warmup, duration, finished)


def run(url: str, body: dict, rate: float, duration: float, warmup: float = 1.0, max_requests: int = 100_000,
        timeout: float = 10.0, max_connections: int = 256) -> dict:
    """run_load on a fresh event loop (uvloop's when installed: a cheaper client); the report also says how
    much CPU this process spent (`client_cpu_s`), so a bench can tell the client's cost from the server's."""
    try:
        import uvloop
        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    cpu = time.process_time()
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(run_load(url, body, rate, duration, warmup, max_requests, timeout, max_connections))
    result["client_cpu_s"] = time.process_time() - cpu
    return result


def report(samples: list[tuple], rate: float, warmup: float, duration: float, finished: float) -> dict:
    measured = sorted(s for s in samples if s[3])
    codes = collections.Counter(s[2] for s in measured)
    ok = [s for s in measured if s[2].startswith("2")]
    window = max(min(duration, (measured[-1][0] - warmup) + 1 / rate) if measured else duration, 1e-9)
    # throughput: successes over the time from the window's start to the last measured answer
    last_done = max((s[0] + s[1] / 1000 for s in measured), default=warmup + window)
    return {
        "offered_rate": len(measured) / window,
        "throughput": len(ok) / max(last_done - warmup, 1e-9),
        "requests": len(measured), "warmup_requests": len(samples) - len(measured),
        "success_ratio": len(ok) / len(measured) if measured else 0.0,
        "status_codes": dict(sorted(codes.items())),
        "latency_ms": percentiles([s[1] for s in measured]),
        "latency_ms_success": percentiles([s[1] for s in ok]),
        "duration_s": duration, "warmup_s": warmup, "wall_s": finished,
        "samples": [{"t": round(s[0], 4), "ms": round(s[1], 3), "code": s[2]} for s in measured],
    }


def plot(result: dict, path: str | Path, title: str = "") -> Path:
    """Latency of every measured request against its scheduled time (errors in red), with a rolling p99."""
    from dlm_core.plotting import plt, save_figure

    pyplot = plt()
    fig, ax = pyplot.subplots(figsize=(7, 3.6))
    s = result["samples"]
    good = [(x["t"], x["ms"]) for x in s if x["code"].startswith("2")]
    bad = [(x["t"], x["ms"]) for x in s if not x["code"].startswith("2")]
    if good:
        ax.scatter(*zip(*good), s=4, alpha=0.5, label="2xx")
        t, ms = np.array(good).T
        w = max(len(ms) // 50, 20)
        if len(ms) > 2 * w:
            p99 = [np.percentile(ms[i:i + w], 99) for i in range(0, len(ms) - w + 1, w)]
            ax.plot(t[w - 1::w][:len(p99)], p99, color="k", lw=1, label=f"p99 per {w} requests")
    if bad:
        ax.scatter(*zip(*bad), s=6, color="tab:red", label="errors")
    ax.set_yscale("log")
    ax.set_xlabel("scheduled send time (s)")
    ax.set_ylabel("latency (ms, from scheduled time)")
    ax.set_title(title or f"offered {result['offered_rate']:.0f} req/s, achieved {result['throughput']:.0f} req/s, "
                 f"p99 {result['latency_ms']['p99'] or 0:.1f} ms")
    ax.legend(loc="upper left", markerscale=3)
    return save_figure(fig, path)


def summary(r: dict) -> str:
    lat = r["latency_ms"]
    fmt = lambda v: "-" if v is None else f"{v:.2f}"
    return (f"requests {r['requests']} (+{r['warmup_requests']} warm-up)  offered {r['offered_rate']:.1f}/s  "
            f"throughput {r['throughput']:.1f}/s  success {r['success_ratio']:.2%}  codes {r['status_codes']}\n"
            f"latency ms  p50 {fmt(lat['p50'])}  p90 {fmt(lat['p90'])}  p95 {fmt(lat['p95'])}  "
            f"p99 {fmt(lat['p99'])}  max {fmt(lat['max'])}")


def wait_ready(base_url: str, timeout: float = 60.0) -> None:
    """Poll /v2/health/ready until the server answers 200 (DlmError after `timeout` seconds)."""
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base_url}/v2/health/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise DlmError(f"the server at {base_url} was not ready within {timeout:g} s")
