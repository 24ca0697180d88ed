"""Loopback helpers for starting a server in tests, benches and tools: a free port, and waiting until the
server answers. Standard library only."""

from __future__ import annotations

import http.client
import socket
import time
import urllib.error
import urllib.request

from .errors import DlmError


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now (the OS picks it; another process could still take
    it before the caller binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http_ready(url: str, timeout: float = 60.0, proc=None) -> None:
    """Poll `url` (e.g. http://127.0.0.1:PORT/v2/health/ready) every ~0.1 s until it answers 200. DlmError
    after `timeout` seconds, or as soon as `proc` (the server's subprocess.Popen, if given) has exited."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while True:
        if proc is not None and proc.poll() is not None:
            raise DlmError(f"the server for {url} exited with code {proc.returncode} before it was ready")
        try:
            with urllib.request.urlopen(url, timeout=max(0.1, min(2.0, deadline - time.monotonic()))) as r:
                if r.status == 200:
                    return
                last = f"HTTP {r.status}"
        except urllib.error.HTTPError as err:  # 4xx/5xx: up, but not ready
            last = f"HTTP {err.code}"
            err.close()
        except (urllib.error.URLError, http.client.HTTPException, OSError) as err:
            last = str(getattr(err, "reason", err))
        if time.monotonic() >= deadline:
            raise DlmError(f"{url} did not answer 200 within {timeout:g} s (last: {last})")
        time.sleep(0.1)
