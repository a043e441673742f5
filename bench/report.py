"""The results: one object per scenario, its target beside each ratio, a table."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class Scenario:
    name: str
    rate: float | None  # requests (or fills) per second
    p50_ms: float | None
    p99_ms: float | None
    errors: int | None
    ceiling: str  # what the ratio is taken against
    ceiling_rate: float | None
    ratio: float | None  # rate / ceiling_rate (for timed single requests: ceiling time / time)
    target: str = ""
    met: bool | None = None  # None: no target, or a figure is missing
    details: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def ratio(rate: float | None, ceiling_rate: float | None) -> float | None:
    if not rate or not ceiling_rate:
        return None
    return round(rate / ceiling_rate, 3)


def _fmt(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.{digits}f}"


def _cpu(cpu: dict[str, float]) -> str:
    server = cpu.get("server_cpu_ms_per_request")
    postgres = cpu.get("postgres_cpu_ms_per_request")
    if server is None and postgres is None:
        return ""
    return f"{server if server is not None else '-'} + {postgres if postgres is not None else '-'}"


def _verdict(met: bool | None) -> str:
    return {True: "pass", False: "MISS", None: "-"}[met]


def table(scenarios: list[Scenario]) -> str:
    head = (
        "scenario",
        "rate/s",
        "p50 ms",
        "p99 ms",
        "err",
        "ceiling",
        "ceil/s",
        "ratio",
        "target",
        "",
        "CPU ms/req srv+pg",
    )
    rows = [head]
    for s in scenarios:
        rows.append(
            (
                s.name,
                _fmt(s.rate),
                _fmt(s.p50_ms, 2),
                _fmt(s.p99_ms, 2),
                "-" if s.errors is None else str(s.errors),
                s.ceiling,
                _fmt(s.ceiling_rate),
                "-" if s.ratio is None else f"{s.ratio:.2f}",
                s.target,
                _verdict(s.met),
                _cpu(s.details.get("cpu") or s.details.get("load", {}).get("cpu", {})),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    numeric = {1, 2, 3, 4, 6, 7, 10}
    lines = []
    for n, r in enumerate(rows):
        cells = [
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        ]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cpu_note(cpu: dict[str, float]) -> str:
    text = _cpu(cpu)
    return f"CPU ms/req srv+pg {text}" if text else ""


def ceilings_table(rows: list[tuple[str, float | None, str]]) -> str:
    width = max(len(name) for name, _, _ in rows)
    out = [f"{'ceiling'.ljust(width)}  {'rate/s':>9}  note", "-" * (width + 20)]
    for name, rate, note in rows:
        out.append(f"{name.ljust(width)}  {_fmt(rate):>9}  {note}".rstrip())
    return "\n".join(out)
