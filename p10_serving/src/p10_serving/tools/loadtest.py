"""run_loadtest: an open-loop load generator, by hand on asyncio (what vegeta does).

Open loop: request i is SCHEDULED at t0 + i / rate whatever happened to the earlier ones, and its latency is
measured from that scheduled time, not from when it actually left. A closed loop (send, wait, send again)
slows down with the server and hides the queueing a real user would see ("coordinated omission").

The run: `warmup` seconds whose requests are sent but not counted, then `duration` seconds measured; bounded
by `max_requests` and by the request timeout. Loopback only: this tool is not for loading other machines.

The client is raw HTTP/1.1 over asyncio streams with keep-alive connections (a pool of at most
`max_connections`), one prebuilt request, no HTTP library: the generator must cost far less per request than
the server it measures (httpx's AsyncClient, used before, fell far behind the offered rate on 2 cores: see
the README's Bench section). A reused connection the server closed while idle is reopened and the request
sent again, once (Connection.exchange; counted as `reconnects`).

The console script run_loadtest is `main` here (`--help` imports neither httpx nor matplotlib).
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
import json
import math
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import urlsplit

from dlm_core.config import ArgumentParser
from dlm_core.errors import DlmError, cli_entry


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
    import numpy as np

    if not latencies_ms:
        return {k: None for k in ("p50", "p90", "p95", "p99", "max", "mean")}
    a = np.asarray(latencies_ms)
    q = np.percentile(a, [50, 90, 95, 99])
    return {"p50": float(q[0]), "p90": float(q[1]), "p95": float(q[2]), "p99": float(q[3]),
            "max": float(a.max()), "mean": float(a.mean())}


# ------------------------------------------------------------------------------------ raw HTTP/1.1 client
# a reused keep-alive connection that the server closed while it sat idle (its keep-alive timeout) fails the next
# request in one of these ways before any byte of the reply arrives; that request never reached the application
STALE = (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class Connection:
    """One keep-alive HTTP/1.1 connection: send the prebuilt request, read one response, return its status.

    A REUSED connection that fails before the first byte of the reply arrived (EOF, reset, broken pipe: the
    server closed it while it sat idle in the pool) is reopened and the request sent again, once; `reconnects`
    counts those. A fresh connection's failure, or one after the reply began, is the request's error."""

    def __init__(self, host: str, port: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.host, self.port = host, port
        self.reader, self.writer = reader, writer
        self.reusable = True
        self.answered = 0  # responses read on this connection (0: fresh, nothing to retry)
        self.reconnects = 0

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        return cls(host, port, *await asyncio.open_connection(host, port))

    async def send(self, request: bytes) -> bytes:
        """Write the request; the reply's first byte (IncompleteReadError when the connection ends first)."""
        if self.reader.at_eof():  # the server's FIN is already here: do not write into a closed connection
            raise asyncio.IncompleteReadError(b"", None)
        self.writer.write(request)
        first = await self.reader.read(1)
        if not first:
            raise asyncio.IncompleteReadError(b"", None)
        return first

    async def exchange(self, request: bytes) -> int:
        if self.answered:
            try:
                first = await self.send(request)
            except STALE:
                self.writer.close()
                self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
                self.answered, self.reusable = 0, True
                self.reconnects += 1
                first = await self.send(request)
        else:
            first = await self.send(request)
        head = first + await self.reader.readuntil(b"\r\n\r\n")
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
        self.answered += 1
        return status

    def close(self) -> None:
        self.writer.close()


def build_request(url: str, body: dict | bytes, headers: dict[str, str] | None = None) -> tuple[str, int, bytes]:
    """(host, port, the request's bytes) for POST `body` to `url`: a dict as JSON, bytes as they are
    (application/octet-stream unless `headers` says otherwise; e.g. KServe v2 binary tensors with their
    Inference-Header-Content-Length)."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise DlmError(f"{url!r}: only plain http:// URLs are supported")
    host, port = parts.hostname, parts.port or 80
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    raw = isinstance(body, bytes)
    data = body if raw else json.dumps(body, separators=(",", ":")).encode()
    fields = {"Content-Type": "application/octet-stream" if raw else "application/json", **(headers or {})}
    extra = "".join(f"{k}: {v}\r\n" for k, v in fields.items())
    head = (f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{extra}"
            f"Content-Length: {len(data)}\r\nConnection: keep-alive\r\n\r\n")
    return host, port, head.encode() + data


# ------------------------------------------------------------------------------------ the open loop
async def open_loop(rate: float, n: int, send: Callable[[int, float], Awaitable], *, start: float | None = None,
                    stop: Callable[[int], bool] | None = None) -> int:
    """The open-loop scheduler (run_load's and run_fullstack's replay's): send i is due at
    `scheduled = start + i / rate` (time.perf_counter's clock; `start` defaults to now), for i = 0 .. n-1.
    When it is due, `send(i, scheduled)` is called and what it returns is awaited as a task of its own: the
    schedule never waits for an answer, and a send that is late (the loop was busy) goes as soon as it can
    (after one pass of the event loop) while the ones after it keep their times. `stop(i)`, asked when send i
    is due, ends the schedule early. Returns, once every send has finished, how many were sent; the first
    exception a send raised, if any, is raised then."""
    t0 = time.perf_counter() if start is None else start
    tasks: set[asyncio.Future] = set()
    errors: list[BaseException] = []

    def done(task: asyncio.Future) -> None:
        tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            errors.append(task.exception())

    sent = 0
    for i in range(n):
        scheduled = t0 + i / rate
        # sleep(0) when late: still yield once per send, so the sends already made start (and `stop` can change)
        # while the loop catches up, rather than a burst of sends nothing runs until the schedule is caught up
        await asyncio.sleep(max(0.0, scheduled - time.perf_counter()))
        if stop is not None and stop(i):
            break
        task = asyncio.ensure_future(send(i, scheduled))
        tasks.add(task)
        task.add_done_callback(done)
        sent += 1
    while tasks:
        await asyncio.wait(list(tasks))
    if errors:
        raise errors[0]
    return sent


async def run_load(url: str, body: dict | bytes, rate: float, duration: float, warmup: float = 1.0,
                   max_requests: int = 100_000, timeout: float = 10.0, max_connections: int = 256,
                   headers: dict[str, str] | None = None) -> dict:
    """Offer `rate` requests/s of POST `body` to `url`; the report and the raw samples."""
    check_loopback(url)
    if rate <= 0 or duration <= 0 or warmup < 0:
        raise DlmError("--rate and --duration must be > 0, --warmup >= 0")
    host, port, request = build_request(url, body, headers)
    total = min(int(math.ceil(rate * (warmup + duration))), max_requests)
    samples = []  # (scheduled offset s, latency ms, status or error name, measured?)
    reconnects = 0
    # the pool: live connections, most recent on top, and one None per connection not open yet
    pool: asyncio.LifoQueue[Connection | None] = asyncio.LifoQueue()
    for _ in range(max_connections):
        pool.put_nowait(None)

    async def one(i: int, scheduled: float) -> None:
        nonlocal reconnects
        conn, taken, code, before = None, False, "timeout", 0
        try:
            async with asyncio.timeout(timeout):
                conn = await pool.get()  # waits (the clock runs) while every connection is busy
                taken = True
                if conn is None:
                    conn = await Connection.open(host, port)
                before = conn.reconnects
                code = str(await conn.exchange(request))
        except TimeoutError:
            pass
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError) as err:
            code = err.__class__.__name__
        if conn is not None:
            reconnects += conn.reconnects - before
        if taken:  # hand the connection back, or its slot if it cannot serve another request
            if conn is not None and code.isdigit() and conn.reusable:
                pool.put_nowait(conn)
            else:
                if conn is not None:
                    conn.close()
                pool.put_nowait(None)
        samples.append((scheduled - t0, (time.perf_counter() - scheduled) * 1000, code, scheduled - t0 >= warmup))

    # request i leaves at t0 + i / rate, late or not (its latency counts from that time)
    t0 = time.perf_counter() + 0.05
    await open_loop(rate, total, one, start=t0)
    finished = time.perf_counter() - t0
    while not pool.empty():
        conn = pool.get_nowait()
        if conn is not None:
            conn.close()
    return report(samples, rate, warmup, duration, finished, reconnects=reconnects)


def run(url: str, body: dict | bytes, rate: float, duration: float, warmup: float = 1.0,
        max_requests: int = 100_000, timeout: float = 10.0, max_connections: int = 256,
        headers: dict[str, str] | None = None) -> dict:
    """run_load on a fresh event loop (uvloop's when installed: a cheaper client); the report also says how
    much CPU this process spent (`client_cpu_s`), so a bench can tell the client's cost from the server's."""
    try:
        import uvloop
        factory = uvloop.new_event_loop
    except ImportError:
        factory = None
    cpu = time.process_time()
    with asyncio.Runner(loop_factory=factory) as runner:
        result = runner.run(run_load(url, body, rate, duration, warmup, max_requests, timeout, max_connections,
                                     headers))
    result["client_cpu_s"] = time.process_time() - cpu
    return result


def report(samples: list[tuple], rate: float, warmup: float, duration: float, finished: float,
           reconnects: int = 0) -> dict:
    """The result of a run from its samples (scheduled offset s, latency ms, status or error name, measured?).
    `reconnects`: stale keep-alive connections reopened during the run (warm-up included)."""
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
        "success_ratio": len(ok) / len(measured) if measured else 0.0, "reconnects": reconnects,
        "status_codes": dict(sorted(codes.items())),
        "latency_ms": percentiles([s[1] for s in measured]),
        "latency_ms_success": percentiles([s[1] for s in ok]),
        "duration_s": duration, "warmup_s": warmup, "wall_s": finished,
        "samples": [{"t": round(s[0], 4), "ms": round(s[1], 3), "code": s[2]} for s in measured],
    }


def plot(result: dict, path: str | Path, title: str = "") -> Path:
    """Latency of every measured request against its scheduled time (errors in red), with a rolling p99."""
    import numpy as np

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
            f"throughput {r['throughput']:.1f}/s  success {r['success_ratio']:.2%}  codes {r['status_codes']}  "
            f"reconnects {r.get('reconnects', 0)}\n"
            f"latency ms  p50 {fmt(lat['p50'])}  p90 {fmt(lat['p90'])}  p95 {fmt(lat['p95'])}  "
            f"p99 {fmt(lat['p99'])}  max {fmt(lat['max'])}")


def parser() -> ArgumentParser:
    p = ArgumentParser(prog="run_loadtest", description="Open-loop load test of a local run_serve: a fixed offered "
                       "rate, latency from each request's scheduled send time, warm-up then a measured window. "
                       "Loopback addresses only.")
    p.add_argument("--url", default="http://127.0.0.1:8000", help="server base URL (default: http://127.0.0.1:8000)")
    p.add_argument("--model", default=None, help="model to load (default: the first the server lists)")
    p.add_argument("--body", default=None, help="JSON body to POST (default: the model's example input)")
    p.add_argument("--body-file", default=None, metavar="PATH", help="POST this file's bytes as they are instead "
                   "(e.g. KServe v2 binary tensors, with --header)")
    p.add_argument("--header", action="append", default=[], metavar="'NAME: VALUE'",
                   help="an extra request header (repeatable), e.g. 'Inference-Header-Content-Length: 213'")
    p.add_argument("--path", default=None, help="route to POST (default: /v1/models/MODEL/predict)")
    p.add_argument("--rate", type=float, default=50.0, help="offered requests per second (default: 50)")
    p.add_argument("--duration", type=float, default=5.0, help="measured seconds (default: 5)")
    p.add_argument("--warmup", type=float, default=1.0, help="warm-up seconds, not counted (default: 1)")
    p.add_argument("--max-requests", type=int, default=20_000, help="hard cap on requests sent (default: 20000)")
    p.add_argument("--timeout", type=float, default=10.0, help="per-request timeout in seconds (default: 10)")
    p.add_argument("--connections", type=int, default=256, help="max open connections (default: 256)")
    p.add_argument("--out", default=None, help="folder for loadtest.json and loadtest.png (default: none)")
    p.add_argument("--wait-ready", type=float, default=0.0, metavar="S",
                   help="first wait up to S seconds for the server to report ready (default: 0)")
    return p


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)

    import httpx

    from dlm_core.net import wait_http_ready

    base = args.url.rstrip("/")
    check_loopback(base)
    if args.duration > 600 or args.max_requests < 1:
        raise DlmError("--duration is at most 600 s and --max-requests at least 1")
    if any(":" not in h for h in args.header) or (args.body and args.body_file):
        raise DlmError("--header takes 'NAME: VALUE'; give --body or --body-file, not both")
    headers = dict((k.strip(), v.strip()) for k, v in (h.split(":", 1) for h in args.header))
    if args.wait_ready:
        wait_http_ready(f"{base}/v2/health/ready", timeout=args.wait_ready)
    try:
        model = args.model or httpx.get(f"{base}/v1/models", timeout=5).json()["models"][0]["name"]
        if args.body_file is not None:
            body = Path(args.body_file).read_bytes()
        elif args.body is not None:
            body = json.loads(args.body)
        else:
            r = httpx.get(f"{base}/v1/models/{model}", timeout=5)
            if r.status_code != 200:
                raise DlmError(f"the server says: {r.json().get('error', r.text)}")
            body = r.json()["example"]
    except httpx.HTTPError as err:
        raise DlmError(f"cannot reach {base}: {err}") from None
    except json.JSONDecodeError as err:
        raise DlmError(f"--body is not valid JSON: {err}") from None
    except OSError as err:
        raise DlmError(f"cannot read --body-file: {err}") from None
    url = base + (args.path or f"/v1/models/{model}/predict")
    print(f"loading {url} at {args.rate:g} req/s for {args.warmup:g} s warm-up + {args.duration:g} s", flush=True)
    result = run(url, body, args.rate, args.duration, args.warmup, args.max_requests, args.timeout,
                 args.connections, headers)  # the same path as the bench: uvloop, the client's CPU recorded
    result.update(url=url, model=model)
    print(summary(result))
    if args.out:
        from dlm_core.io import write_json

        out = Path(args.out)
        write_json(out / "loadtest.json", result)
        plot(result, out / "loadtest.png", title=f"{model}: " + summary(result).split("\n")[1])
        print(f"wrote {out / 'loadtest.json'} and {out / 'loadtest.png'}")
    return 0
