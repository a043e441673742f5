"""Pure ASGI middleware (no per-request task switching): request ids, body limits and the
security headers."""

from __future__ import annotations

import re
import uuid

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from backorder.api.problems import problem_body

_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


# The HTML pages (/docs, /redoc) are static: no input of anyone's reaches them. The API's JSON
# answers carry no CSP: a browser never runs them.
HTML_CSP = (
    # Every script, style and font of /docs and /redoc comes from this origin (docs_ui); the
    # inline styles are Swagger UI's and ReDoc's own, ReDoc's search runs in a blob: worker.
    "default-src 'none'; "
    "script-src 'self'; "
    "style-src 'self' 'unsafe-inline'; "
    "font-src 'self' data:; "
    "img-src 'self' data:; "
    "connect-src 'self'; worker-src 'self' blob:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
_ALWAYS = [(b"x-content-type-options", b"nosniff")]
_API = [*_ALWAYS, (b"cache-control", b"no-store")]
_HTML = [
    *_ALWAYS,
    (b"content-security-policy", HTML_CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
_HTML_OWN_CSP = [h for h in _HTML if h[0] != b"content-security-policy"]


class ResponseHeadersMiddleware:
    """The headers every answer carries, added in one pass over the response start:
    `X-Request-ID` (the caller's, if sent and sane), `nosniff`, `no-store` on /v1/* (answers
    carry orders, keys, secrets: no cache between the service and the client may keep them),
    and a CSP and `X-Frame-Options` on the HTML pages."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                if _SAFE_ID.match(candidate):
                    request_id = candidate
                break
        request_id = request_id or uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        id_header = (b"x-request-id", request_id.encode())
        api = scope["path"].startswith("/v1/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.get("headers", [])
                if api:
                    extra = _API
                elif any(n == b"content-type" and v.startswith(b"text/html") for n, v in headers):
                    # A page that states its own CSP (the console's forms post to 'self')
                    # keeps it: two policies would both apply, the stricter one winning.
                    own = any(n == b"content-security-policy" for n, _ in headers)
                    extra = _HTML_OWN_CSP if own else _HTML
                else:
                    extra = _ALWAYS
                message["headers"] = [*headers, id_header, *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _BodyTooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """Refuse bodies over the limit with a 413 problem: unread when Content-Length says so,
    else (a chunked body) as soon as the bytes read pass the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        chunked = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                if value.isdigit() and int(value) > self.max_bytes:
                    await self._refuse(scope, send)
                    return
                # The server holds the body to its Content-Length: nothing more to count.
                await self.app(scope, receive, send)
                return
            if name == b"transfer-encoding":
                chunked = True
        if chunked:
            await self._counted(scope, receive, send)
        else:  # neither header: no body (HTTP/1.1)
            await self.app(scope, receive, send)

    async def _counted(self, scope: Scope, receive: Receive, send: Send) -> None:
        read = 0
        over = started = False

        async def counting_receive() -> Message:
            nonlocal read, over
            message = await receive()
            if message["type"] == "http.request":
                read += len(message.get("body", b""))
                if read > self.max_bytes:
                    over = True
                    raise _BodyTooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if over:
                # Whatever the app made of the cut-off body, the answer is the 413.
                if message["type"] == "http.response.start" and not started:
                    started = True
                    await self._refuse(scope, send)
                return
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, guarded_send)
        except _BodyTooLarge:
            if not started:
                await self._refuse(scope, send)

    async def _refuse(self, scope: Scope, send: Send) -> None:
        body = problem_body(
            413,
            "payload_too_large",
            f"request body over {self.max_bytes} bytes",
            request_id=scope.get("state", {}).get("request_id"),
        )
        payload = orjson.dumps(body)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/problem+json"),
                    (b"content-length", str(len(payload)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
