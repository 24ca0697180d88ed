"""Who may call what. Routes that change state (feedback, retrain, rollback, drift dumps) need the admin token as
`Authorization: Bearer TOKEN`; predict/infer routes stay open unless an API key is set, then they take
`Authorization: Bearer KEY` or `X-API-Key: KEY` (the admin token works there too). Missing credentials: 401 with
`WWW-Authenticate: Bearer`; wrong ones: 403; both with a JSON reason. Comparisons are constant-time.

Tokens come from a file (one per line: two lines while a token is being rotated; the file is read again when it
changes, so rotation needs no restart) or from an environment variable (DLM_ADMIN_TOKEN, DLM_API_KEY)."""

from __future__ import annotations

import hmac
import os
import time
from pathlib import Path

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException

from dlm_core.errors import DlmError

CHALLENGE = {"WWW-Authenticate": "Bearer"}
MIN_LENGTH = 16  # a guessable token is no token


class Denied(HTTPException):
    """401 (no credentials) or 403 (wrong ones), with a reason."""


class Secret:
    """One credential: tokens from a file (re-read when it changes, at most once a second) or fixed ones."""

    def __init__(self, what: str, file: str | os.PathLike | None = None, value: str | None = None):
        self.what, self.file, self.checked, self.mtime = what, Path(file) if file else None, 0.0, None
        self.tokens = tuple(t for t in [(value or "").strip()] if t)
        if self.tokens and len(self.tokens[0]) < MIN_LENGTH:
            raise DlmError(f"the {what} from the environment is shorter than {MIN_LENGTH} characters; use e.g. "
                           f"`openssl rand -hex 32`")
        if self.file:
            self.reload(force=True)

    def reload(self, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.checked < 1.0:
            return
        self.checked = now
        try:
            mtime = self.file.stat().st_mtime_ns
            if force or mtime != self.mtime:
                tokens = tuple(t.strip() for t in self.file.read_text().splitlines() if t.strip())
                if not tokens:
                    raise DlmError(f"the {self.what} file {self.file} is empty; write a token in it")
                if min(len(t) for t in tokens) < MIN_LENGTH:
                    raise DlmError(f"a {self.what} in {self.file} is shorter than {MIN_LENGTH} characters; use e.g. "
                                   f"`openssl rand -hex 32`")
                self.tokens, self.mtime = tokens, mtime
        except OSError as err:
            if force:
                raise DlmError(f"cannot read the {self.what} file {self.file}: {err.strerror}") from None
            # a file being replaced for a rotation: keep the tokens read last

    @property
    def on(self) -> bool:
        return bool(self.tokens)

    def matches(self, given: str) -> bool:
        if self.file:
            self.reload()
        # every token compared (no early exit), each in constant time
        return sum(hmac.compare_digest(given.encode(), t.encode()) for t in self.tokens) > 0


class Auth:
    def __init__(self, admin: Secret | None = None, api_key: Secret | None = None):
        self.admin, self.api_key = admin or Secret("admin token"), api_key or Secret("API key")

    @classmethod
    def from_sources(cls, admin_file=None, api_key_file=None, env=os.environ) -> Auth:
        return cls(Secret("admin token", admin_file, None if admin_file else env.get("DLM_ADMIN_TOKEN")),
                   Secret("API key", api_key_file, None if api_key_file else env.get("DLM_API_KEY")))

    def check_admin(self, token: str | None) -> None:
        if not self.admin.on:
            return
        if not token:
            raise Denied(401, "this route changes the server's state: send Authorization: Bearer <admin token>",
                         CHALLENGE)
        if not self.admin.matches(token):
            raise Denied(403, "the admin token is wrong")

    def check_predict(self, token: str | None) -> None:
        if not self.api_key.on:
            return
        if not token:
            raise Denied(401, "this server needs an API key: send Authorization: Bearer <key> or X-API-Key: <key>",
                         CHALLENGE)
        if not (self.api_key.matches(token) or (self.admin.on and self.admin.matches(token))):
            raise Denied(403, "the API key is wrong")


def token_from_headers(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The bearer token or X-API-Key of raw ASGI headers."""
    for k, v in headers:
        if k == b"authorization":
            scheme, _, value = v.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                return value.strip()
        elif k == b"x-api-key" and v.strip():
            return v.decode("latin-1").strip()
    return None


bearer = HTTPBearer(auto_error=False, scheme_name="admin token",
                    description="run_serve --admin-token-file FILE or DLM_ADMIN_TOKEN; needed by the routes that "
                                "change state (feedback, retrain, rollback, drift dumps)")
api_key = HTTPBearer(auto_error=False, scheme_name="API key",
                     description="only when the server has one (--api-key-file or DLM_API_KEY); X-API-Key works too")


def dependency(scheme: HTTPBearer, check: str, header: str | None = None):
    """A FastAPI dependency that runs Auth.<check> on the scheme's bearer token (or on `header` without one)."""

    async def verify(request: Request, creds: HTTPAuthorizationCredentials | None = Depends(scheme)) -> None:
        token = creds.credentials if creds else (request.headers.get(header) if header else None)
        getattr(request.app.state.ctx.auth, check)(token)

    return Depends(verify)


Admin = dependency(bearer, "check_admin")
PredictKey = dependency(api_key, "check_predict", header="x-api-key")
