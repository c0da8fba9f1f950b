"""What every request passes before the app reads a byte of its body: authentication, rate limits, size limits.

An ASGI middleware, so that a request that will be refused costs no more than its headers:

- `/v1/...`: the bearer key is looked up: 401 without a valid one. Each failed attempt takes a token from
  its address's bucket (HEADSHOT_AUTH_FAILURES_PER_MINUTE); an address whose bucket is empty gets 429 before
  its key is even looked up. Then the key's own rate limit (429).
- `POST /verify` (the public page): the address's rate limit (429, as the page).
- Every request: a URL holding control characters is refused (422); a body is limited by its route
  (`body_limit`): a declared Content-Length over the limit is refused at once (413) and a body sent without
  one (chunked) is counted as the app reads it, and refused once past the limit.

The address is the connection's, or the one a proxy in HEADSHOT_TRUSTED_PROXIES forwarded (`headshot serve`
tells uvicorn whom to trust; nobody by default). The caller it authenticated reaches the routes as
`request.state.caller` (service/deps.py).
"""

import datetime as dt
import re
from dataclasses import dataclass

from fastapi import HTTPException
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.deps import Caller, hash_key
from service.routes.verify import MAX_BATCH, message_response
from service.text import unsafe_character

MAX_JSON_BODY = 32 * 1024  # every JSON body the API takes is far smaller
MULTIPART_ROOM = 16 * 1024  # a file's multipart headers and boundaries, beside the file itself
# Routes that take uploaded files, and how many at most; every other route takes at most MAX_JSON_BODY.
UPLOAD_ROUTES = {
    ("POST", "/v1/verify"): 1,
    ("POST", "/v1/verify/batch"): MAX_BATCH,
    ("POST", "/v1/subjects/{subject_id}/photos"): 1,
    ("POST", "/v1/audit/lookup"): 1,
    ("POST", "/v1/audit/training-lookup"): 1,
    ("POST", "/verify"): 1,
}
_UPLOAD_PATTERNS = [
    (method, re.compile(re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), files)
    for (method, path), files in UPLOAD_ROUTES.items()
]
PUBLIC_PAGE = "/verify"


@dataclass(frozen=True)
class Limiters:
    keys: object  # requests per key
    public: object  # uploads per address on the public page
    auth_failures: object  # failed authentications per address


class BodyTooLarge(HTTPException):
    """Raised while the app reads a body that passes its route's limit (FastAPI answers it as a 413)."""

    def __init__(self, limit: int):
        super().__init__(413, _too_large(limit))


def body_limit(method: str, path: str, max_upload_bytes: int) -> int:
    """The most bytes a request to this route may send."""
    for route_method, pattern, files in _UPLOAD_PATTERNS:
        if method == route_method and pattern.match(path):
            return files * (max_upload_bytes + MULTIPART_ROOM)
    return MAX_JSON_BODY


def largest_body(max_upload_bytes: int) -> int:
    """The most bytes any route takes (a full batch)."""
    return max(files for files in UPLOAD_ROUTES.values()) * (max_upload_bytes + MULTIPART_ROOM)


class RequestGuard:
    def __init__(self, app: ASGIApp, services):
        self.app = app
        self.services = services
        self.settings = services.settings
        self.limiters = services.limiters

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = scope["path"], scope["method"]
        page = path == PUBLIC_PAGE
        address = scope["client"][0] if scope.get("client") else "unknown"
        if (character := unsafe_character(path)) is not None:
            refusal = f"the URL contains the control character U+{ord(character):04X}"
            await _refuse(scope, receive, send, 422, refusal, page=False)
            return
        if path.startswith("/v1/"):
            caller_or_refusal = await run_in_threadpool(self._authenticate, Headers(scope=scope), address)
            if isinstance(caller_or_refusal, Refusal):
                await _refuse(scope, receive, send, *caller_or_refusal.answer, page=False)
                return
            scope.setdefault("state", {})["caller"] = caller_or_refusal
        elif page and method == "POST":
            limiter = self.limiters.public
            if wait := await run_in_threadpool(limiter.take, address):
                retry = limiter.retry_after(wait)
                message = f"Too many checks from your address; try again in {retry} seconds."
                await _refuse(scope, receive, send, 429, message, {"Retry-After": retry}, page=True)
                return
        limit = body_limit(method, path, self.settings.max_upload_bytes)
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _refuse(scope, receive, send, 413, _too_large(limit), page=page)
            return
        await self.app(scope, _counted(receive, limit), send)

    def _authenticate(self, headers: Headers, address: str) -> "Caller | Refusal":
        """The caller behind the bearer key, or why not (runs in a worker thread: it reads the database)."""
        from sqlmodel import Session, select

        from service.tables import ApiKey

        failures = self.limiters.auth_failures
        if wait := failures.wait(address):
            return Refusal.too_many_failures(failures.retry_after(wait), self.settings.auth_failures_per_minute)
        scheme, _, key = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return self._failed(address, "missing API key: send `Authorization: Bearer <key>`")
        try:
            with Session(self.services.engine) as session:
                row = session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(key.strip()))).first()
        except SQLAlchemyError:
            return Refusal(503, "the database is busy or unreachable; retry shortly", {"Retry-After": "5"})
        now = dt.datetime.now(dt.UTC)
        if row is None or row.revoked_at is not None or (row.expires_at and _aware(row.expires_at) <= now):
            return self._failed(address, "invalid, revoked or expired API key")
        keys = self.limiters.keys
        if wait := keys.take(row.id):
            retry = keys.retry_after(wait)
            return Refusal(
                429,
                f"rate limit of {self.settings.rate_limit_per_minute} requests per minute for this key reached; "
                f"retry in {retry} s",
                {"Retry-After": retry},
            )
        return Caller(row.id, row.name, row.role, row.tenant)

    def _failed(self, address: str, detail: str) -> "Refusal":
        failures = self.limiters.auth_failures
        if wait := failures.take(address):
            return Refusal.too_many_failures(failures.retry_after(wait), self.settings.auth_failures_per_minute)
        return Refusal(401, detail, {"WWW-Authenticate": "Bearer"})


@dataclass(frozen=True)
class Refusal:
    status: int
    detail: str
    headers: dict | None = None

    @property
    def answer(self) -> tuple[int, str, dict | None]:
        return self.status, self.detail, self.headers

    @classmethod
    def too_many_failures(cls, retry: str, per_minute: int) -> "Refusal":
        return cls(
            429,
            f"more than {per_minute} requests a minute from your address had no valid API key; retry in {retry} s",
            {"Retry-After": retry},
        )


async def _refuse(
    scope: Scope, receive: Receive, send: Send, status: int, detail: str, headers=None, *, page: bool
) -> None:
    """Answer without reading the body: the public page as HTML, everything else as `{"detail": ...}`."""
    if page:
        response = message_response(detail, status, headers)
    else:
        response = JSONResponse({"detail": detail}, status_code=status, headers=headers)
    await response(scope, receive, send)


def _counted(receive: Receive, limit: int) -> Receive:
    """`receive`, refusing a body (chunked, or longer than it declared) once it passes `limit` bytes."""
    received = 0

    async def counted() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(limit)
        return message

    return counted


def _too_large(limit: int) -> str:
    return f"the request body is over the limit of {limit:,} bytes for this endpoint; send less"


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)
