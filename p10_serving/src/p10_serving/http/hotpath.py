"""The hot path: raw ASGI handlers for the three routes that carry the traffic, in front of FastAPI.

    POST /v1/models/{name}/predict
    POST /predict
    POST /v2/models/{name}[/versions/{version}]/infer

FastAPI's per-request machinery (the middleware stack, the route table scan, dependency solving, Request and
Response objects, pydantic) cost more CPU here than the model itself on a small bundle; these handlers do only
what the request needs: split the path, check the headers, read the body, call the Service (the same code the
documented FastAPI routes call), send two messages, count the response. Everything else goes to FastAPI, which
still owns /docs, the schemas and the slow routes.
"""

from __future__ import annotations

import time

import orjson

from ..metrics import Metrics
from ..service import Service
from .auth import Auth, Denied, token_from_headers
from .errors import answer
from .guard import CLIENT_CLOSED, Disconnected, Refused, check_headers, read_body

JSON_HEADERS = [(b"content-type", b"application/json")]


def route(method: str, path: str) -> tuple | None:
    """(kind, name, version) for a hot route, else None."""
    if method != "POST":
        return None
    if path == "/predict":
        return ("default", None, None)
    parts = path.split("/")  # "", "v1", "models", name, "predict"  |  "", "v2", "models", name, [versions, v,] infer
    if len(parts) == 5 and parts[1] == "v1" and parts[2] == "models" and parts[4] == "predict" and parts[3]:
        return ("v1", parts[3], None)
    if parts[1:3] == ["v2", "models"] and parts[-1] == "infer" and parts[3]:
        if len(parts) == 5:
            return ("v2", parts[3], None)
        if len(parts) == 7 and parts[4] == "versions" and parts[5]:
            return ("v2", parts[3], parts[5])
    return None


class HotPath:
    def __init__(self, app, service: Service, metrics: Metrics, max_body_bytes: int, known, auth: Auth):
        self.app, self.service, self.metrics, self.limit, self.known = app, service, metrics, max_body_bytes, known
        self.auth = auth

    async def __call__(self, scope, receive, send):
        hot = route(scope["method"], scope["path"]) if scope["type"] == "http" else None
        if hot is None:
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        kind, name, version = hot
        model = name if name in self.known else "_unknown"
        headers = JSON_HEADERS
        try:
            if self.auth.api_key.on:
                self.auth.check_predict(token_from_headers(scope["headers"]))
            binary = check_headers(scope["headers"], self.limit)
            raw = await read_body(receive, self.limit)
            if kind == "v1":
                model, body = await self.service.predict(name, raw, start)
            elif kind == "default":
                model, body = await self.service.predict_default(raw, start)
            else:
                model, body, extra = await self.service.infer(name, version, raw, binary, start)
                headers = [(k.encode(), v.encode()) for k, v in extra.items()] or JSON_HEADERS
            status = 200
        except Disconnected:
            self.metrics.response(model, CLIENT_CLOSED, time.perf_counter() - start)
            return
        except Refused as err:
            status, body = err.status, orjson.dumps({"error": str(err)})
        except Denied as err:
            status, body = err.status_code, orjson.dumps({"error": err.detail})
            headers = JSON_HEADERS + [(k.encode(), v.encode()) for k, v in (err.headers or {}).items()]
        except Exception as err:  # noqa: BLE001 - every failure is an answer from the one error table
            status, error, extra = answer(err, scope["path"])
            body = orjson.dumps(error)
            headers = JSON_HEADERS + [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
        await send({"type": "http.response.start", "status": status,
                    "headers": [*headers, (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
        self.metrics.response(model, status, time.perf_counter() - start)
