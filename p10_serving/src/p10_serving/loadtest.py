"""run_loadtest: an open-loop load generator, by hand on httpx + asyncio (what vegeta does).

Open loop: request i is SCHEDULED at t0 + i / rate whatever happened to the earlier ones, and its latency is
measured from that scheduled time, not from when it actually left. A closed loop (send, wait, send again)
slows down with the server and hides the queueing a real user would see ("coordinated omission").

The run: `warmup` seconds whose requests are sent but not counted, then `duration` seconds measured; bounded
by `max_requests` and by the request timeout. Loopback only: this tool is not for loading other machines.
"""

from __future__ import annotations

import asyncio
import collections
import ipaddress
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


async def run_load(url: str, body: dict, rate: float, duration: float, warmup: float = 1.0,
                   max_requests: int = 100_000, timeout: float = 10.0, max_connections: int = 256) -> dict:
    """Offer `rate` requests/s of POST `body` to `url`; the report and the raw samples."""
    import httpx

    check_loopback(url)
    if rate <= 0 or duration <= 0 or warmup < 0:
        raise DlmError("--rate and --duration must be > 0, --warmup >= 0")
    total = min(int(math.ceil(rate * (warmup + duration))), max_requests)
    samples = []  # (scheduled offset s, latency ms, status or error name, measured?)
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        loop = asyncio.get_running_loop()

        async def one(i: int, scheduled: float) -> None:
            delay = scheduled - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            try:
                r = await client.post(url, json=body)
                code = str(r.status_code)
            except httpx.TimeoutException:
                code = "timeout"
            except httpx.HTTPError as err:
                code = err.__class__.__name__
            samples.append((scheduled - t0, (loop.time() - scheduled) * 1000, code, scheduled - t0 >= warmup))

        t0 = loop.time() + 0.05
        tasks = [asyncio.ensure_future(one(i, t0 + i / rate)) for i in range(total)]
        await asyncio.gather(*tasks)
        finished = loop.time() - t0
    return report(samples, rate, warmup, duration, finished)


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
