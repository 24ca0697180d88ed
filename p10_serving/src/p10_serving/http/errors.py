"""One table from exceptions to HTTP answers, shared by the hot path and FastAPI's handlers: always
{"error": "..."} saying what is wrong, never a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from dlm_core.predictors import BadInput, InputTooLarge

from ..batcher import QueueFull, RequestTimeout, ShuttingDown
from ..deployment import ModelNotFound, TooLarge
from ..lifecycle import Conflict
from ..service import Invalid
from ..v2 import TooManyRows

log = logging.getLogger("p10_serving")
RETRY = {"Retry-After": "1"}
STATUS: dict[type, tuple[int, dict | None]] = {
    BadInput: (400, None), ModelNotFound: (404, None), Conflict: (409, None), Invalid: (422, None),
    TooLarge: (413, None), InputTooLarge: (413, None), TooManyRows: (413, None), QueueFull: (503, RETRY),
    ShuttingDown: (503, RETRY), RequestTimeout: (504, None)}


def answer(exc: Exception, path: str = "") -> tuple[int, dict, dict | None]:
    """(status, {"error": ...}, extra headers) for an exception raised while handling a request."""
    for cls in type(exc).__mro__:
        if cls in STATUS:
            status, headers = STATUS[cls]
            return status, {"error": str(exc)}, headers
    log.error("internal error on %s", path, exc_info=exc)
    return 500, {"error": f"internal error ({exc.__class__.__name__}); see the server log"}, None


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status, headers=headers)


def install(app: FastAPI) -> None:
    """FastAPI's exception handlers, from the same table."""

    async def known(request: Request, exc: Exception):
        status, body, headers = answer(exc, request.url.path)
        return JSONResponse(body, status, headers=headers)

    async def http_error(request: Request, exc: HTTPException):
        return error(exc.status_code, str(exc.detail), exc.headers)

    async def invalid(request: Request, exc: RequestValidationError):
        errs = exc.errors()
        bad_json = [e for e in errs if e.get("type") == "json_invalid"]
        if bad_json:
            return error(400, f"body is not valid JSON: {bad_json[0].get('ctx', {}).get('error', bad_json[0]['msg'])}")
        where = lambda e: ".".join(str(x) for x in e["loc"] if x != "body") or "body"  # noqa: E731
        return error(422, "; ".join(f"{where(e)}: {e['msg']}" for e in errs[:5]))

    for cls in (*STATUS, Exception):
        app.add_exception_handler(cls, known)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
