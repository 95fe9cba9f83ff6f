"""Small charts drawn on the server as inline SVG (no script): a recorder's battery and clock
offset at each docking. Each chart has a text alternative listing its values."""

from __future__ import annotations

from markupsafe import Markup, escape

WIDTH, HEIGHT, PAD = 240, 60, 4


def sparkline(
    values: list[float | None], low: float | None = None, high: float | None = None
) -> Markup:
    """A polyline through ``values`` (None: a gap) scaled to ``low``..``high`` (default: the
    values' own range), with a dot on the last value; empty when there is nothing to draw."""
    points = [(i, v) for i, v in enumerate(values) if v is not None]
    if not points:
        return Markup("")
    lo = min(v for _, v in points) if low is None else low
    hi = max(v for _, v in points) if high is None else high
    span = (hi - lo) or 1.0
    step = (WIDTH - 2 * PAD) / max(len(values) - 1, 1)

    def xy(i: int, v: float) -> tuple[float, float]:
        return PAD + i * step, HEIGHT - PAD - (v - lo) / span * (HEIGHT - 2 * PAD)

    coords = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, v) for i, v in points))
    last_x, last_y = xy(*points[-1])
    label = escape(", ".join(f"{v:g}" for _, v in points))
    return Markup(
        f'<svg class="spark" viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}"'
        f' role="img" aria-label="{label}"><title>{label}</title>'
        f'<polyline fill="none" stroke="currentColor" stroke-width="2" points="{coords}"/>'
        f'<circle cx="{last_x:.1f}" cy="{last_y:.1f}" r="3" fill="currentColor"/></svg>'
    )
