"""Bar charts as inline SVG, drawn on the server: axes with units, stacked series, a legend.

No chart library and no JavaScript: the dashboard is a handful of small charts that change
once a page load, and SVG text stays sharp, searchable and readable by screen readers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 760, 220
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 12, 44
ZERO_MARK_HEIGHT = 3  # px: a label whose bars are all zero (see `bar_chart`)


@dataclass
class Series:
    name: str
    colour: str
    values: list[float]


def nice_ticks(top: float, count: int = 4) -> list[float]:
    """Round tick values from 0 to at least `top` (steps of 1, 2 or 5 times a power of 10)."""
    if top <= 0:
        return [0, 1]
    raw = top / count
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    if step < 1 and top >= 1:
        step = 1
    ticks = [0.0]
    while ticks[-1] < top:
        ticks.append(round(ticks[-1] + step, 10))
    return ticks


def _number(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    if value >= 10_000:
        return f"{value / 1000:g}k"
    return f"{value:g}"


def bar_chart(
    labels: list[str],
    series: list[Series],
    *,
    y_label: str,
    x_label: str,
    title: str,
    label_every: int = 1,
    zero_marks: list[Series | None] | None = None,
) -> SafeString:
    """Bars stacked per label (one series: plain bars), with axes, ticks and a legend.

    `zero_marks` names, per label, the series a label without any value belongs to: such a
    label gets a sliver of that colour on the axis, so a run that sent nothing is still seen.
    """
    if not labels:
        return format_html('<p class="help">{}</p>', "No data yet.")
    totals = [sum(s.values[i] for s in series) for i in range(len(labels))]
    ticks = nice_ticks(max(totals))
    top = ticks[-1]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    step = plot_w / len(labels)
    bar_w = max(min(step * 0.7, 40), 1)

    def y(value: float) -> float:
        return round(TOP + plot_h - value / top * plot_h, 1)

    parts = []
    for tick in ticks:
        parts.append(
            format_html(
                '<line x1="{}" x2="{}" y1="{}" y2="{}" class="grid"/>'
                '<text x="{}" y="{}" text-anchor="end" class="tick">{}</text>',
                LEFT,
                WIDTH - RIGHT,
                y(tick),
                y(tick),
                LEFT - 6,
                y(tick) + 4,
                _number(tick),
            )
        )
    for index, label in enumerate(labels):
        x = round(LEFT + index * step + (step - bar_w) / 2, 1)
        base = 0.0
        for one in series:
            value = one.values[index]
            if value:
                parts.append(
                    format_html(
                        '<rect x="{}" y="{}" width="{}" height="{}" fill="{}">'
                        "<title>{}: {} {}</title></rect>",
                        x,
                        y(base + value),
                        round(bar_w, 1),
                        round(y(base) - y(base + value), 1),
                        one.colour,
                        label,
                        _number(round(value, 1)),
                        one.name,
                    )
                )
            base += value
        mark = zero_marks[index] if zero_marks and not totals[index] else None
        if mark is not None:
            parts.append(
                format_html(
                    '<rect x="{}" y="{}" width="{}" height="{}" fill="{}">'
                    "<title>{}: 0 ({})</title></rect>",
                    x,
                    TOP + plot_h - ZERO_MARK_HEIGHT,
                    round(bar_w, 1),
                    ZERO_MARK_HEIGHT,
                    mark.colour,
                    label,
                    mark.name,
                )
            )
        if index % label_every == 0:
            parts.append(
                format_html(
                    '<text x="{}" y="{}" text-anchor="middle" class="tick">{}</text>',
                    round(x + bar_w / 2, 1),
                    TOP + plot_h + 16,
                    label,
                )
            )
    parts.append(
        format_html(
            '<line x1="{}" x2="{}" y1="{}" y2="{}" class="axis"/>'
            '<line x1="{}" x2="{}" y1="{}" y2="{}" class="axis"/>'
            '<text x="{}" y="{}" text-anchor="middle" class="axis-label">{}</text>'
            '<text transform="translate(14 {}) rotate(-90)" text-anchor="middle" '
            'class="axis-label">{}</text>',
            LEFT,
            WIDTH - RIGHT,
            TOP + plot_h,
            TOP + plot_h,
            LEFT,
            LEFT,
            TOP,
            TOP + plot_h,
            LEFT + plot_w / 2,
            HEIGHT - 6,
            x_label,
            TOP + plot_h / 2,
            y_label,
        )
    )
    legend = ""
    if len(series) > 1:
        legend = format_html(
            '<ul class="chart-legend">{}</ul>',
            format_html_join(
                "",
                '<li><span class="swatch" style="background:{}"></span>{}</li>',
                ((one.colour, one.name) for one in series),
            ),
        )
    return format_html(
        '<figure class="dashboard-chart"><svg viewBox="0 0 {} {}" role="img" '
        'aria-label="{}">{}</svg>{}{}</figure>',
        WIDTH,
        HEIGHT,
        title,
        mark_safe("".join(parts)),
        legend,
        _figures(labels, series, x_label=x_label),
    )


def _figures(labels: list[str], series: list[Series], *, x_label: str) -> SafeString:
    """The chart's numbers as a table, folded under it: for screen readers and keyboards,
    which reach no bar's tooltip, and for whoever wants the exact values."""
    header = format_html_join("", '<th scope="col">{}</th>', ((one.name,) for one in series))
    rows = format_html_join(
        "",
        '<tr><th scope="row">{}</th>{}</tr>',
        (
            (
                label,
                format_html_join(
                    "", "<td>{}</td>", ((_number(round(one.values[i], 1)),) for one in series)
                ),
            )
            for i, label in enumerate(labels)
        ),
    )
    return format_html(
        '<details class="chart-figures"><summary>The figures</summary>'
        '<div class="table-scroll"><table><thead><tr><th scope="col">{}</th>{}</tr></thead>'
        "<tbody>{}</tbody></table></div></details>",
        x_label,
        header,
        rows,
    )
