"""Plotly figures, pure functions of a Trace. No streamlit here: they work in a notebook too.

Colour conventions: sigmoid gates f, i, o share one sequential 0..1 scale; g and h (both tanh-bounded)
share a diverging −1..1 scale centred on 0; c is unbounded, so its diverging scale is symmetric around 0
with the bound taken from the data of the whole layer (and the colour bar says so). Each scale is a
Plotly colour axis that several heatmaps share.

Readability: each figure is laid out in pixels, with bands for its title, legend, panel titles and tick labels,
so none of them overlaps another or a plotting area, down to a phone's width (legends get the rows a narrow
column needs). One tooltip format everywhere (`hover_text`); log axes labelled in full (`log_axis`).

Builders return plain dict specs (`*_spec`): cheap to build on every step, since validating Plotly graph
objects costs more than the rest of a rerun. `figure(spec)` makes a validated go.Figure for notebooks; the
tests validate every spec the same way, so the app can skip it (`Prevalidated`).
"""

from __future__ import annotations

import base64
import math
import re
from dataclasses import dataclass
from types import MappingProxyType

import numpy as np
import plotly.colors
import plotly.graph_objects as go

from . import escape
from .trace import Trace

# Explicit lists, not names: plotly.js knows "Viridis" but not plotly.py's "RdBu_r", and specs reach it unvalidated.
# Tuples: every session's figures hold these same objects, so none may be changed in place.
GATE_SCALE = tuple(tuple(stop) for stop in plotly.colors.get_colorscale("Viridis"))
DIVERGING_SCALE = tuple(tuple(stop) for stop in plotly.colors.get_colorscale("RdBu_r"))
# Values one over-time figure may carry (float32 on the wire: ~4/3 × 4 bytes each, base64): ~0.65 MB.
OVER_TIME_MAX_VALUES = 120_000
MARKER = MappingProxyType({"color": "#ff7f0e", "width": 2})  # the chosen unit's box and step's line: dict(MARKER)
DIRECTION_NAMES = ("forward", "reverse")  # direction 0 and 1, in every title, caption and file name
# Points one line may carry; longer sequences are drawn every k-th step (and the title says so).
LINE_MAX_POINTS = 4000

# Bands of a figure, in px (font sizes as set below; Plotly's text boxes are ~1.4 × the font size tall).
TITLE_BAND = 30  # the figure's title (14 px) at the very top
PANEL_TITLE = 22  # above a panel: its title (an annotation, 12 px)
TICK_BAND = 22  # below a panel whose x tick labels show (11 px)
AXIS_TITLE = 20  # below those: the x axis title (12 px)
LEGEND_ROW, LEGEND_PAD = 19, 12  # a horizontal legend (11 px): per row, and its padding
NARROW_PLOT = 280  # px: the plotting width legends are sized for (the app's column on a 390 px wide phone)
COLOUR_BAR_PX = 16  # a colour bar's thickness


def title(text: str) -> dict:
    """A figure's title, alone in the TITLE_BAND at the top, left-aligned (Plotly never wraps a title: keep it
    short)."""
    return {"text": text, "font": {"size": 14}, "x": 0, "xref": "container", "xanchor": "left", "y": 1,
            "yref": "container", "yanchor": "top", "pad": {"t": 8, "l": 8}}


def plain(text: str) -> str:
    """Text as shown: tags dropped, entities as one character (for width estimates)."""
    return re.sub(r"&[#\w]+;", "x", re.sub(r"<[^>]*>", "", text))


def legend_rows(names: list[str], plot_width: float = NARROW_PLOT) -> int:
    """Rows a horizontal legend of `names` takes `plot_width` px wide: Plotly gives every entry the widest one's
    width (a 40 px symbol and ~6.5 px per character of 11 px text)."""
    entry = 44 + 6.5 * max(len(plain(name)) for name in names)
    return math.ceil(len(names) / max(1, int(plot_width // entry)))


def legend_above(names: list[str]) -> tuple[dict, int]:
    """A horizontal legend right above the plotting area, and the px it needs there (rows for a narrow plot)."""
    legend = {"orientation": "h", "x": 0, "xanchor": "left", "y": 1, "yanchor": "bottom", "font": {"size": 11}}
    return legend, legend_rows(names) * LEGEND_ROW + LEGEND_PAD


def vertical_domains(panels: list[tuple[float, float]]) -> tuple[list[list[float]], float]:
    """Paper-fraction domains, top to bottom, of panels given as (px free above it, px tall), and the plotting
    area's height in px: the figure's height is that plus its margins."""
    area = sum(above + tall for above, tall in panels)
    domains, y = [], 0.0
    for above, tall in panels:
        y += above
        domains.append([1 - (y + tall) / area, 1 - y / area])
        y += tall
    return domains, area


def x_axis(text: str, **more) -> dict:
    """An x axis whose tick labels and title fit the TICK_BAND and AXIS_TITLE below its panel under any template
    (Streamlit's pushes an axis title 20 px further out)."""
    return {"automargin": False, "tickfont": {"size": 11}, "title": {"text": text, "font": {"size": 12}, "standoff": 6},
            **more}


def margins(left: int, right: int, top: int, bottom: int) -> dict:
    """Figure margins in px, axes drawn right at the plotting area (no pad: Streamlit's template adds 8 px)."""
    return dict(l=left, r=right, t=top, b=bottom, pad=0)


def colour_bar(text: str, len: float, **place) -> dict:  # noqa: A002 - Plotly's name for it
    """A readable colour bar: 16 px thick, `len` px long, 11 px tick labels, its title on top."""
    return {"title": {"text": text, "side": "top", "font": {"size": 11}}, "thickness": COLOUR_BAR_PX,
            "len": len, "lenmode": "pixels", "tickfont": {"size": 11}, "nticks": 5, "ticks": "outside",
            "ticklen": 3, "outlinewidth": 0, **place}


def _number(value: float) -> str:
    """A tick label in full: 0.05, 20, 1e-05 (never a bare mantissa)."""
    return f"{value:.4g}" if 1e-4 <= abs(value) < 1e5 else f"{value:.0e}"


def log_axis(values) -> dict:
    """A log axis over the positive, finite `values`: its range, and at most eight ticks at 1-2-5 steps (coarser
    over many decades, finer within one) labelled in full: "0.05", where Plotly's own minor ticks read a bare "5"."""
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v) & (v > 0)]
    if v.size == 0:
        return {"type": "log"}
    lo, hi = math.log10(v.min()), math.log10(v.max())
    pad = max(0.05, 0.05 * (hi - lo))
    lo, hi = lo - pad, hi + pad
    if hi - lo < 1:  # within a decade: round steps (1.2, 1.4, 1.6), as a linear axis would have
        ticks = _round_ticks(10 ** lo, 10 ** hi)
    else:
        for mantissas in ((1, 2, 3, 5, 7), (1, 2, 5), (1,)):  # the finest that fits
            ticks = [m * 10.0 ** k for k in range(math.floor(lo), math.ceil(hi) + 1) for m in mantissas
                     if lo <= math.log10(m) + k <= hi]
            if len(ticks) <= 8:
                break
        ticks = ticks[::math.ceil(len(ticks) / 8)]  # many decades: every k-th power of ten
    return {"type": "log", "range": [lo, hi], "tickvals": ticks, "ticktext": [_number(x) for x in ticks]}


def _round_ticks(low: float, high: float, most: int = 6) -> list[float]:
    """Ticks at a round step (1, 2 or 5 × 10^k), at most `most` of them within [low, high]."""
    for k in range(math.floor(math.log10(high - low)) - 2, math.ceil(math.log10(high)) + 1):
        for m in (1, 2, 5):
            step = m * 10.0 ** k
            first, last = math.ceil(low / step), math.floor(high / step)
            if 0 < last - first + 1 <= most:
                return [float(f"{n * step:.12g}") for n in range(first, last + 1)]
    return [float(f"{(low + high) / 2:.3g}")]


def time_ticks(labels: list[str], start: int, stop: int, width: float = 560) -> dict:
    """Tick labels for steps [start, stop) of a time axis, every k-th step so that they sit side by side,
    unrotated, in `width` px."""
    shown = [escape.plotly(label) for label in labels[start:stop]]
    every = max(1, math.ceil(len(shown) * (7 * max(map(len, shown), default=1) + 10) / width))
    ticks = list(range(0, len(shown), every))
    if ticks[-1] != len(shown) - 1:  # the last step too ("recall"), in place of a neighbour too close to it
        ticks = ticks[:-1] if len(shown) - 1 - ticks[-1] < every * 0.8 and len(ticks) > 1 else ticks
        ticks.append(len(shown) - 1)
    return {"tickvals": [start + k for k in ticks], "ticktext": [shown[k] for k in ticks], "tickangle": 0}


def step_label(t: int, label: str | None = None) -> str:
    """ "t=5", with the step's label when it says more than that: "t=0 (store)"."""
    return f"t={t}" + (f" ({escape.plotly(label)})" if label is not None and label not in (str(t), f"t={t}")
                       else "")


def hover_text(what: str, time: str | None = None, batch: int | str | None = None, unit: int | str | None = None,
               where: str = "", value: str = "value %{z:.4f}") -> str:
    """The one tooltip format (the explorer's too): "forget gate f · t=5 · batch 0 · unit 3 · layer 1 · reverse",
    then a line with the value. On a time axis `time` is "t=%{x:d}": a bare %{x} prints the axis's tick label, and
    a toy task's labels already read "t=5"."""
    parts = [what, time, None if batch is None else f"batch {batch}", None if unit is None else f"unit {unit}",
             where or None]
    return " · ".join(str(p) for p in parts if p is not None) + f"<br>{value}<extra></extra>"


def place(layer: int, direction: int, num_layers: int, num_directions: int) -> str:
    """ "layer 1 · reverse": the layer where the model has several, the direction where it has two, else ""."""
    parts = [f"layer {layer}"] if num_layers > 1 else []
    if num_directions > 1:
        parts.append(DIRECTION_NAMES[direction])
    return " · ".join(parts)


def position(trace: Trace, layer: int, direction: int) -> str:
    """ "layer 1 · reverse" where the model has more than one layer or direction, else "" (nothing to tell)."""
    return place(layer, direction, trace.num_layers, trace.num_directions)


@dataclass(frozen=True)
class Quantity:
    key: str
    words: str
    symbol: str  # as HTML, for Plotly titles
    colour_axis: str

    @property
    def title(self) -> str:
        return f"{self.words} {self.symbol}"

    @property
    def named(self) -> str:
        """As tooltips name it: "forget gate f"."""
        return f"{self.words} {self.key}"


QUANTITIES = {
    "f": Quantity("f", "forget gate", "f<sub>t</sub>", "coloraxis"),
    "i": Quantity("i", "input gate", "i<sub>t</sub>", "coloraxis"),
    "o": Quantity("o", "output gate", "o<sub>t</sub>", "coloraxis"),
    "g": Quantity("g", "candidate", "g<sub>t</sub> (C̃<sub>t</sub>)", "coloraxis2"),
    "c": Quantity("c", "cell state", "C<sub>t</sub>", "coloraxis3"),
    "h": Quantity("h", "hidden state", "h<sub>t</sub>", "coloraxis2"),
}
DISPLAY_ORDER = ("f", "i", "o", "g", "c", "h")


def typed_array(values: np.ndarray) -> dict:
    """Plotly.js's typed-array form: float32 bytes in base64 (a third of JSON text, and float32 is plenty
    for a colour; the equation panel reads exact values from the trace)."""
    array = np.ascontiguousarray(values, dtype=np.float32)
    return {"dtype": "f4", "bdata": base64.b64encode(array.tobytes()).decode("ascii"),
            "shape": ", ".join(map(str, array.shape))}


def cell_bound(trace: Trace, layer: int, direction: int) -> float:
    """max |c| over the whole layer-direction: c's colour range stays put while stepping through time. NaN (past a
    packed sequence's end) is left out."""
    def bound() -> float:
        c = np.abs(trace.array("c")[layer, direction])
        return float(np.fmax.reduce(c, axis=None, initial=0.0)) or 1.0

    return trace.memo(("abs max c", layer, direction), bound)


def colour_axes(trace: Trace, layer: int, direction: int, bars: dict[str, dict]) -> dict:
    """The three shared colour axes; `bars[axis]` places each one's colour bar: its length in px ("len") and
    position (x, y, anchors)."""
    bound = cell_bound(trace, layer, direction)
    axes = {
        "coloraxis": (dict(cmin=0.0, cmax=1.0, colorscale=GATE_SCALE), "f, i, o"),
        "coloraxis2": (dict(cmin=-1.0, cmax=1.0, cmid=0.0, colorscale=DIVERGING_SCALE), "g, h"),
        "coloraxis3": (dict(cmin=-bound, cmax=bound, cmid=0.0, colorscale=DIVERGING_SCALE),
                       f"c ±{bound:.3g}<br>from data"),
    }
    return {name: axis | {"colorbar": colour_bar(text, **bars[name])} for name, (axis, text) in axes.items()}


# --- the six quantities at one step ------------------------------------------------------------

STEP_COLUMNS = ((0.0, 0.22), (0.27, 0.49), (0.54, 0.76))  # colour bars to the right of 0.8


def step_spec(trace: Trace, t: int, layer: int = 0, direction: int = 0, highlight_unit: int | None = None) -> dict:
    """f, i, o (top) and g, C, h (bottom) at step t: each batch elements (rows) × units (columns)."""
    batch, units = trace.batch_size, trace.config.hidden_size
    h_units = trace.h.shape[-1]
    tall = 90 + 18 * min(batch, 16)
    domains, area = vertical_domains([(PANEL_TITLE, tall), (TICK_BAND + PANEL_TITLE, tall)])
    where = position(trace, layer, direction)
    data, layout, annotations, shapes = [], {}, [], []
    for k, name in enumerate(DISPLAY_ORDER):
        row, col = divmod(k, 3)
        axis = "" if k == 0 else str(k + 1)
        width = h_units if name == "h" else units
        q = QUANTITIES[name]
        data.append(dict(type="heatmap", z=typed_array(trace.array(name)[layer, direction, t]), name=name,
                         coloraxis=q.colour_axis, xaxis=f"x{axis}", yaxis=f"y{axis}",
                         hovertemplate=hover_text(q.named, step_label(t), "%{y}", "%{x}", where)))
        layout[f"xaxis{axis}"] = x_axis("unit" if row == 1 else "", domain=STEP_COLUMNS[col], anchor=f"y{axis}",
                                        dtick=_tick_step(width))
        layout[f"yaxis{axis}"] = {"domain": domains[row], "anchor": f"x{axis}", "autorange": "reversed",
                                  "dtick": _tick_step(batch), "tickfont": {"size": 11},
                                  "title": {"text": "batch" if col == 0 else "", "font": {"size": 12}}}
        annotations.append(_panel_title(f"<b>{q.title}</b>", STEP_COLUMNS[col][0], domains[row][1]))
        if highlight_unit is not None and highlight_unit < width:
            shapes.append(_column_box(highlight_unit, f"x{axis}", f"y{axis}", -0.5, batch - 0.5))
    top, bottom = (dict(y=domains[row][1] + PANEL_TITLE / area, yanchor="top", len=tall + PANEL_TITLE)
                   for row in (0, 1))  # beside each row, title band included
    layout |= colour_axes(trace, layer, direction, {"coloraxis": dict(x=0.8, xanchor="left", **top),
                                                    "coloraxis2": dict(x=0.8, xanchor="left", **bottom),
                                                    "coloraxis3": dict(x=0.9, xanchor="left", **bottom)})
    margin = margins(50, 10, TITLE_BAND, TICK_BAND + AXIS_TITLE)
    layout |= dict(annotations=annotations, shapes=shapes, height=round(area + margin["t"] + margin["b"]),
                   margin=margin, title=title(f"step {step_label(t)}" + (f" · {where}" if where else "")))
    return dict(data=data, layout=layout)


def _panel_title(text: str, x: float, top: float, size: int = 12) -> dict:
    """A panel's title: in the PANEL_TITLE band above its plotting area (`top`, a paper fraction)."""
    return dict(text=text, x=x, y=top, xref="paper", yref="paper", xanchor="left", yanchor="bottom",
                showarrow=False, font={"size": size})


def step_heatmap_spec(trace: Trace, name: str, t: int, layer: int = 0, direction: int = 0) -> dict:
    """One quantity at step t, batch × units, on its conventional colour scale (for notebooks)."""
    z = trace.array(name)[layer, direction, t]
    q, where = QUANTITIES[name], position(trace, layer, direction)
    tall = 120 + 18 * min(trace.batch_size, 16)
    bars = {a: dict(x=1.02, xanchor="left", y=1, yanchor="top", len=tall)
            for a in ("coloraxis", "coloraxis2", "coloraxis3")}
    axis = q.colour_axis
    return dict(
        data=[dict(type="heatmap", z=typed_array(z), coloraxis=axis,
                   hovertemplate=hover_text(q.named, step_label(t), "%{y}", "%{x}", where))],
        layout={axis: colour_axes(trace, layer, direction, bars)[axis],
                "title": title(f"{q.title} · {step_label(t)}" + (f" · {where}" if where else "")),
                "height": TITLE_BAND + tall + TICK_BAND + AXIS_TITLE + 10,
                "margin": margins(60, 90, TITLE_BAND + 10, TICK_BAND + AXIS_TITLE),
                "xaxis": x_axis("unit"),
                "yaxis": {"title": {"text": "batch"}, "autorange": "reversed"}})


# --- every quantity over time ------------------------------------------------------------------

def time_window(seq_len: int, t: int, columns_budget: int) -> tuple[int, int]:
    """[start, stop) holding t, at most `columns_budget` steps; windows move in half-window strides so
    the figure's data changes only every so many steps."""
    width = max(1, min(seq_len, columns_budget))
    stride = max(1, width // 2)
    start = min(max(0, (t // stride) * stride - stride // 2), seq_len - width)
    return start, start + width


def over_time_spec(trace: Trace, t: int, layer: int = 0, direction: int = 0, batch: int = 0,
                   time_labels: list[str] | None = None, max_values: int = OVER_TIME_MAX_VALUES) -> dict:
    """Each quantity as units × time, stacked over a shared time axis, with a box marking step t.

    Long sequences show a window of steps around t, sized so the figure stays under `max_values`.
    """
    n, tall = len(DISPLAY_ORDER), 100
    domains, area = vertical_domains([(PANEL_TITLE, tall)] * n)
    start, stop = time_window(trace.seq_len, t, max_values // (n * trace.config.hidden_size))
    where = position(trace, layer, direction)
    data, layout, annotations = [], {}, []
    for k, name in enumerate(DISPLAY_ORDER):
        z = trace.array(name)[layer, direction, start:stop, batch, :].T  # (units, window)
        axis = "" if k == 0 else str(k + 1)
        q = QUANTITIES[name]
        data.append(dict(type="heatmap", z=typed_array(z), x0=start, dx=1, coloraxis=q.colour_axis, xaxis="x",
                         yaxis=f"y{axis}", name=name,
                         hovertemplate=hover_text(q.named, "t=%{x:d}", batch, "%{y}", where)))
        layout[f"yaxis{axis}"] = {"domain": domains[k], "anchor": "x", "tickfont": {"size": 11},
                                  "autorange": "reversed", "title": {"text": "unit", "font": {"size": 12}}}
        annotations.append(_panel_title(f"<b>{q.title}</b>", 0, domains[k][1]))
    xaxis = x_axis("time step t", anchor=f"y{n}", range=[start - 0.5, stop - 0.5])
    if time_labels is not None and stop - start <= 64:
        xaxis |= time_ticks(time_labels, start, stop)
    window = "" if stop - start == trace.seq_len else f" · steps {start}–{stop - 1} of {trace.seq_len}"

    def beside(first: int, rows: int, x: float) -> dict:  # a bar beside `rows` rows from `first`, titles included
        return dict(x=x, xanchor="left", y=domains[first][1] + PANEL_TITLE / area, yanchor="top",
                    len=rows * (tall + PANEL_TITLE) - PANEL_TITLE)

    layout |= colour_axes(trace, layer, direction, {"coloraxis": beside(0, 3, 1.02), "coloraxis2": beside(3, 3, 1.02),
                                                    "coloraxis3": beside(4, 2, 1.12)})
    margin = margins(60, 150, TITLE_BAND, TICK_BAND + AXIS_TITLE)
    layout |= dict(
        xaxis=xaxis, annotations=annotations, height=round(area + margin["t"] + margin["b"]), margin=margin,
        shapes=[_column_box(t, "x", "paper", 0, domains[0][1])],
        title=title(f"over time · {where or f'layer {layer}'} · batch {batch}{window}"),
    )
    return dict(data=data, layout=layout)


def _column_box(x: int, xref: str, yref: str, y0: float, y1: float) -> dict:
    """An outlined box around column x: the current step, or a highlighted unit."""
    return dict(type="rect", xref=xref, yref=yref, x0=x - 0.5, x1=x + 0.5, y0=y0, y1=y1, line=dict(MARKER),
                fillcolor="rgba(0,0,0,0)")


def _tick_step(n: int) -> int:
    """Tick spacing that keeps at most about five labels on a small panel's axis."""
    return max(1, math.ceil(n / 5))


# --- one unit, and saturation ----------------------------------------------------------------------

LINE_COLOURS = {"f": "#1f77b4", "i": "#2ca02c", "o": "#9467bd", "g": "#ff7f0e", "c": "#d62728", "h": "#17becf"}
# The drill-down's three scales: the gates on 0..1, the tanh-bounded g and h on −1..1, c on its own range
# (tuples: shared by every session's figures, so copied into each).
UNIT_PLOTS = (
    (("f", "i", "o"), "gates f, i, o", (("range", (-0.05, 1.05)), ("tickvals", (0, 0.5, 1)))),
    (("g", "h"), "g, h", (("range", (-1.1, 1.1)), ("tickvals", (-1, 0, 1)))),
    (("c",), "cell c", (("nticks", 4), ("zeroline", True))),
)
UNIT_PLOT_PX, UNIT_PLOT_GAP = 96, 10


def unit_spec(trace: Trace, unit: int, batch: int = 0, t: int | None = None,
              time_labels: list[str] | None = None) -> dict:
    """One unit's f, i, o, g, c and h over time as lines: per layer and direction a panel of three plots on
    their own scales (gates 0..1, g and h −1..1, c its own range), stacked; step t marked."""
    panels = [(layer, d) for layer in range(trace.num_layers) for d in range(trace.num_directions)]
    names = [name for name in DISPLAY_ORDER if name != "h" or unit < trace.h.shape[-1]]  # projected h: fewer units
    legend, legend_px = legend_above(names)
    stride = line_stride(trace.seq_len)
    steps = np.arange(0, trace.seq_len, stride)
    labels = _step_labels(time_labels, steps)
    moment = "t=%{x:d}" + ("%{customdata}" if labels else "")
    blocks = []
    for k, (layer, d) in enumerate(panels):
        titled = position(trace, layer, d) != ""
        first = (PANEL_TITLE if titled else 4) + (UNIT_PLOT_GAP if k else 0)
        blocks += [(first, UNIT_PLOT_PX)] + [(UNIT_PLOT_GAP, UNIT_PLOT_PX)] * (len(UNIT_PLOTS) - 1)
    domains, area = vertical_domains(blocks)
    data, layout, annotations, shapes = [], {}, [], []
    for k, (layer, d) in enumerate(panels):
        where = position(trace, layer, d)
        if where:
            annotations.append(_panel_title(f"<b>{where}</b>", 0, domains[k * len(UNIT_PLOTS)][1], size=13))
        for j, (shown, axis_title, scale) in enumerate(UNIT_PLOTS):
            index = k * len(UNIT_PLOTS) + j
            axis = "" if index == 0 else str(index + 1)
            for name in (n for n in shown if n in names):
                y = trace.array(name)[layer, d, ::stride, batch, unit]
                data.append(dict(type="scatter", mode="lines", x=steps, y=typed_array(y), name=name,
                                 legendgroup=name, showlegend=k == 0, xaxis="x", yaxis=f"y{axis}",
                                 line={"color": LINE_COLOURS[name], "width": 1.6},
                                 hovertemplate=hover_text(QUANTITIES[name].named, moment, batch, unit, where,
                                                          "value %{y:.4f}"),
                                 **({"customdata": labels} if labels else {})))
            layout[f"yaxis{axis}"] = {"domain": domains[index], "anchor": "x", "tickfont": {"size": 11},
                                      "title": {"text": axis_title, "font": {"size": 11}},
                                      **{key: list(v) if isinstance(v, tuple) else v for key, v in scale}}
            if t is not None:
                shapes.append(dict(type="line", xref="x", yref=f"y{axis} domain", x0=t, x1=t, y0=0, y1=1,
                                   line=dict(MARKER)))
    xaxis = x_axis("time step t", anchor=f"y{len(blocks)}", range=[-0.5, trace.seq_len - 0.5])  # room for end labels
    if time_labels is not None and trace.seq_len <= 64:
        xaxis |= time_ticks(time_labels, 0, trace.seq_len)
    margin = margins(60, 10, TITLE_BAND + legend_px, TICK_BAND + AXIS_TITLE)
    layout |= dict(xaxis=xaxis, annotations=annotations, shapes=shapes, legend=legend, margin=margin,
                   height=round(area + margin["t"] + margin["b"]),
                   title=title(f"unit {unit} over time · batch {batch}" + _every(stride, trace.seq_len)))
    return dict(data=data, layout=layout)


def _step_labels(time_labels: list[str] | None, steps: np.ndarray) -> list[str] | None:
    """Per drawn step, " (label)" where its label says more than t (a character, "store"), else ""; None when no
    label does."""
    if time_labels is None or len(time_labels) <= int(steps[-1]):
        return None
    extra = [step_label(int(s), time_labels[s])[len(f"t={int(s)}"):] for s in steps]
    return extra if any(extra) else None


def line_stride(seq_len: int) -> int:
    return max(1, -(-seq_len // LINE_MAX_POINTS))


def _every(stride: int, seq_len: int) -> str:
    return "" if stride == 1 else f" · a point every {stride} steps of {seq_len:,}"


def saturation_spec(fractions: dict[str, np.ndarray], low: float, high: float,
                    highlight_unit: int | None = None) -> dict:
    """Karpathy et al. (2015): per gate, each unit's fraction of steps left-saturated (< low) against
    right-saturated (> high); a point per unit, coloured by layer. fractions[g]: (L, D, H, 2)."""
    gates = [g for g in ("f", "i", "o") if g in fractions]
    data, layout, annotations = [], {}, []
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]
    L, D = fractions[gates[0]].shape[:2]
    labels = [place(layer, d, 2, D) for layer in range(L) for d in range(D)]  # always says the layer
    legend, legend_px = legend_above(labels)
    (domain,), area = vertical_domains([(PANEL_TITLE, 220)])
    for k, gate in enumerate(gates):
        axis = "" if k == 0 else str(k + 1)
        H = fractions[gate].shape[2]
        for layer in range(L):
            for d in range(D):
                frac, label = fractions[gate][layer, d], labels[layer * D + d]
                sizes = [14 if u == highlight_unit else 7 for u in range(H)]
                data.append(dict(type="scatter", mode="markers", x=frac[:, 0].tolist(), y=frac[:, 1].tolist(),
                                 name=label, legendgroup=label, showlegend=k == 0, xaxis=f"x{axis}",
                                 yaxis=f"y{axis}", customdata=list(range(H)),
                                 marker={"color": palette[(layer * D + d) % len(palette)], "size": sizes,
                                         "opacity": 0.75, "symbol": "circle" if d == 0 else "diamond"},
                                 hovertemplate=hover_text(
                                     QUANTITIES[gate].named, unit="%{customdata}", where=label,
                                     value=f"below {low:g} %{{x:.0%}} of steps, above {high:g} %{{y:.0%}}")))
        left, right = k / len(gates), (k + 1) / len(gates) - 0.07
        unit_square = {"range": [-0.03, 1.03], "tickvals": [0, 0.5, 1], "tickfont": {"size": 11}}
        layout[f"xaxis{axis}"] = x_axis(f"below {low:g}", domain=[left, right], anchor=f"y{axis}", **unit_square)
        layout[f"yaxis{axis}"] = unit_square | {  # one scale, labelled once: no labels between the panels
            "domain": domain, "anchor": f"x{axis}", "showticklabels": k == 0,
            "title": {"text": f"above {high:g}" if k == 0 else "", "font": {"size": 11}}}
        annotations.append(_panel_title(f"<b>{QUANTITIES[gate].words}</b>", left, domain[1]))
    margin = margins(50, 10, legend_px + 4, TICK_BAND + AXIS_TITLE)
    layout |= dict(height=round(area + margin["t"] + margin["b"]), margin=margin, legend=legend,
                   annotations=annotations,
                   shapes=[dict(type="line", xref=f"x{'' if k == 0 else k + 1}", yref=f"y{'' if k == 0 else k + 1}",
                                x0=0, y0=1, x1=1, y1=0, line={"color": "#bbbbbb", "dash": "dot", "width": 1})
                           for k in range(len(gates))])
    return dict(data=data, layout=layout)


def ledger_spec(ledger: dict[str, np.ndarray], unit: int, layer: int, direction: int = 0, *,
                where: str | None = None, batch: int | None = None) -> dict:
    """The memory ledger of one unit: per step what c keeps (f ⊙ c_{t−1}) and writes (i ⊙ g); and every
    unit's effective time constant −1/log(mean f). `where` names the layer and direction in the title
    (`position(trace, layer, direction)`; by default "layer 1 · reverse" from the indices alone)."""
    if where is None:
        where = f"layer {layer}" + (f" · {DIRECTION_NAMES[1]}" if direction else "")
    stride = line_stride(len(ledger["kept"]))
    kept, written = ledger["kept"][::stride, unit], ledger["written"][::stride, unit]
    steps = np.arange(0, len(ledger["kept"]), stride)
    tau = np.asarray(ledger["time_constant"], dtype=np.float64)
    shown = np.where(np.isfinite(tau) & (tau > 0), tau, np.nan)  # stuck at 1 keeps forever, at 0 not at all: no bar
    colours = ["#d62728" if u == unit else "#1f77b4" for u in range(len(tau))]
    previous = "t+1" if direction else "t−1"
    kept_name = f"kept f⊙c<sub>{previous}</sub>"
    lines = ((kept, kept_name, kept_name, {"color": LINE_COLOURS["f"]}),  # (y, legend, tooltip, line)
             (written, "written i⊙g", "written i⊙g", {"color": LINE_COLOURS["g"]}),
             (kept + written, "c<sub>t</sub>: the sum", "cell state c", {"color": LINE_COLOURS["c"], "dash": "dot"}))
    data = [dict(type="scatter", mode="lines", x=steps, y=typed_array(y), name=name, line=line,
                 hovertemplate=hover_text(what, "t=%{x:d}", batch, unit, where, "value %{y:.4f}"))
            for y, name, what, line in lines]
    data.append(dict(type="bar", x=list(range(len(tau))), y=[None if np.isnan(v) else float(v) for v in shown],
                     marker={"color": colours}, name="time constant", xaxis="x2", yaxis="y2", showlegend=False,
                     hovertemplate=hover_text("time constant −1/ln(mean f)", None, batch, "%{x}", where,
                                              "value %{y:.2f} steps")))
    legend, legend_px = legend_above([name for _y, name, _what, _line in lines])
    (top, bottom), area = vertical_domains([(PANEL_TITLE, 190), (TICK_BAND + AXIS_TITLE + PANEL_TITLE, 150)])
    margin = margins(60, 10, TITLE_BAND + legend_px, TICK_BAND + AXIS_TITLE)
    layout = dict(
        xaxis=x_axis("time step t", domain=[0, 1], anchor="y", range=[-0.5, len(ledger["kept"]) - 0.5]),
        yaxis={"domain": top, "anchor": "x", "tickfont": {"size": 11}, "title": {"text": "", "font": {"size": 11}}},
        xaxis2=x_axis("unit", domain=[0, 1], anchor="y2"),
        yaxis2={"domain": bottom, "anchor": "x2", "title": {"text": "steps", "font": {"size": 11}},
                "tickfont": {"size": 11}, **log_axis(shown)},
        annotations=[_panel_title(f"<b>unit {unit}</b>{'' if batch is None else f' · batch {batch}'}: what c keeps "
                                  "and writes", 0, top[1]),
                     _panel_title("<b>each unit's time constant</b> (steps, log)", 0, bottom[1])],
        height=round(area + margin["t"] + margin["b"]), margin=margin, legend=legend,
        title=title(" · ".join(p for p in ("memory ledger", f"unit {unit}", where) if p)
                    + _every(stride, len(ledger["kept"]))),
    )
    return dict(data=data, layout=layout)


def loss_spec(losses: list[float], threshold: float) -> dict:
    """A training loss curve against its stated target (labelled in the right margin, clear of the curve)."""
    steps = list(range(1, len(losses) + 1))
    values = list(map(float, losses))
    return dict(
        data=[dict(type="scatter", mode="lines", x=steps, y=values, name="loss",
                   hovertemplate=hover_text("loss", "training step %{x}", value="value %{y:.4g}"))],
        layout=dict(height=260, margin=margins(60, 70, TITLE_BAND + 6, TICK_BAND + AXIS_TITLE),
                    title=title("training loss (MSE, log scale)"), showlegend=False,
                    xaxis=x_axis("training step"),
                    yaxis={"title": {"text": "MSE", "font": {"size": 11}}, "tickfont": {"size": 11},
                           **log_axis(values + [threshold])},
                    shapes=[dict(type="line", xref="paper", x0=0, x1=1, y0=threshold, y1=threshold,
                                 line={"color": "#2ca02c", "dash": "dash"})],
                    annotations=[dict(text=f"target<br>{threshold:g}", xref="paper", x=1, xshift=6,
                                      y=math.log10(threshold), xanchor="left", yanchor="middle", showarrow=False,
                                      font={"size": 11, "color": "#2ca02c"})]),
    )


# --- to Plotly figures ---------------------------------------------------------------------------

def figure(spec: dict) -> go.Figure:
    """A validated Plotly figure of a spec (for notebooks, HTML export and the tests)."""
    return go.Figure(spec)


def step_figure(trace: Trace, t: int, layer: int = 0, direction: int = 0, highlight_unit: int | None = None):
    return figure(step_spec(trace, t, layer, direction, highlight_unit))


def step_heatmap(trace: Trace, name: str, t: int, layer: int = 0, direction: int = 0) -> go.Figure:
    return figure(step_heatmap_spec(trace, name, t, layer, direction))


def over_time_figure(trace: Trace, t: int, layer: int = 0, direction: int = 0, batch: int = 0,
                     time_labels: list[str] | None = None) -> go.Figure:
    return figure(over_time_spec(trace, t, layer, direction, batch, time_labels))


def unit_figure(trace: Trace, unit: int, batch: int = 0, t: int | None = None) -> go.Figure:
    return figure(unit_spec(trace, unit, batch, t))


class Prevalidated(go.Figure):
    """A spec that the tests validate, handed to a consumer that calls to_dict() (st.plotly_chart does).

    to_dict() returns the spec as it is: no validation and no deep copy on every step. Only for specs
    built by this module; use `figure(spec)` for anything else. It skips go.Figure's own initialisation
    too (a deep copy of the default template), so it is a carrier only: to_dict() is all it offers.
    """

    def __init__(self, spec: dict):  # noqa: D107 - deliberately no super().__init__(): see above
        self._spec = spec

    def to_dict(self) -> dict:
        return self._spec
