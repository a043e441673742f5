"""The console's session: a signed cookie naming the API key it was opened with, checked
against PostgreSQL on every request, and the CSRF token of its forms.

The cookie holds no secret of the key: `<payload>.<HMAC-SHA256>`, the payload being
`[version, key id (or "master"), issued at, nonce, master fingerprint]`. The signature only
says that this service issued it; whether the key still works is asked of the database each
time (`keys.find_active_by_id`, never cached), so a revoked key is signed out by its very
next request. A stolen cookie is as good as the key for the console until it expires or the
key is revoked, which is why it is `HttpOnly`, `SameSite=Strict`, `Secure` over TLS, and
scoped to `/console`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import orjson
from fastapi import Request
from starlette.responses import Response

from backorder.config import Settings
from backorder.db import keys
from backorder.db.engine import run_read

log = logging.getLogger("backorder.console")

COOKIE = "backorder_console"
SIGN_IN_COOKIE = "backorder_console_sign_in"  # the CSRF token of the sign-in form
PATH = "/console"
MAX_AGE_S = 12 * 3600  # a working day: then the key is asked for again
_VERSION = 1


# Why a browser was sent to the sign-in page: a code in its URL, a fixed sentence on the page
# (a link can name a reason, never put words of its own on the page).
REASONS = {
    "invalid": "Your session is not valid here: sign in again.",
    "expired": "Your session has expired: sign in again.",
    "master": "The master key has changed: sign in again.",
    "revoked": "Your API key has been revoked: you are signed out.",
    "ops_only": "The console is for ops keys only.",
    "signed_out": "You are signed out.",
}


class SignedOut(Exception):
    """No valid session (`reason`: a key of `REASONS`, or "" for none at all); or, from
    `sign_in`, a refused key (`message` says why)."""

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.message = message if message is not None else REASONS.get(reason, "")


@dataclass(frozen=True, slots=True)
class ConsoleUser:
    """Who uses the console: an ops key (or the master key), and the session's CSRF token."""

    name: str
    key_id: str  # the key's id, or "master"
    csrf: str


def signing_key(settings: Settings) -> bytes:
    """The HMAC key of session cookies: BACKORDER_CONSOLE_SECRET; else one derived from the
    master key (the same in every worker); else random, good for this process only."""
    if settings.console_secret is not None:
        return hashlib.sha256(settings.console_secret.get_secret_value().encode()).digest()
    if settings.master_key_value:
        return hmac.new(
            settings.master_key_value.encode(), b"backorder console sessions", hashlib.sha256
        ).digest()
    if settings.worker_processes > 1:
        log.warning(
            "no BACKORDER_CONSOLE_SECRET or master key: console sessions hold in one worker "
            "process only; set BACKORDER_CONSOLE_SECRET"
        )
    return secrets.token_bytes(32)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(secret: bytes, purpose: bytes, message: bytes) -> bytes:
    return hmac.new(secret, purpose + b"\x00" + message, hashlib.sha256).digest()


def _master_fingerprint(secret: bytes, settings: Settings) -> str:
    """Changes with the master key, so that a new master key signs out its old sessions."""
    master = settings.master_key_value or ""
    return _b64(_mac(secret, b"master", master.encode())[:12])


def issue(secret: bytes, settings: Settings, key_id: str) -> str:
    fingerprint = _master_fingerprint(secret, settings) if key_id == "master" else ""
    payload = _b64(
        orjson.dumps([_VERSION, key_id, int(time.time()), secrets.token_hex(8), fingerprint])
    )
    return f"{payload}.{_b64(_mac(secret, b'session', payload.encode()))}"


def csrf_token(secret: bytes, cookie: str) -> str:
    """Bound to the session: a form made for one session is refused in another."""
    return _b64(_mac(secret, b"csrf", cookie.encode())[:18])


def _payload(secret: bytes, cookie: str) -> list[Any]:
    payload, _, signature = cookie.partition(".")
    try:
        expected = _mac(secret, b"session", payload.encode())
        if not hmac.compare_digest(_unb64(signature), expected):
            raise SignedOut("invalid")
        data = orjson.loads(_unb64(payload))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise SignedOut("invalid") from exc
    if not (isinstance(data, list) and len(data) == 5 and data[0] == _VERSION):
        raise SignedOut("invalid")
    if not isinstance(data[2], int) or time.time() - data[2] > MAX_AGE_S:
        raise SignedOut("expired")
    return data


async def current_user(request: Request) -> ConsoleUser:
    """The signed-in ops user; raises `SignedOut` unless the cookie is ours, fresh, and its
    key is still active (asked of the database now)."""
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        raise SignedOut("")
    secret: bytes = request.app.state.console_signing_key
    settings: Settings = request.app.state.settings
    _, key_id, _, _, fingerprint = _payload(secret, cookie)
    csrf = csrf_token(secret, cookie)
    if key_id == "master":
        if not settings.master_key_value or not hmac.compare_digest(
            str(fingerprint), _master_fingerprint(secret, settings)
        ):
            raise SignedOut("master")
        return ConsoleUser("master", "master", csrf)
    try:
        uuid = UUID(str(key_id))
    except ValueError as exc:
        raise SignedOut("invalid") from exc
    row = await run_read(request.app.state.engine, lambda conn: keys.find_active_by_id(conn, uuid))
    if row is None:
        raise SignedOut("revoked")
    if row.role != "ops":
        raise SignedOut("ops_only")
    return ConsoleUser(row.name, str(row.id), csrf)


def check_csrf(user: ConsoleUser, form: dict[str, str]) -> bool:
    return hmac.compare_digest(form.get("csrf", ""), user.csrf)


def set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )


def clear_cookie(request: Request, response: Response, name: str = COOKIE) -> None:
    response.delete_cookie(
        name, path=PATH, httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )


class AuthThrottle(Protocol):
    """The app's failed-authentication throttle (the API's), shared so that guessing keys
    through the sign-in form is held to the same limit as through the API."""

    def check(self, address: str, secret: str) -> None: ...
    def failed(self, address: str) -> None: ...
    def succeeded(self, secret: str) -> None: ...


async def sign_in(request: Request, secret_key: str) -> str:
    """Check a key typed into the sign-in form; the session cookie's value, or raise
    `SignedOut` with what to tell the user (the throttle's 429 passes through)."""
    settings: Settings = request.app.state.settings
    signing: bytes = request.app.state.console_signing_key
    master = settings.master_key_value
    if master and hmac.compare_digest(secret_key.encode(), master.encode()):
        return issue(signing, settings, "master")
    throttle: AuthThrottle | None = getattr(request.app.state, "auth_throttle", None)
    address = request.client.host if request.client else "unknown"
    if throttle is not None:
        throttle.check(address, secret_key)
    row = None
    if keys.could_be_key(secret_key):
        row = await run_read(
            request.app.state.engine, lambda conn: keys.find_active(conn, secret_key)
        )
    if row is None:
        if throttle is not None:
            throttle.failed(address)
        raise SignedOut("unknown", "That API key is unknown or revoked.")
    if throttle is not None:
        throttle.succeeded(secret_key)
    if row.role != "ops":
        raise SignedOut(
            "ops_only",
            f"The key '{row.name}' is a {row.role} key: the console is for ops keys only.",
        )
    return issue(signing, settings, str(row.id))
