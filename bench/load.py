"""HTTP load: wrk (Debian's package) driven by a generated Lua script, closed loop, bounded
in time and in count. Without wrk on PATH, a small multi-process asyncio client stands in so
that the harness still runs (its figures say so: it cannot saturate the server as wrk can).

Both generators, the server and PostgreSQL share the machine's cores. BENCH_GENERATOR=python
forces the fallback.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit


@dataclass(frozen=True)
class Load:
    """What to send: `{sku}` in `path` and `body` is replaced per request by
    `<sku_prefix><n>` with n uniform in [0, sku_count); `{n}` by n itself."""

    method: str
    path: str
    headers: dict[str, str]
    body: str | None = None
    sku_prefix: str = ""
    sku_count: int = 1


@dataclass
class LoadResult:
    generator: str
    requests: int
    seconds: float
    rate: float
    p50_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    errors: int  # non-2xx answers plus socket errors and timeouts
    statuses: dict[str, int] = field(default_factory=dict)
    capped: bool = False  # the request cap was reached before the duration ended
    cpu: dict[str, float] = field(default_factory=dict)  # CPU ms per request, by side

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _wrk() -> str | None:
    """wrk, unless BENCH_GENERATOR=python asks for the fallback client."""
    if os.environ.get("BENCH_GENERATOR", "auto") == "python":
        return None
    return shutil.which("wrk")


def generator_name() -> str:
    wrk = _wrk()
    if wrk is None:
        return "python-asyncio (fallback: wrk not found; cannot saturate the server)"
    try:
        out = subprocess.run(
            [wrk, "--version"], capture_output=True, text=True, timeout=10, check=False
        )
        first = (out.stdout or out.stderr).splitlines()[0]
        return " ".join(first.split()[:2])
    except (OSError, IndexError, subprocess.SubprocessError):
        return "wrk"


def run_load(
    base_url: str,
    load: Load,
    *,
    connections: int,
    seconds: float,
    max_requests: int,
    threads: int = 1,
    timeout_s: float = 10.0,
) -> LoadResult:
    if _wrk():
        return _run_wrk(base_url, load, connections, seconds, max_requests, threads, timeout_s)
    return _run_python(base_url, load, connections, seconds, max_requests, timeout_s)


# --- wrk ---------------------------------------------------------------------------------


def _lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal here


def _lua_template(text: str) -> str:
    """A Lua expression building `text` with `{sku}` / `{n}` filled from local `n`."""
    parts: list[str] = []
    for piece in re.split(r"(\{sku\}|\{n\})", text):
        if piece == "{sku}":
            parts.append("sku_prefix .. n")
        elif piece == "{n}":
            parts.append("n")
        elif piece:
            parts.append(_lua_string(piece))
    return " .. ".join(parts) if parts else '""'


_LUA = """
local method = {method}
local headers = {headers}
local sku_prefix = {sku_prefix}
local sku_count = {sku_count}
local limit = {limit}
local count = 0
statuses = {{}}  -- global: done() reads it with thread:get
local threads = {{}}
local next_id = 0

function setup(thread)
  thread:set("id", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

function init(args)
  math.randomseed(os.time() * 1000 + id * 7919)
end

function request()
  local n = math.random(0, sku_count - 1)
  return wrk.format(method, {path}, headers, {body})
end

function response(status, hdrs, body)
  count = count + 1
  local key = tostring(status)
  statuses[key] = (statuses[key] or 0) + 1
  if count >= limit then
    capped = true
    wrk.thread:stop()
  end
end

function done(summary, latency, requests)
  local merged = {{}}
  local was_capped = false
  for _, t in ipairs(threads) do
    local s = t:get("statuses") or {{}}
    for k, v in pairs(s) do merged[k] = (merged[k] or 0) + v end
    if t:get("capped") then was_capped = true end
  end
  local parts = {{}}
  for k, v in pairs(merged) do table.insert(parts, string.format('"%s":%d', k, v)) end
  local e = summary.errors
  io.write(string.format(
    'BENCHJSON {{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"mean_us":%f,' ..
    '"max_us":%d,"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,' ..
    '"capped":%s,"statuses":{{%s}}}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    latency.mean, latency.max, e.connect, e.read, e.write, e.status, e.timeout,
    tostring(was_capped), table.concat(parts, ",")))
end
"""


def _run_wrk(
    base_url: str,
    load: Load,
    connections: int,
    seconds: float,
    max_requests: int,
    threads: int,
    timeout_s: float,
) -> LoadResult:
    threads = max(1, min(threads, connections))
    headers = dict(load.headers)
    if load.body is not None:
        headers.setdefault("Content-Type", "application/json")
    lua_headers = (
        "{" + ", ".join(f"[{_lua_string(k)}] = {_lua_string(v)}" for k, v in headers.items()) + "}"
    )
    script = _LUA.format(
        method=_lua_string(load.method),
        headers=lua_headers,
        sku_prefix=_lua_string(load.sku_prefix),
        sku_count=max(1, load.sku_count),
        limit=max(1, max_requests // threads),
        path=_lua_template(load.path),
        body=_lua_template(load.body) if load.body is not None else "nil",
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as handle:
        handle.write(script)
        path = handle.name
    try:
        cmd = [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            f"--timeout={max(1, round(timeout_s))}s",
            "-s",
            path,
            base_url,
        ]
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=seconds + 120, check=False
        )
    finally:
        os.unlink(path)
    line = next((x for x in proc.stdout.splitlines() if x.startswith("BENCHJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk gave no figures:\n{proc.stdout}\n{proc.stderr}")
    raw = json.loads(line[len("BENCHJSON ") :])
    secs = raw["duration_us"] / 1e6
    socket_errors = raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
    return LoadResult(
        generator="wrk",
        requests=raw["requests"],
        seconds=round(secs, 3),
        rate=round(raw["requests"] / secs, 1) if secs else 0.0,
        p50_ms=round(raw["p50_us"] / 1000, 2),
        p99_ms=round(raw["p99_us"] / 1000, 2),
        mean_ms=round(raw["mean_us"] / 1000, 2),
        max_ms=round(raw["max_us"] / 1000, 2),
        errors=raw["status"] + socket_errors,
        statuses=dict(sorted(raw["statuses"].items())),
        capped=bool(raw["capped"]),
    )


# --- the fallback: a plain asyncio HTTP/1.1 keep-alive client in a few processes ---------


def _render(load: Load, rng: random.Random, host: str) -> bytes:
    n = rng.randrange(max(1, load.sku_count))
    sku = f"{load.sku_prefix}{n}"

    def fill(text: str) -> str:
        return text.replace("{sku}", sku).replace("{n}", str(n))

    body = fill(load.body).encode() if load.body is not None else b""
    lines = [f"{load.method} {fill(load.path)} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in load.headers.items()]
    if load.body is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def _connection(
    host: str, port: int, load: Load, deadline: float, budget: list[int], out: dict[str, Any]
) -> None:
    rng = random.Random()
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.monotonic() < deadline and budget[0] > 0:
            budget[0] -= 1
            started = time.perf_counter()
            writer.write(_render(load, rng, f"{host}:{port}"))
            head = await reader.readuntil(b"\r\n\r\n")
            status = head[9:12].decode()
            length = 0
            for header in head.split(b"\r\n")[1:]:
                name, _, value = header.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            out["latencies"].append(time.perf_counter() - started)
            out["statuses"][status] = out["statuses"].get(status, 0) + 1
    except (OSError, asyncio.IncompleteReadError):
        out["socket_errors"] += 1
    finally:
        writer.close()


def _worker(base_url: str, load: Load, connections: int, seconds: float, cap: int) -> Any:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    parts = urlsplit(base_url)
    out: dict[str, Any] = {"latencies": [], "statuses": {}, "socket_errors": 0}
    budget = [cap]

    async def main() -> float:
        started = time.monotonic()
        deadline = started + seconds
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        await asyncio.gather(
            *(_connection(host, port, load, deadline, budget, out) for _ in range(connections))
        )
        return time.monotonic() - started

    out["seconds"] = asyncio.run(main())
    out["capped"] = budget[0] <= 0
    return out


def _run_python(
    base_url: str,
    load: Load,
    connections: int,
    seconds: float,
    max_requests: int,
    timeout_s: float,
) -> LoadResult:
    procs = max(1, min(2, connections))
    per = [connections // procs + (1 if i < connections % procs else 0) for i in range(procs)]
    with ProcessPoolExecutor(max_workers=procs) as pool:
        futures = [
            pool.submit(_worker, base_url, load, c, seconds, max_requests // procs) for c in per
        ]
        parts = [f.result(timeout=seconds + timeout_s + 60) for f in futures]
    latencies = sorted(x for p in parts for x in p["latencies"])
    statuses: dict[str, int] = {}
    for p in parts:
        for k, v in p["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    secs = max(p["seconds"] for p in parts)
    count = len(latencies)

    def pct(q: float) -> float:
        return round(latencies[min(count - 1, int(q * count))] * 1000, 2) if count else 0.0

    bad = sum(v for k, v in statuses.items() if not k.startswith("2"))
    return LoadResult(
        generator="python-asyncio",
        requests=count,
        seconds=round(secs, 3),
        rate=round(count / secs, 1) if secs else 0.0,
        p50_ms=pct(0.50),
        p99_ms=pct(0.99),
        mean_ms=round(sum(latencies) / count * 1000, 2) if count else 0.0,
        max_ms=round(latencies[-1] * 1000, 2) if count else 0.0,
        errors=bad + sum(p["socket_errors"] for p in parts),
        statuses=dict(sorted(statuses.items())),
        capped=any(p["capped"] for p in parts),
    )
