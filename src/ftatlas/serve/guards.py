"""Safety around the API: settings, bearer auth, body size limit, admission (429) and error answers.

The middlewares are plain ASGI so they also guard streaming responses and work when the app is mounted
inside another one (the UI). No handler's stack trace reaches a client: unexpected errors answer a generic
500 in the OpenAI error shape and are logged on the server.
"""

from __future__ import annotations

import hmac
import json
import logging
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ftatlas.serve.schemas import ApiError

log = logging.getLogger("ftatlas.serve")


@dataclass
class Limits:
    """What one request may ask for and how many may be in the server at once."""

    api_key: str | None = None  # bearer token required on /v1/* when set
    max_body_bytes: int = 1 << 20
    max_tokens: int = 1024  # the most a request may ask to generate (per choice)
    default_max_tokens: int = 256  # when a request does not say (as `ftatlas chat`)
    max_prompt_tokens: int = 4096
    max_n: int = 8
    max_queue: int = 64  # requests admitted at once (running + waiting); more get 429
    request_timeout_s: float = 120.0
    retry_after_s: int = 1

    def __post_init__(self) -> None:
        for name in ("max_body_bytes", "max_tokens", "default_max_tokens", "max_prompt_tokens", "max_n",
                     "max_queue"):
            if getattr(self, name) < 1:
                raise ValueError(f"serve limit {name} must be >= 1, got {getattr(self, name)}")
        if self.request_timeout_s <= 0:
            raise ValueError(f"serve limit request_timeout_s must be > 0, got {self.request_timeout_s}")


class Gate:
    """Admission: at most ``limit`` requests inside at once. The event loop is single-threaded, so a plain
    counter is enough."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        self.limit, self.retry_after_s, self.inside = limit, retry_after_s, 0

    def enter(self) -> None:
        if self.inside >= self.limit:
            raise ApiError(429, f"the server is at its limit of {self.limit} concurrent requests; retry later",
                           code="queue_full", headers={"Retry-After": str(self.retry_after_s)})
        self.inside += 1

    def leave(self) -> None:
        self.inside -= 1


async def _send_json(send: Any, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
    raw = json.dumps(body).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode())]
    hdrs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": raw})


class GuardMiddleware:
    """Bearer auth (constant-time compare) on every path but /health, and the request body size limit."""

    def __init__(self, app: Any, limits: Limits) -> None:
        self.app, self.limits = app, limits
        self.key = limits.api_key.encode() if limits.api_key else None

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        if self.key is not None and not scope["path"].endswith("/health"):
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, b"Bearer " + self.key):
                err = ApiError(401, "missing or invalid API key (send 'Authorization: Bearer <key>')",
                               code="invalid_api_key")
                await _send_json(send, 401, err.body(), {"WWW-Authenticate": "Bearer"})
                return
        limit = self.limits.max_body_bytes
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            await _send_json(send, 413, _too_large(limit).body())
            return
        await self.app(scope, _bounded(receive, limit), send)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"request body is over the limit of {limit} bytes", code="request_too_large")


def _bounded(receive: Any, limit: int) -> Any:
    """A receive that refuses a body (e.g. chunked, no content-length) once it passes ``limit`` bytes."""
    seen = 0

    async def wrapped() -> dict:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise _too_large(limit)
        return message

    return wrapped


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api(_: Request, e: ApiError) -> JSONResponse:
        return JSONResponse(e.body(), status_code=e.status, headers=e.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0] if e.errors() else {}
        loc = [str(x) for x in first.get("loc", ()) if x != "body"]
        param = ".".join(loc) or None
        msg = f"{param}: {first.get('msg', 'invalid value')}" if param else first.get("msg", "invalid request")
        return JSONResponse(ApiError(400, msg, param, "invalid_value").body(), status_code=400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, e: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(e.status_code)
        return JSONResponse(ApiError(e.status_code, str(e.detail), code=code).body(), status_code=e.status_code)

    @app.exception_handler(Exception)
    async def _internal(_: Request, e: Exception) -> JSONResponse:
        log.exception("unhandled error")  # the trace stays in the server log
        return JSONResponse(ApiError(500, "internal server error").body(), status_code=500)
