"""``report.html``: the summary as one self-contained page with inline SVG charts.

No script, font or stylesheet is fetched: the page opens offline and from a mail attachment. The
charts are drawn here as SVG (stacked bars over time, horizontal bars for rankings), escaped with
markupsafe, and rendered into a Jinja2 template shipped as package data.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import jinja2
from markupsafe import Markup, escape

from detector.schema import Outcome

OUTCOME_COLOURS = {
    Outcome.SUCCESS: "#2e7d32",
    Outcome.FAILURE: "#c62828",
    Outcome.UNKNOWN_USER: "#ef6c00",
    Outcome.DISABLED: "#6a1b9a",
    Outcome.POLICY: "#1565c0",
    Outcome.TEMPFAIL: "#757575",
    Outcome.UNKNOWN: "#bdbdbd",
}
PALETTE = ("#1565c0", "#c62828", "#ef6c00", "#2e7d32", "#6a1b9a", "#00838f", "#ad1457", "#5d4037")

W, H = 800, 240
LEFT, RIGHT, TOP, BOTTOM = 56, 180, 12, 36


def _nice_max(v: float) -> float:
    if v <= 0:
        return 1.0
    mag = 10 ** (len(str(int(v))) - 1)
    for step in (1, 2, 2.5, 5, 10):
        if v <= step * mag:
            return step * mag
    return 10.0 * mag


def _label_time(s: str) -> str:
    try:
        d = datetime.fromisoformat(s)
    except (TypeError, ValueError):
        return str(s)
    return d.strftime("%d %H:%M")


def stacked_bars(
    rows: Sequence[dict[str, Any]],
    *,
    x: str,
    series: str,
    value: str,
    colours: dict[str, str] | None = None,
    title: str,
) -> Markup:
    """Vertical bars per ``x`` stacked by ``series``; an SVG with a legend, or a note when empty."""
    if not rows:
        return Markup('<p class="empty">No data.</p>')
    xs = sorted({r[x] for r in rows})
    names = sorted({str(r[series]) for r in rows})
    colours = dict(colours or {})
    for i, name in enumerate(n for n in names if n not in colours):
        colours[name] = PALETTE[i % len(PALETTE)]
    totals: dict[Any, float] = {}
    for r in rows:
        totals[r[x]] = totals.get(r[x], 0) + (r[value] or 0)
    top = max(_nice_max(max(totals.values())), 5.0)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    bw = pw / len(xs)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for i in range(6):
        v = top * i / 5
        y = TOP + ph - ph * i / 5
        out.append(f'<line x1="{LEFT}" y1="{y:.1f}" x2="{LEFT + pw}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{v:,.0f}</text>')
    index = {v: i for i, v in enumerate(xs)}
    base: dict[Any, float] = {}
    for name in names:
        for r in rows:
            if str(r[series]) != name or not r[value]:
                continue
            i = index[r[x]]
            h = ph * r[value] / top
            y0 = base.get(r[x], 0.0)
            y = TOP + ph - y0 - h
            base[r[x]] = y0 + h
            out.append(
                f'<rect x="{LEFT + i * bw + 0.5:.1f}" y="{y:.1f}" width="{max(bw - 1, 0.5):.1f}" '
                f'height="{h:.1f}" fill="{colours[name]}"><title>{escape(_label_time(r[x]))} '
                f"{escape(name)}: {r[value]:,}</title></rect>"
            )
    step = max(1, len(xs) // 6)
    for i in range(0, len(xs), step):
        out.append(
            f'<text x="{LEFT + i * bw:.1f}" y="{H - BOTTOM + 16}" class="tick">{escape(_label_time(xs[i]))}</text>'
        )
    for j, name in enumerate(names):
        y = TOP + 14 * j
        out.append(f'<rect x="{W - RIGHT + 10}" y="{y}" width="10" height="10" fill="{colours[name]}"/>')
        out.append(f'<text x="{W - RIGHT + 24}" y="{y + 9}" class="legend">{escape(name)}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def hbars(items: Sequence[tuple[str, float]], *, title: str, colour: str = "#c62828") -> Markup:
    """Horizontal bars, one per ``(label, value)``, largest first as given."""
    if not items:
        return Markup('<p class="empty">No data.</p>')
    row_h, label_w, width = 20, 220, 560
    top = max(v for _, v in items) or 1
    height = row_h * len(items) + 8
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    ]
    for i, (label, v) in enumerate(items):
        y = 4 + i * row_h
        bw = (width - label_w - 70) * v / top
        out.append(
            f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end" class="tick">{escape(label[:34])}</text>'
        )
        out.append(f'<rect x="{label_w}" y="{y + 2}" width="{bw:.1f}" height="{row_h - 6}" fill="{colour}"/>')
        out.append(f'<text x="{label_w + bw + 4:.1f}" y="{y + 13}" class="tick">{v:,.0f}</text>')
    out.append("</svg>")
    return Markup("".join(out))


def charts(summary: dict[str, Any]) -> dict[str, Markup]:
    c = summary["charts"]
    waves = [(f"wave {w['wave']}", float(w["accounts"])) for w in c["waves"]]
    return {
        "attempts": stacked_bars(
            c["attempts"],
            x="t",
            series="outcome",
            value="n",
            colours=OUTCOME_COLOURS,
            title=f"Login attempts per {c['bucket']} by outcome",
        ),
        "campaigns": stacked_bars(
            c["campaigns"],
            x="t",
            series="campaign",
            value="n",
            title=f"Login attempts per {c['bucket']} by campaign",
        ),
        "countries": hbars(
            [(r["country"], float(r["attempts"])) for r in c["countries"]], title="Attempts by country"
        ),
        "asns": hbars(
            [(f"AS{r['asn']} {r.get('as_org') or ''}".strip(), float(r["attempts"])) for r in c["asns"]],
            title="Attempts by autonomous system",
            colour="#ef6c00",
        ),
        "waves": hbars(waves, title="Accounts per reopening wave", colour="#2e7d32"),
    }


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("detector.report", "templates"),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["num"] = lambda v: (
        f"{v:,.2f}" if isinstance(v, float) else (f"{v:,}" if isinstance(v, int) else v)
    )
    env.filters["when"] = lambda s: s[:19].replace("T", " ") if isinstance(s, str) else "-"
    return env


def render_html(summary: dict[str, Any]) -> str:
    """The HTML report for ``summary`` (one self-contained page)."""
    template = _environment().get_template("report.html.j2")
    return template.render(s=summary, charts=charts(summary))
