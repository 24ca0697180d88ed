"""Checks every request body passes before any parsing, and the pure ASGI middleware that applies them to the
FastAPI routes (the hot path calls the same two functions itself):

    - a body's content type must be JSON (415), or anything with the KServe binary tensor extension's
      Inference-Header-Content-Length header; KServe clients that send no content type are read as JSON;
    - Content-Length over the limit is refused at once, and the streamed body is counted too (413);
    - a client that goes away mid-body is counted as 499 (client closed), not as a server error.
"""

from __future__ import annotations

import re
import time

from ..metrics import Metrics
from .errors import error

MODEL_PATH = re.compile(r"^/v[12]/models/([^/]+)/")
JSON_TYPE = re.compile(r"^application/([\w.+-]+\+)?json\s*(;|$)", re.I)
BINARY_HEADER = b"inference-header-content-length"
CLIENT_CLOSED = 499


class Refused(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class Disconnected(Exception):
    """The client went away before its body arrived."""


def check_headers(headers: list[tuple[bytes, bytes]], limit: int) -> int | None:
    """Refused(415/413/400) for a body that must not be read; else the binary header's JSON length (or None)."""
    content_type = length = binary = None
    for key, value in headers:
        if key == b"content-type":
            content_type = value
        elif key == b"content-length":
            length = value
        elif key == BINARY_HEADER:
            binary = value
    if binary is not None:
        if not binary.isdigit():
            raise Refused(400, f"Inference-Header-Content-Length must be a number of bytes, got {binary[:20]!r}")
    elif content_type and not JSON_TYPE.match(content_type.decode("latin-1")):
        raise Refused(415, f"content type {content_type.decode('latin-1')!r} is not supported; send "
                           "application/json (or binary tensors with Inference-Header-Content-Length)")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise Refused(413, f"body over the limit of {limit} bytes")
    return None if binary is None else int(binary)


async def read_body(receive, limit: int) -> bytes:
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise Refused(413, f"body over the limit of {limit} bytes")
        chunks.append(chunk)
        more = message.get("more_body", False)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class Guard:
    """In front of FastAPI: the checks above, and every response to a model route counted and timed by model and
    status (so errors show in /metrics too)."""

    def __init__(self, app, metrics: Metrics, known, max_body_bytes: int):
        self.app, self.metrics, self.known, self.limit = app, metrics, known, max_body_bytes

    def label(self, scope) -> str | None:
        if scope["state"].get("model"):  # set by the route once it knows the model
            return scope["state"]["model"]
        m = MODEL_PATH.match(scope["path"])
        if m:
            return m.group(1) if m.group(1) in self.known else "_unknown"
        return "_unknown" if scope["path"] == "/predict" else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        scope.setdefault("state", {})
        start, status = time.perf_counter(), 500

        async def send_status(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            if scope["method"] in ("POST", "PUT", "PATCH"):
                check_headers(scope["headers"], self.limit)
                body = await read_body(receive, self.limit)
                receive = replay(body, receive)
            await self.app(scope, receive, send_status)
        except Refused as err:
            await error(err.status, str(err))(scope, receive, send_status)
        except Disconnected:
            status = CLIENT_CLOSED
        finally:
            model = self.label(scope)
            if model:
                self.metrics.response(model, status, time.perf_counter() - start)


def replay(body: bytes, receive):
    """A `receive` that hands the app the body already read, then the connection's own messages."""
    sent = False

    async def receive_again():
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return receive_again
