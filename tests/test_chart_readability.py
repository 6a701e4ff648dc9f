"""Charts a class can read: no title, legend, panel title, tick labels or colour bar on top of another or of a
plotting area; one tooltip format; log axes labelled in full; colour bars thick enough to read; the drill-down's
gates, g/h and c on their own scales; and, in Chromium, the explorer usable at 390 px and whole at 1100 px.

The figure checks compute each element's box in px from the spec alone (Plotly's placement rules, text sized by
its font), at a phone's width and a desktop's; the browser checks read the boxes Plotly drew.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from browser_support import REPO_ROOT, browser_marks, launch_browser, streamlit_server, wait_for_app
from figure_data import decode_array

from lstm_viz import InstrumentedLSTM, analysis, figures

pytestmark = pytest.mark.usefixtures("one_thread")

PHONE, DESKTOP = 360, 900  # px: the app's column on a 390 px phone, and on a laptop
ARTIFACTS = REPO_ROOT / "test-artifacts"
MEMORY_LABELS = ["store"] + [f"t={t}" for t in range(1, 8)] + ["recall"]  # a toy task's labels: "t=3" already


@pytest.fixture(scope="module")
def deep():
    torch.manual_seed(0)
    return InstrumentedLSTM(3, 6, num_layers=2, bidirectional=True, proj_size=4).trace(torch.randn(9, 2, 3))


@pytest.fixture(scope="module")
def flat():
    torch.manual_seed(1)
    return InstrumentedLSTM(2, 5).trace(torch.randn(9, 1, 2))


# --- boxes from a spec ---------------------------------------------------------------------------------------

GLYPH, LINE = 0.6, 1.3  # a character's width and a line's height, in units of the font size


@dataclass(frozen=True)
class Box:
    name: str
    x0: float
    y0: float  # px from the figure's top
    x1: float
    y1: float

    def overlaps(self, other: Box, slack: float = 1.0) -> bool:
        return (min(self.x1, other.x1) - max(self.x0, other.x0) > slack
                and min(self.y1, other.y1) - max(self.y0, other.y0) > slack)


def text_size(text: str, font: float) -> tuple[float, float]:
    lines = str(text).split("<br>")
    return (max(len(figures.plain(line)) for line in lines) * GLYPH * font, len(lines) * LINE * font)


def anchored(start: float, extent: float, anchor: str) -> tuple[float, float]:
    """[start, end) of an extent placed at `start` by its anchor (left/bottom, center/middle, right/top)."""
    if anchor in ("left", "top"):
        return start, start + extent
    if anchor in ("right", "bottom"):
        return start - extent, start
    return start - extent / 2, start + extent / 2


def auto(value: float, anchor: str | None, low: str, high: str) -> str:
    """Plotly's "auto" anchor of a legend: `high` at ≥ 2/3, `low` at ≤ 1/3, centred between."""
    if anchor not in (None, "auto"):
        return anchor
    return high if value >= 2 / 3 else low if value <= 1 / 3 else "middle" if low == "bottom" else "center"


class Frame:
    """A figure drawn `width` px wide: paper and data coordinates to px."""

    def __init__(self, spec: dict, width: float):
        self.spec, self.layout = spec, spec["layout"]
        margin = {"l": 80, "r": 80, "t": 100, "b": 80} | self.layout.get("margin", {})
        self.width, self.height = width, self.layout.get("height", 450)
        self.left, self.top = margin["l"], margin["t"]
        self.plot_w = width - margin["l"] - margin["r"]
        self.plot_h = self.height - margin["t"] - margin["b"]

    def x(self, paper: float) -> float:
        return self.left + paper * self.plot_w

    def y(self, paper: float) -> float:
        return self.top + (1 - paper) * self.plot_h

    def axis(self, name: str) -> dict:  # "x2" -> layout["xaxis2"]
        return self.layout.get(f"{name[0]}axis{name[1:]}", {})

    def subplots(self) -> list[Box]:
        pairs = {(d.get("xaxis", "x"), d.get("yaxis", "y")) for d in self.spec["data"]}
        boxes = []
        for xa, ya in sorted(pairs):
            (x0, x1), (y0, y1) = self.axis(xa).get("domain", [0, 1]), self.axis(ya).get("domain", [0, 1])
            boxes.append(Box(f"plot {xa}{ya}", self.x(x0), self.y(y1), self.x(x1), self.y(y0)))
        return boxes

    def y_data(self, ref: str, value: float) -> float:
        """A data coordinate on y axis `ref` as px (the range given, else the data's, as autorange sets it)."""
        axis = self.axis(ref)
        log = axis.get("type") == "log"
        if "range" in axis:
            low, high = axis["range"]
        else:
            values = np.concatenate([decode_array(d["y"]).astype(float) for d in self.spec["data"]
                                     if d.get("yaxis", "y") == ref and "y" in d])
            values = np.log10(values[values > 0]) if log else values
            low, high = float(np.nanmin(values)), float(np.nanmax(values))
        y0, y1 = axis.get("domain", [0, 1])
        return self.y(y0 + (value - low) / (high - low) * (y1 - y0))

    def title(self) -> list[Box]:
        title = self.layout.get("title")
        text = title if isinstance(title, str) else (title or {}).get("text")
        if not text:
            return []
        font = title.get("font", {}).get("size", 17) if isinstance(title, dict) else 17
        w, h = text_size(text, font)
        pad = title.get("pad", {}) if isinstance(title, dict) else {}
        if isinstance(title, dict) and title.get("y") not in (None, "auto"):
            top = (1 - title["y"]) * self.height + pad.get("t", 0)  # container reference, anchored at its top
        else:
            top = self.top / 2 - h / 2  # Plotly's default: centred in the top margin
        if isinstance(title, dict) and title.get("xanchor") == "left":
            return [Box("title", pad.get("l", 0), top, pad.get("l", 0) + w, top + h)]
        return [Box("title", 0, top, self.width, top + h)]  # centred by Plotly, on the left by Streamlit's theme

    def legend(self) -> list[Box]:
        entries = [d.get("name", "") for d in self.spec["data"]
                   if d.get("type") != "heatmap" and d.get("showlegend", True)]
        if self.layout.get("showlegend") is False or (len(entries) < 2 and not self.layout.get("showlegend")):
            return []
        legend = self.layout.get("legend", {})
        font = legend.get("font", {}).get("size", 12)
        column = 40 + GLYPH * font * max(len(figures.plain(e)) for e in entries)
        row = 1.6 * font
        if legend.get("orientation") == "h":
            per_row = max(1, int(self.plot_w // column))
            w, h = min(len(entries), per_row) * column, math.ceil(len(entries) / per_row) * row + 10
            x, y = legend.get("x", 0), legend.get("y", -0.1)
        else:
            w, h = column, len(entries) * row + 10
            x, y = legend.get("x", 1.02), legend.get("y", 1)
        x0, x1 = anchored(self.x(x), w, auto(x, legend.get("xanchor"), "left", "right"))
        y0, y1 = anchored(self.y(y), h, auto(y, legend.get("yanchor"), "bottom", "top"))
        return [Box("legend", x0, y0, x1, y1)]

    def annotations(self) -> list[Box]:
        boxes = []
        for a in self.layout.get("annotations", []):
            w, h = text_size(a["text"], a.get("font", {}).get("size", 12))
            yref = a.get("yref", "y")
            y = self.y(a["y"]) if yref == "paper" else self.y_data(yref, a["y"])
            x0, x1 = anchored(self.x(a["x"]) + a.get("xshift", 0), w, {"auto": "center"}.get(
                a.get("xanchor", "auto"), a.get("xanchor")))
            y0, y1 = anchored(y - a.get("yshift", 0), h, {"auto": "middle"}.get(a.get("yanchor", "auto"),
                                                                                a.get("yanchor")))
            boxes.append(Box(f"annotation {figures.plain(a['text'])!r}", x0, y0, x1, y1))
        return boxes

    def x_axis_bands(self) -> list[Box]:
        """Below each drawn x axis: its tick labels, and its title when it has one."""
        boxes = []
        for xa in sorted({d.get("xaxis", "x") for d in self.spec["data"]}):
            axis = self.axis(xa)
            if axis.get("showticklabels") is False:
                continue
            anchor = axis.get("anchor", "y" + xa[1:])
            bottom = self.y(self.axis(anchor).get("domain", [0, 1])[0])
            depth = LINE * axis.get("tickfont", {}).get("size", 12)
            title = axis.get("title", {})
            if title.get("text"):
                depth += title.get("standoff", 10) + LINE * title.get("font", {}).get("size", 14)
            x0, x1 = axis.get("domain", [0, 1])
            boxes.append(Box(f"x axis {xa}", self.x(x0), bottom, self.x(x1), bottom + depth))
        return boxes

    def colour_bars(self) -> list[Box]:
        boxes = []
        for name, axis in self.layout.items():
            bar = axis.get("colorbar") if name.startswith("coloraxis") and isinstance(axis, dict) else None
            if bar is None or axis.get("showscale") is False:
                continue
            length = bar["len"] if bar.get("lenmode") == "pixels" else bar.get("len", 1) * self.plot_h
            width = bar.get("thickness", 30) + 4 * GLYPH * bar.get("tickfont", {}).get("size", 12) + 10
            x0, x1 = anchored(self.x(bar.get("x", 1.02)), width, bar.get("xanchor", "left"))
            y0, y1 = anchored(self.y(bar.get("y", 0.5)), length, bar.get("yanchor", "middle"))
            boxes.append(Box(f"colour bar {name}", x0, y0, x1, y1))
        return boxes


def clashes(spec: dict, width: float) -> list[str]:
    """Every pair of elements that share pixels, and every text that leaves the figure."""
    frame = Frame(spec, width)
    plots, titles, legends = frame.subplots(), frame.title(), frame.legend()
    notes, axes, bars = frame.annotations(), frame.x_axis_bands(), frame.colour_bars()
    texts = titles + legends + notes
    pairs = [(a, b) for a in texts + bars for b in plots + axes]
    pairs += [(a, b) for k, a in enumerate(texts + bars) for b in (texts + bars)[k + 1:]]
    pairs += [(a, b) for a in axes for b in plots]  # an axis band starts where its own plot ends
    found = [f"{a.name} overlaps {b.name}" for a, b in pairs if a.overlaps(b)]
    found += [f"{box.name} leaves the figure" for box in titles + notes
              if box.x0 < -1 or box.x1 > width + 1 or box.y0 < -1 or box.y1 > frame.height + 1]
    return found


def every_spec(deep, flat) -> dict[str, dict]:
    """The app's figures (drawn at any width) by name."""
    return {
        "unit lines, 2 layers × 2 directions": figures.unit_spec(deep, unit=1, batch=0, t=4,
                                                                 time_labels=MEMORY_LABELS),
        "unit lines, 1 layer": figures.unit_spec(flat, unit=2, t=3),
        "saturation": figures.saturation_spec(analysis.saturation(deep, 0.1, 0.9), 0.1, 0.9, highlight_unit=1),
        "ledger": figures.ledger_spec(analysis.memory_ledger(deep, 1, 1, 0), 2, 1, 1,
                                      where=figures.position(deep, 1, 1), batch=0),
        "loss": figures.loss_spec([1.0, 0.4, 0.12, 0.03, 0.02, 0.011], threshold=0.05),
    }


def export_specs(deep) -> dict[str, dict]:
    """The figures made for notebooks and HTML files (a desktop page)."""
    return {"step": figures.step_spec(deep, 4, 1, 1, highlight_unit=2),
            "over time": figures.over_time_spec(deep, 3, 1, 0, 1, MEMORY_LABELS),
            "one heatmap": figures.step_heatmap_spec(deep, "c", 2, 1, 1)}


@pytest.mark.parametrize("width", [PHONE, DESKTOP])
def test_titles_legends_panels_and_ticks_never_overlap(deep, flat, width):
    for name, spec in every_spec(deep, flat).items():
        go.Figure(spec)
        assert not clashes(spec, width), (name, width, clashes(spec, width))


def test_exported_figures_never_overlap_on_a_desktop_page(deep):
    for name, spec in export_specs(deep).items():
        go.Figure(spec)
        assert not clashes(spec, DESKTOP), (name, clashes(spec, DESKTOP))


def test_the_geometry_sees_an_overlap():
    """The checker is not blind: a legend pushed into the plot, and a title sharing its band, are found."""
    spec = {"data": [dict(type="scatter", x=[0, 1], y=[0, 1], name=n) for n in "ab"],
            "layout": {"height": 300, "margin": dict(l=50, r=10, t=30, b=40), "legend": {"orientation": "h", "y": 1.06},
                       "title": {"text": "a title"}}}
    found = clashes(spec, DESKTOP)
    assert any("legend overlaps plot" in f for f in found)
    assert any("title overlaps legend" in f for f in found)


# --- tooltips ----------------------------------------------------------------------------------------------

PART = r"(?:(?!<br>)[^·])+"  # one " · "-separated part of the first line (subscripts allowed)
HOVER = re.compile(rf"^{PART}( · {PART})*<br>[^<]+<extra></extra>$")


def shown_hover(template: str, x: int, axis: dict) -> str:
    """A tooltip as Plotly writes it for a point at x: %{x:d} is the number, a bare %{x} the axis's tick label."""
    labels = dict(zip(axis.get("tickvals", []), axis.get("ticktext", []), strict=True))
    return template.replace("%{x:d}", str(x)).replace("%{x}", str(labels.get(x, x)))


def test_one_tooltip_format_with_t_written_once(deep, flat):
    for name, spec in (every_spec(deep, flat) | export_specs(deep)).items():
        for trace in spec["data"]:
            template = trace["hovertemplate"]
            assert HOVER.match(template), (name, template)
            assert "t=%{x}" not in template, (name, template)  # the tick label: "t=t=3" for a toy task
    unit = every_spec(deep, flat)["unit lines, 2 layers × 2 directions"]
    f_line = unit["data"][0]
    for k, step in enumerate(f_line["x"]):
        text = shown_hover(f_line["hovertemplate"], int(step), unit["layout"]["xaxis"])
        text = text.replace("%{customdata}", f_line["customdata"][k])
        label = MEMORY_LABELS[k]
        assert text.startswith(f"forget gate f · t={k}{' (' + label + ')' if label != f't={k}' else ''} · batch 0 · "
                               "unit 1 · layer 0 · forward<br>value "), text
    over = export_specs(deep)["over time"]
    assert shown_hover(over["data"][0]["hovertemplate"], 3, over["layout"]["xaxis"]).startswith(
        "forget gate f · t=3 · batch 1 · unit %{y} · layer 1 · forward<br>value %{z:.4f}")
    step = export_specs(deep)["step"]["data"][2]["hovertemplate"]
    assert step.startswith("output gate o · t=4 · batch %{y} · unit %{x} · layer 1 · reverse<br>value ")


# --- log axes, colour bars -----------------------------------------------------------------------------------

@pytest.mark.parametrize("values", [[1.03, 1.96], [0.004, 0.9], [0.012, 3.5], [1e-6, 2e3], [7.0, 7.2]])
def test_log_ticks_are_labelled_in_full(values):
    axis = figures.log_axis(values)
    low, high = axis["range"]
    assert low <= math.log10(min(values))
    assert math.log10(max(values)) <= high
    assert 3 <= len(axis["tickvals"]) <= 8
    for value, text in zip(axis["tickvals"], axis["ticktext"], strict=True):
        assert low <= math.log10(value) <= high
        assert float(text) == pytest.approx(value, rel=1e-9), (value, text)  # "0.05", never a bare "5"


def test_the_ledger_and_loss_log_axes_carry_full_labels(deep, flat):
    specs = every_spec(deep, flat)
    for spec, axis in ((specs["ledger"], "yaxis2"), (specs["loss"], "yaxis")):
        shown = spec["layout"][axis]
        assert shown["type"] == "log"
        assert shown["ticktext"]
        for value, text in zip(shown["tickvals"], shown["ticktext"], strict=True):
            assert float(text) == pytest.approx(value)


def test_colour_bars_are_thick_with_readable_ticks(deep):
    for name, spec in export_specs(deep).items():
        bars = [axis["colorbar"] for key, axis in spec["layout"].items() if key.startswith("coloraxis")]
        assert bars, name
        for bar in bars:
            assert bar["thickness"] >= 16, (name, bar)
            assert bar["lenmode"] == "pixels", (name, bar)
            assert bar["len"] >= 120, (name, bar)
            assert bar["tickfont"]["size"] >= 10
            assert bar["title"]["font"]["size"] >= 10
    c_bar = export_specs(deep)["step"]["layout"]["coloraxis3"]["colorbar"]
    assert "from data" in c_bar["title"]["text"]


# --- the drill-down's scales ------------------------------------------------------------------------------------

def test_drill_down_puts_gates_tanh_and_c_on_their_own_scales():
    """A cell state far beyond ±1 gets its own axis: the gates keep 0..1 and g, h keep −1..1, whatever c does."""
    torch.manual_seed(0)
    lstm = InstrumentedLSTM(2, 3, num_layers=2)
    with torch.no_grad():  # input gate and candidate saturated open, forget gate ~1: c grows by ~1 a step
        for layer in range(2):
            getattr(lstm, f"bias_ih_l{layer}")[:9] = 8.0
    trace = lstm.trace(torch.randn(30, 1, 2))
    assert np.abs(trace.c.numpy()).max() > 10
    spec = figures.unit_spec(trace, unit=1, t=5)
    go.Figure(spec)
    layout, axes_of = spec["layout"], {}
    for trace_spec in spec["data"]:
        axes_of.setdefault(trace_spec["yaxis"], set()).add(trace_spec["name"])
    assert list(axes_of.values()) == [{"f", "i", "o"}, {"g", "h"}, {"c"}] * 2  # per layer: three plots
    for ref, names in axes_of.items():
        axis = layout[f"yaxis{ref[1:]}"]
        if names == {"f", "i", "o"}:
            assert axis["range"][0] < 0 < 1 < axis["range"][1] <= 1.1
        elif names == {"g", "h"}:
            assert axis["range"][0] < -1
            assert 1 < axis["range"][1] <= 1.2
        else:
            assert "range" not in axis  # c: autorange over its own values
    domains = sorted(layout[f"yaxis{ref[1:]}"]["domain"] for ref in axes_of)
    assert all(a[1] < b[0] for a, b in zip(domains, domains[1:], strict=False))  # stacked, apart
    c_line = next(d for d in spec["data"] if d["name"] == "c" and d["yaxis"] == "y3")
    np.testing.assert_allclose(decode_array(c_line["y"]), trace.c[0, 0, :, 0, 1].numpy(), rtol=1e-7)
    markers = [s for s in layout["shapes"] if s["x0"] == 5]
    assert len(markers) == 6  # step t marked on every plot


def test_layer_and_direction_are_named_the_same_everywhere(deep):
    ledger = every_spec(deep, deep)["ledger"]
    assert "layer 1 · reverse" in ledger["layout"]["title"]["text"]
    forward = figures.ledger_spec(analysis.memory_ledger(deep, 0, 0, 0), 0, 0, 0, where=figures.position(deep, 0, 0))
    assert "layer 0 · forward" in forward["layout"]["title"]["text"]
    saturation = every_spec(deep, deep)["saturation"]
    assert [d["name"] for d in saturation["data"] if d.get("showlegend")] == [
        "layer 0 · forward", "layer 0 · reverse", "layer 1 · forward", "layer 1 · reverse"]
    unit = every_spec(deep, deep)["unit lines, 2 layers × 2 directions"]
    assert [figures.plain(a["text"]) for a in unit["layout"]["annotations"]] == [
        "layer 0 · forward", "layer 0 · reverse", "layer 1 · forward", "layer 1 · reverse"]


# --- in Chromium ----------------------------------------------------------------------------------------------

def in_browser(test):
    for mark in reversed(browser_marks()):
        test = mark(test)
    return test


@pytest.fixture(scope="module")
def server():
    with streamlit_server() as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch_browser(pw)
        try:
            yield chromium
        finally:
            chromium.close()


def open_page(browser, server: str, width: int, query: str = ""):
    page = browser.new_context(viewport={"width": width, "height": 1200}).new_page()
    page.goto(f"{server}/{query}")
    wait_for_app(page, t=0)
    return page


# The boxes Plotly drew in one chart (page px): titles, legend, annotations, plotting areas, tick labels, colour bars.
DRAWN_JS = r"""(root) => {
    const box = (e, name) => { const r = e.getBoundingClientRect();
        return {name, x0: r.left, y0: r.top, x1: r.right, y1: r.bottom}; };
    const all = (sel, name) => Array.from(root.querySelectorAll(sel), (e, k) =>
        box(e, name(e, k))).filter((b) => b.x1 > b.x0 && b.y1 > b.y0);
    return {
        chart: box(root, 'chart'),
        titles: all('.gtitle', () => 'title'),
        legends: all('.legend .bg', () => 'legend'),
        notes: all('.annotation-text', (e) => 'annotation ' + e.textContent),
        plots: all('.draglayer .nsewdrag', (e) => 'plot ' + e.parentNode.getAttribute('class')),
        ticks: Array.from(root.querySelectorAll('.xaxislayer-above, .yaxislayer-above'), (layer) =>
            Array.from(layer.querySelectorAll('text'), (e) => box(e, 'tick ' + e.textContent + ' of '
                + (layer.querySelector('.xtick, .ytick') || {}).getAttribute?.('class'))))
            .filter((group) => group.length),
        axisTitles: all('[class^="g-x"][class$="title"] text, [class^="g-y"][class$="title"] text',
                        (e) => 'axis title ' + e.textContent),
        bars: Array.from(root.querySelectorAll('.colorbar'), (bar, k) => {  // its title, colours and ticks
            const parts = Array.from(bar.querySelectorAll('.cbtitle, .cbfills, .cbaxis'), (e) => box(e, ''))
                .filter((b) => b.x1 > b.x0);
            return {name: 'colour bar ' + k, x0: Math.min(...parts.map((b) => b.x0)),
                    y0: Math.min(...parts.map((b) => b.y0)), x1: Math.max(...parts.map((b) => b.x1)),
                    y1: Math.max(...parts.map((b) => b.y1))};
        }).filter((b) => Number.isFinite(b.x0)),
    };
}"""


def overlapping(a: dict, b: dict, slack: float = 1.0) -> bool:
    return (min(a["x1"], b["x1"]) - max(a["x0"], b["x0"]) > slack
            and min(a["y1"], b["y1"]) - max(a["y0"], b["y0"]) > slack)


def drawn_clashes(page, selector: str) -> list[str]:
    """Pairs of elements drawn on top of each other in the Plotly chart at `selector`, and text outside the chart."""
    drawn = page.locator(selector).first.evaluate(DRAWN_JS)
    texts = drawn["titles"] + drawn["legends"] + drawn["notes"]
    found = [(a, b) for a in texts for b in drawn["plots"] + drawn["bars"] + [t for g in drawn["ticks"] for t in g]]
    found += [(a, b) for k, a in enumerate(texts + drawn["bars"]) for b in (texts + drawn["bars"])[k + 1:]]
    found += [(a, b) for group in drawn["ticks"] for k, a in enumerate(group) for b in group[k + 1:]]
    found += [(a, b) for a in drawn["axisTitles"] for b in texts + drawn["plots"]]
    chart = drawn["chart"]
    outside = [t["name"] for t in texts if t["x0"] < chart["x0"] - 1 or t["x1"] > chart["x1"] + 1]
    return [f"{a['name']} overlaps {b['name']}" for a, b in found if overlapping(a, b)] + \
        [f"{name} leaves the chart" for name in outside]


@in_browser
@pytest.mark.parametrize("width", [1100, 390])
def test_every_explorer_button_shows_its_whole_label(server, browser, width):
    page = open_page(browser, server, width)
    try:
        buttons = page.evaluate("""() => Array.from(document.querySelectorAll('.lvx-bar .lvx-btn'), (b) => {
            const range = document.createRange(); range.selectNodeContents(b);
            const text = range.getBoundingClientRect(), own = b.getBoundingClientRect();
            const bar = b.closest('.lvx').getBoundingClientRect();
            return {label: b.textContent, clipped: b.scrollWidth > b.clientWidth, lines: range.getClientRects().length,
                    inside: text.left >= own.left && text.right <= own.right && own.left >= bar.left - 1
                            && own.right <= bar.right + 1, width: text.width};
        })""")
        assert [b["label"] for b in buttons] == ["« First", "◀ Prev", "▶ Play", "Next ▶", "Last »"]
        for button in buttons:
            assert not button["clipped"], button
            assert button["lines"] == 1, button
            assert button["inside"], button
            assert button["width"] > 25, button  # the label itself, not just its arrow
    finally:
        page.context.close()


@in_browser
@pytest.mark.parametrize("query", ["", "?model_source=toy+task&task=memory"])
def test_at_390_px_the_explorer_stays_readable(server, browser, query):
    page = open_page(browser, server, 390, query)
    try:
        for selector in ("[data-testid=lvx-step]", "[data-testid=lvx-time]"):  # the Plotly divs themselves
            page.locator(selector).scroll_into_view_if_needed()
            assert not drawn_clashes(page, selector), (selector, drawn_clashes(page, selector))
        heatmap_titles = page.locator("[data-testid=lvx-step] .annotation-text").count()
        assert heatmap_titles == 6
        equations = page.locator("[data-testid=lvx-equations]")
        equations.scroll_into_view_if_needed()
        fit = equations.evaluate("""(e) => ({fits: e.scrollWidth <= e.clientWidth,
            scrolls: getComputedStyle(e).overflowX,
            lines: Array.from(e.querySelectorAll('.lvx-eq-part'), (p) => p.getBoundingClientRect().right
                              <= e.getBoundingClientRect().right + 1)})""")
        assert fit["fits"] or fit["scrolls"] in ("auto", "scroll"), fit
        assert fit["lines"], fit  # every part of every equation within the screen
        assert all(fit["lines"]), fit
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("[data-testid=lvx]").screenshot(path=str(ARTIFACTS / f"readability-390{query and '-memory'}.png"))
    finally:
        page.context.close()


@in_browser
def test_a_toy_task_tooltip_says_t_once(server, browser):
    """Hovering the over-time figure of the memory task (its labels read "t=3") shows "t=3" once, in the one
    format."""
    page = open_page(browser, server, 1100, "?model_source=toy+task&task=memory")
    try:
        plot = page.locator("[data-testid=lvx-time]")
        plot.scroll_into_view_if_needed()
        x, y = plot.evaluate("""(p) => { const xa = p._fullLayout.xaxis, ya = p._fullLayout.yaxis2;
            const r = p.getBoundingClientRect();
            return [r.left + xa._offset + xa.l2p(3), r.top + ya._offset + ya.l2p(2)]; }""")
        page.mouse.move(x, y)
        page.locator(".hoverlayer .hovertext").first.wait_for(timeout=5000)
        text = page.locator(".hoverlayer .hovertext").first.evaluate(  # SVG: a tspan per line
            "(e) => Array.from(e.querySelectorAll('tspan.line'), (t) => t.textContent).join('\\n') || e.textContent")
        assert "t=t=" not in text, text
        assert text.count("t=3") == 1, text
        assert text.startswith("forget gate f · t=3 · batch 0 · unit 2"), text
    finally:
        page.context.close()


@in_browser
def test_at_390_px_the_drill_down_and_ledger_keep_legends_and_titles_apart(server, browser):
    page = open_page(browser, server, 390, "?num_layers=2&bidirectional=true")
    try:
        for tab, count in (("Unit drill-down", 1), ("Saturation & memory", 2)):
            page.get_by_role("tab", name=tab).click()
            page.wait_for_function("(n) => document.querySelectorAll('[data-testid=stPlotlyChart] .main-svg').length"
                                   " >= n && document.querySelector('[data-testid=stApp]')"
                                   ".getAttribute('data-test-script-state') === 'notRunning'", arg=count)
            page.wait_for_timeout(500)
            for k in range(page.locator("[data-testid=stPlotlyChart]").count()):
                selector = f"[data-testid=stPlotlyChart] >> nth={k}"
                page.locator(selector).scroll_into_view_if_needed()
                chart = f"{selector} >> .js-plotly-plot"
                assert not drawn_clashes(page, chart), (tab, k, drawn_clashes(page, chart))
    finally:
        page.context.close()
