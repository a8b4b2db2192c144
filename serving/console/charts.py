"""Charts drawn on the server as inline SVG: no script, no network, no inline style (the page's CSP allows none).

Every text that comes from data (feature names and values) is escaped here; the SVG is then handed to the template
as markup.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from markupsafe import Markup

UP, DOWN, INK = "#1d6b3a", "#a3262a", "#222222"


def contributions(items: Sequence[dict[str, Any]], width: int = 720, bar_h: int = 22) -> Markup:
    """Signed contributions to the score's log-odds as horizontal bars about a zero line (raising to the right)."""
    rows = sorted(items, key=lambda c: -abs(float(c["contribution"])))
    if not rows:
        return Markup("")
    label_w, pad = 320, 8
    span = max(abs(float(c["contribution"])) for c in rows) or 1.0
    half = (width - label_w - 2 * pad) / 2
    zero = label_w + pad + half
    height = len(rows) * bar_h + 24
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" aria-labelledby="contrib-title">',
             '<title id="contrib-title">What raised and lowered this score (log-odds)</title>',
             f'<line x1="{zero:.1f}" y1="0" x2="{zero:.1f}" y2="{height - 20}" stroke="{INK}" stroke-width="1"/>']
    for i, c in enumerate(rows):
        value = float(c["contribution"])
        length = abs(value) / span * half
        y = i * bar_h + 4
        x = zero if value >= 0 else zero - length
        value_text = "missing" if c.get("value") is None else c.get("value")
        label = f"{c['feature']} = {value_text}"
        short = label if len(label) <= 42 else label[:41] + "…"
        parts.append(f'<text x="{label_w}" y="{y + 14}" text-anchor="end" font-size="13" fill="{INK}">'
                     f'{escape(short)}</text>')
        parts.append(f'<rect x="{x:.1f}" y="{y}" width="{max(length, 1):.1f}" height="{bar_h - 8}" '
                     f'fill="{UP if value >= 0 else DOWN}"><title>{escape(label)}: {value:+.3f}</title></rect>')
        anchor, tx = ("end", zero - 4) if value >= 0 else ("start", zero + 4)  # the figure on the bar's far side
        parts.append(f'<text x="{tx:.1f}" y="{y + 14}" text-anchor="{anchor}" font-size="12" fill="{INK}">'
                     f'{value:+.2f}</text>')
    parts.append(f'<text x="{zero:.1f}" y="{height - 4}" text-anchor="middle" font-size="11" fill="{INK}">0: '
                 'lowers to the left, raises to the right</text></svg>')
    return Markup("".join(parts))


def history(points: Sequence[dict[str, Any]], width: int = 640, height: int = 120) -> Markup:
    """The lead's served scores over time as a line (0 to 1), a dot per score."""
    if not points:
        return Markup("")
    pad = 28
    n = len(points)
    xs = [pad + (width - 2 * pad) * (i / (n - 1) if n > 1 else 0.5) for i in range(n)]
    ys = [height - pad - (height - 2 * pad) * min(1.0, max(0.0, float(p["score"]))) for p in points]
    line = " ".join(f"{x:.1f},{y:.1f}" for x, y in zip(xs, ys, strict=True))
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" role="img" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" aria-labelledby="history-title">',
             '<title id="history-title">Score history, oldest to newest</title>',
             f'<line x1="{pad}" y1="{height - pad}" x2="{width - pad}" y2="{height - pad}" stroke="{INK}"/>',
             f'<text x="4" y="{pad + 4}" font-size="11" fill="{INK}">1.0</text>',
             f'<text x="4" y="{height - pad + 4}" font-size="11" fill="{INK}">0.0</text>',
             f'<polyline points="{line}" fill="none" stroke="{UP}" stroke-width="2"/>']
    for x, y, p in zip(xs, ys, points, strict=True):
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{UP}"><title>{escape(str(p["at"])[:19])}: '
                     f'{float(p["score"]):.3f} (tier {escape(str(p["tier"]))})</title></circle>')
    parts.append("</svg>")
    return Markup("".join(parts))
