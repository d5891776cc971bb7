"""Simple bar charts computed on the server and drawn as inline SVG by ``templates/web/_chart.html``.

No chart library: a chart is a list of rectangles and labels in a fixed coordinate box that the SVG
``viewBox`` scales to the page. Each chart also carries its numbers as rows for a data table, so the
figures are readable without seeing the picture.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

WIDTH, HEIGHT = 600, 240
LEFT, RIGHT, TOP, BOTTOM = 48, 8, 12, 40


@dataclass
class Bar:
    x: float
    y: float
    width: float
    height: float
    css: str
    title: str


@dataclass
class Chart:
    title: str
    slug: str
    width: int = WIDTH
    height: int = HEIGHT
    bars: list[Bar] = field(default_factory=list)
    x_labels: list[tuple[float, float, str]] = field(default_factory=list)  # x, y, text
    y_ticks: list[tuple[float, str]] = field(default_factory=list)  # y, text
    legend: list[tuple[str, str]] = field(default_factory=list)  # css class, name
    columns: list[str] = field(default_factory=list)
    rows: list[list] = field(default_factory=list)
    empty: bool = False
    horizontal: bool = False
    plot_left: int = LEFT
    plot_bottom: int = HEIGHT - BOTTOM
    plot_right: int = WIDTH - RIGHT


def _nice_max(value: float) -> float:
    """The smallest 1, 2 or 5 × 10^n at or above ``value`` (a round top for the axis)."""
    if value <= 0:
        return 1
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 5, 10):
        if step * power >= value:
            return step * power
    return 10 * power


def _ticks(chart: Chart, top: float) -> None:
    plot_height = chart.plot_bottom - TOP
    for i in range(5):
        value = top * i / 4
        label = f"{value:,.0f}" if top >= 4 else f"{value:,.1f}"
        chart.y_ticks.append((chart.plot_bottom - plot_height * i / 4, label))


def column_chart(
    title: str, slug: str, labels: list[str], series: list[tuple[str, str, list[float]]]
) -> Chart:
    """Stacked columns, one per label; ``series`` is ``(name, css class, values)``."""
    chart = Chart(title=title, slug=slug, columns=["", *[name for name, _, _ in series]])
    totals = [sum(values[i] for _, _, values in series) for i in range(len(labels))]
    chart.empty = not any(totals)
    top = _nice_max(max(totals, default=0))
    _ticks(chart, top)
    plot_width = chart.plot_right - chart.plot_left
    plot_height = chart.plot_bottom - TOP
    slot = plot_width / max(1, len(labels))
    width = max(1.0, slot * 0.7)
    every = max(1, math.ceil(len(labels) / 10))  # at most ~10 axis labels
    for i, label in enumerate(labels):
        x = chart.plot_left + slot * i + (slot - width) / 2
        y = chart.plot_bottom
        for name, css, values in series:
            height = plot_height * values[i] / top
            if height > 0:
                y -= height
                chart.bars.append(Bar(x, y, width, height, css, f"{label}: {values[i]:,.0f} {name}"))
        if i % every == 0:
            chart.x_labels.append((x + width / 2, chart.plot_bottom + 16, label))
        chart.rows.append([label, *[values[i] for _, _, values in series]])
    chart.legend = [(css, name) for name, css, _ in series] if len(series) > 1 else []
    return chart


def bar_list_chart(title: str, slug: str, items: list[tuple[str, float]], css: str, unit: str) -> Chart:
    """Horizontal bars, one per item, labelled on the left."""
    height = TOP + BOTTOM // 2 + 28 * max(1, len(items))
    chart = Chart(title=title, slug=slug, height=height, columns=["", unit], plot_left=160, horizontal=True)
    chart.plot_bottom = height - BOTTOM // 2
    chart.empty = not any(value for _, value in items)
    top = _nice_max(max((value for _, value in items), default=0))
    plot_width = chart.plot_right - chart.plot_left
    for i, (label, value) in enumerate(items):
        y = TOP + 28 * i
        chart.bars.append(
            Bar(chart.plot_left, y + 4, plot_width * value / top, 18, css, f"{label}: {value:,.0f}")
        )
        chart.x_labels.append((chart.plot_left - 8, y + 17, label))
        chart.rows.append([label, value])
    return chart
