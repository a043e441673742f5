"""Charts as SVG drawn on the server: no chart library, no script, nothing from another
host, and a page that shows its figures even with JavaScript off. Colours come from the
stylesheet (classes), sizes from the viewBox, so one drawing fits a phone and a desk."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from markupsafe import Markup, escape

WIDTH, HEIGHT = 720, 240
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 16, 34


def _nice_ceiling(value: int) -> int:
    """The axis top: 1, 2 or 5 times a power of ten, at least `value` (and at least 1)."""
    step = 1
    while True:
        for m in (1, 2, 5):
            if m * step >= value:
                return max(1, m * step)
        step *= 10


def daily_bars(days: Sequence[tuple[date, int, int]], title: str) -> Markup:
    """Opened and filled per day, side by side: `days` = [(day, opened, filled)], oldest
    first. Each bar carries its figure as a tooltip and a `data-value` for tests."""
    top = _nice_ceiling(max((max(o, f) for _, o, f in days), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(len(days), 1)
    bar = max(slot * 0.38, 1.0)
    out = [
        f'<svg class="chart chart-daily" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for fraction in (0, 0.5, 1):
        y = TOP + plot_h * (1 - fraction)
        out.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{round(top * fraction)}</text>"
        )
    for i, (day, opened, filled) in enumerate(days):
        x = LEFT + i * slot + slot * 0.1
        for j, (kind, value) in enumerate((("opened", opened), ("filled", filled))):
            h = plot_h * value / top
            out.append(
                f'<rect class="bar {kind}" data-day="{day.isoformat()}" data-value="{value}" '
                f'x="{x + j * bar:.1f}" y="{TOP + plot_h - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}"><title>{day.isoformat()}: {value} {kind}</title></rect>'
            )
        if i % 7 == (len(days) - 1) % 7:  # label every 7th day, today included
            out.append(
                f'<text class="axis" x="{x + bar:.1f}" y="{HEIGHT - BOTTOM + 16}" '
                f'text-anchor="middle">{day.strftime("%d %b")}</text>'
            )
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 (every value above is a number or escaped)


def ageing_bars(buckets: Sequence[tuple[str, int, int]], title: str) -> Markup:
    """Open backordered units per age bucket, as horizontal bars: [(label, units, lines)]."""
    top = _nice_ceiling(max((u for _, u, _ in buckets), default=0))
    row_h, label_w, height = 34, 86, 34 * len(buckets) + 12
    plot_w = WIDTH - label_w - 90
    out = [
        f'<svg class="chart chart-ageing" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for i, (label, units, lines) in enumerate(buckets):
        y = 6 + i * row_h
        w = plot_w * units / top
        out.append(
            f'<text class="axis" x="{label_w - 8}" y="{y + row_h / 2 + 4:.1f}" '
            f'text-anchor="end">{escape(label)}</text>'
            f'<rect class="bar age" data-bucket="{escape(label)}" data-value="{units}" '
            f'x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row_h - 10}">'
            f"<title>{escape(label)}: {units} units on {lines} lines</title></rect>"
            f'<text class="value" x="{label_w + w + 6:.1f}" y="{y + row_h / 2 + 4:.1f}">'
            f"{units:,} u · {lines:,} l</text>"
        )
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 (every value above is a number or escaped)
