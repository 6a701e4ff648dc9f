"""Plotly figures, pure functions of a Trace. No streamlit here: they work in a notebook too.

Colour conventions: sigmoid gates f, i, o share one sequential 0..1 scale; g and h (both tanh-bounded)
share a diverging −1..1 scale centred on 0; c is unbounded, so its diverging scale is symmetric around 0
with the bound taken from the data of the whole layer (and the colour bar says so). Each scale is a
Plotly colour axis that several heatmaps share.

Builders return plain dict specs (`*_spec`): cheap to build on every step, since validating Plotly graph
objects costs more than the rest of a rerun. `figure(spec)` makes a validated go.Figure for notebooks; the
tests validate every spec the same way, so the app can skip it (`Prevalidated`).
"""

from __future__ import annotations

import base64
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


@dataclass(frozen=True)
class Quantity:
    key: str
    words: str
    symbol: str  # as HTML, for Plotly titles
    colour_axis: str

    @property
    def title(self) -> str:
        return f"{self.words} {self.symbol}"


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
    """The three shared colour axes; `bars` places each one's colour bar (x, y, len)."""
    bound = cell_bound(trace, layer, direction)
    axes = {
        "coloraxis": dict(cmin=0.0, cmax=1.0, colorscale=GATE_SCALE, title="f, i, o<br>0..1"),
        "coloraxis2": dict(cmin=-1.0, cmax=1.0, cmid=0.0, colorscale=DIVERGING_SCALE, title="g, h<br>−1..1"),
        "coloraxis3": dict(cmin=-bound, cmax=bound, cmid=0.0, colorscale=DIVERGING_SCALE,
                           title=f"C: ±{bound:.3g}<br>(from data)"),
    }
    layout = {}
    for name, axis in axes.items():
        title = axis.pop("title")
        layout[name] = axis | {"colorbar": {"title": {"text": title, "side": "top"}, "thickness": 12,
                                            "yanchor": "middle", **bars[name]}}
    return layout


def _hover(name: str, t: int | str, batch: int | str, unit: str = "%{x}") -> str:
    q = QUANTITIES[name]
    return f"{q.words} {name}<br>t={t}<br>batch {batch}<br>unit {unit}<br>value %{{z:.4f}}<extra></extra>"


# --- the six quantities at one step ------------------------------------------------------------

STEP_COLUMNS = ((0.0, 0.26), (0.32, 0.58), (0.64, 0.90))


def step_spec(trace: Trace, t: int, layer: int = 0, direction: int = 0, highlight_unit: int | None = None) -> dict:
    """f, i, o (top) and g, C, h (bottom) at step t: each batch elements (rows) × units (columns)."""
    batch, units = trace.batch_size, trace.config.hidden_size
    h_units = trace.h.shape[-1]
    data, layout, annotations, shapes = [], {}, [], []
    for k, name in enumerate(DISPLAY_ORDER):
        row, col = divmod(k, 3)
        top = 1.0 if row == 0 else 0.44
        axis = "" if k == 0 else str(k + 1)
        width = h_units if name == "h" else units
        data.append(dict(type="heatmap", z=typed_array(trace.array(name)[layer, direction, t]), name=name,
                         coloraxis=QUANTITIES[name].colour_axis,
                         hovertemplate=_hover(name, t, "%{y}"), xaxis=f"x{axis}", yaxis=f"y{axis}"))
        layout[f"xaxis{axis}"] = {"domain": STEP_COLUMNS[col], "anchor": f"y{axis}", "dtick": _tick_step(width),
                                  "title": {"text": "unit" if row == 1 else ""}}  # once: keeps titles apart
        layout[f"yaxis{axis}"] = {"domain": [top - 0.34, top - 0.06], "anchor": f"x{axis}",
                                  "autorange": "reversed", "dtick": _tick_step(batch),
                                  "title": {"text": "batch" if col == 0 else ""}}
        annotations.append(dict(text=f"<b>{QUANTITIES[name].title}</b> · t={t}", x=STEP_COLUMNS[col][0], y=top,
                                xref="paper", yref="paper",
                                xanchor="left", yanchor="top", showarrow=False, font={"size": 13}))
        if highlight_unit is not None and highlight_unit < width:
            shapes.append(_column_box(highlight_unit, f"x{axis}", f"y{axis}", -0.5, batch - 0.5))
    layout |= colour_axes(trace, layer, direction, {"coloraxis": dict(x=0.93, y=0.78, len=0.4),
                                                    "coloraxis2": dict(x=0.93, y=0.22, len=0.4),
                                                    "coloraxis3": dict(x=1.02, y=0.22, len=0.4)})
    where = position(trace, layer, direction)
    height = 2 * (90 + 20 * min(batch, 16)) + 60 + (30 if where else 0)  # room for the title that says where
    layout |= dict(annotations=annotations, shapes=shapes, height=height, margin=dict(l=50, r=10, t=40 if where else 10,
                                                                                      b=40))
    if where:
        layout["title"] = {"text": f"step t={t} · {where}", "font": {"size": 14}}
    return dict(data=data, layout=layout)


def position(trace: Trace, layer: int, direction: int) -> str:
    """ "layer 1 · reverse" where the model has more than one layer or direction, else "" (nothing to tell)."""
    parts = [f"layer {layer}"] if trace.num_layers > 1 else []
    if trace.num_directions > 1:
        parts.append(DIRECTION_NAMES[direction])
    return " · ".join(parts)


def step_heatmap_spec(trace: Trace, name: str, t: int, layer: int = 0, direction: int = 0) -> dict:
    """One quantity at step t, batch × units, on its conventional colour scale (for notebooks)."""
    z = trace.array(name)[layer, direction, t]
    layout = colour_axes(trace, layer, direction, {a: {} for a in ("coloraxis", "coloraxis2", "coloraxis3")})
    axis = QUANTITIES[name].colour_axis
    return dict(
        data=[dict(type="heatmap", z=typed_array(z), coloraxis=axis, hovertemplate=_hover(name, t, "%{y}"))],
        layout={axis: layout[axis], "title": {"text": f"{QUANTITIES[name].title} · t={t}"},
                "xaxis": {"title": {"text": "unit"}},
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
    n, gap = len(DISPLAY_ORDER), 0.03
    row_height = (1 - gap * (n - 1)) / n
    start, stop = time_window(trace.seq_len, t, max_values // (n * trace.config.hidden_size))
    data, layout, annotations = [], {}, []
    for k, name in enumerate(DISPLAY_ORDER):
        z = trace.array(name)[layer, direction, start:stop, batch, :].T  # (units, window)
        top = 1 - k * (row_height + gap)
        axis = "" if k == 0 else str(k + 1)
        data.append(dict(type="heatmap", z=typed_array(z), x0=start, dx=1,
                         coloraxis=QUANTITIES[name].colour_axis, xaxis="x", yaxis=f"y{axis}", name=name,
                         hovertemplate=_hover(name, "%{x}", batch, unit="%{y}")))
        layout[f"yaxis{axis}"] = {"domain": [max(0.0, top - row_height), top], "anchor": "x",
                                  "title": {"text": "unit"}}
        annotations.append(dict(text=f"<b>{QUANTITIES[name].title}</b>", x=0, y=top, xref="paper", yref="paper",
                                xanchor="left", yanchor="bottom", showarrow=False, font={"size": 12}))
    xaxis = {"title": {"text": "time step t"}, "anchor": f"y{n}", "range": [start - 0.5, stop - 0.5]}
    if time_labels is not None and stop - start <= 64:
        xaxis |= {"tickvals": list(range(start, stop)),
                  "ticktext": [escape.plotly(x) for x in time_labels[start:stop]]}
    window = "" if stop - start == trace.seq_len else \
        f" · steps {start}–{stop - 1} of {trace.seq_len} (a window around t)"
    layout |= colour_axes(trace, layer, direction, {"coloraxis": dict(x=1.01, y=0.75, len=0.45),
                                                    "coloraxis2": dict(x=1.01, y=0.25, len=0.45),
                                                    "coloraxis3": dict(x=1.09, y=0.25, len=0.45)})
    layout |= dict(
        xaxis=xaxis, annotations=annotations, height=110 * n + 80, margin=dict(l=60, r=10, t=40, b=40),
        shapes=[_column_box(t, "x", "paper", 0, 1)],
        title={"text": "over time · " + (position(trace, layer, direction) or f"layer {layer}") + f" · batch {batch}"
               + window, "font": {"size": 14}},
    )
    return dict(data=data, layout=layout)


def _column_box(x: int, xref: str, yref: str, y0: float, y1: float) -> dict:
    """An outlined box around column x: the current step, or a highlighted unit."""
    return dict(type="rect", xref=xref, yref=yref, x0=x - 0.5, x1=x + 0.5, y0=y0, y1=y1, line=dict(MARKER),
                fillcolor="rgba(0,0,0,0)")


def _tick_step(n: int) -> int:
    """Tick spacing that keeps about ten labels on a small panel's axis."""
    return max(1, int(np.ceil(n / 10)))


# --- one unit, and saturation ----------------------------------------------------------------------

LINE_COLOURS = {"f": "#1f77b4", "i": "#2ca02c", "o": "#9467bd", "g": "#ff7f0e", "c": "#d62728", "h": "#17becf"}


def unit_spec(trace: Trace, unit: int, batch: int = 0, t: int | None = None,
              time_labels: list[str] | None = None) -> dict:
    """One unit's f, i, o, g, c and h over time as lines: a panel per layer and direction, stacked."""
    panels = [(layer, d) for layer in range(trace.num_layers) for d in range(trace.num_directions)]
    n, gap = len(panels), 0.06
    height = (1 - gap * (n - 1)) / n
    data, layout, annotations = [], {}, []
    stride = line_stride(trace.seq_len)
    steps = np.arange(0, trace.seq_len, stride)
    for k, (layer, d) in enumerate(panels):
        axis = "" if k == 0 else str(k + 1)
        top = 1 - k * (height + gap)
        for name in DISPLAY_ORDER:
            if name == "h" and unit >= trace.h.shape[-1]:
                continue  # projected h has fewer units
            y = trace.array(name)[layer, d, ::stride, batch, unit]
            data.append(dict(type="scatter", mode="lines", x=steps, y=typed_array(y), name=name, legendgroup=name,
                             showlegend=k == 0, line={"color": LINE_COLOURS[name], "width": 1.6}, xaxis="x",
                             yaxis=f"y{axis}", hovertemplate=_line_hover(name, unit, batch, layer, d)))
        layout[f"yaxis{axis}"] = {"domain": [max(0.0, top - height), top], "anchor": "x", "zeroline": True,
                                  "title": {"text": "value"}}
        annotations.append(dict(text=f"<b>layer {layer}{' reverse' if d else ''}</b> · unit {unit}", x=0, y=top,
                                xref="paper", yref="paper", xanchor="left", yanchor="bottom", showarrow=False))
    xaxis = {"title": {"text": "time step t"}, "anchor": f"y{n if n > 1 else ''}"}
    if time_labels is not None and trace.seq_len <= 64:
        xaxis |= {"tickvals": list(range(trace.seq_len)), "ticktext": [escape.plotly(x) for x in time_labels]}
    shapes = [] if t is None else [dict(type="line", xref="x", yref="paper", x0=t, x1=t, y0=0, y1=1,
                                        line=dict(MARKER))]
    layout |= dict(xaxis=xaxis, annotations=annotations, shapes=shapes, height=230 * n + 80,
                   margin=dict(l=60, r=10, t=40, b=40), legend={"orientation": "h", "y": 1.06},
                   title={"text": f"unit {unit} over time · batch {batch}" + _every(stride, trace.seq_len),
                          "font": {"size": 14}})
    return dict(data=data, layout=layout)


def line_stride(seq_len: int) -> int:
    return max(1, -(-seq_len // LINE_MAX_POINTS))


def _every(stride: int, seq_len: int) -> str:
    return "" if stride == 1 else f" · a point every {stride} steps of {seq_len:,}"


def _line_hover(name: str, unit: int, batch: int, layer: int, direction: int) -> str:
    where = f"layer {layer}{' reverse' if direction else ''}, unit {unit}, batch {batch}"
    return f"{QUANTITIES[name].words} {name}<br>t=%{{x}}<br>{where}<br>value %{{y:.4f}}<extra></extra>"


def saturation_spec(fractions: dict[str, np.ndarray], low: float, high: float,
                    highlight_unit: int | None = None) -> dict:
    """Karpathy et al. (2015): per gate, each unit's fraction of steps left-saturated (< low) against
    right-saturated (> high); a point per unit, coloured by layer. fractions[g]: (L, D, H, 2)."""
    gates = [g for g in ("f", "i", "o") if g in fractions]
    data, layout = [], {}
    palette = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22"]
    for k, gate in enumerate(gates):
        axis = "" if k == 0 else str(k + 1)
        L, D, H, _ = fractions[gate].shape
        for layer in range(L):
            for d in range(D):
                frac = fractions[gate][layer, d]
                label = f"layer {layer}" + (" reverse" if d else "")
                sizes = [14 if u == highlight_unit else 7 for u in range(H)]
                data.append(dict(type="scatter", mode="markers", x=frac[:, 0].tolist(), y=frac[:, 1].tolist(),
                                 name=label, legendgroup=label, showlegend=k == 0, xaxis=f"x{axis}",
                                 yaxis=f"y{axis}", customdata=list(range(H)),
                                 marker={"color": palette[(layer * D + d) % len(palette)], "size": sizes,
                                         "opacity": 0.75, "symbol": "circle" if d == 0 else "diamond"},
                                 hovertemplate=f"{QUANTITIES[gate].words} · {label}<br>unit %{{customdata}}"
                                               f"<br>< {low:g}: %{{x:.2f}}<br>> {high:g}: %{{y:.2f}}<extra></extra>"))
        left, right = k / len(gates), (k + 1) / len(gates) - 0.06
        layout[f"xaxis{axis}"] = {"domain": [left, right], "range": [-0.03, 1.03], "anchor": f"y{axis}",
                                  "title": {"text": f"fraction {QUANTITIES[gate].symbol.split('<')[0]} < {low:g}"}}
        layout[f"yaxis{axis}"] = {"domain": [0, 0.88], "range": [-0.03, 1.03], "anchor": f"x{axis}",
                                  "scaleanchor": f"x{axis}",
                                  "title": {"text": f"fraction > {high:g}" if k == 0 else ""}}
        layout.setdefault("annotations", []).append(dict(
            text=f"<b>{QUANTITIES[gate].words}</b>", x=left, y=0.95, xref="paper", yref="paper", xanchor="left",
            showarrow=False))
    layout |= dict(height=380, margin=dict(l=60, r=10, t=40, b=50), legend={"orientation": "h", "y": 1.12},
                   shapes=[dict(type="line", xref=f"x{'' if k == 0 else k + 1}", yref=f"y{'' if k == 0 else k + 1}",
                                x0=0, y0=1, x1=1, y1=0, line={"color": "#bbbbbb", "dash": "dot", "width": 1})
                           for k in range(len(gates))])
    return dict(data=data, layout=layout)


def ledger_spec(ledger: dict[str, np.ndarray], unit: int, layer: int, direction: int = 0) -> dict:
    """The memory ledger of one unit: per step what c keeps (f ⊙ c_{t−1}) and writes (i ⊙ g); and every
    unit's effective time constant −1/log(mean f)."""
    stride = line_stride(len(ledger["kept"]))
    kept, written = ledger["kept"][::stride, unit], ledger["written"][::stride, unit]
    steps = np.arange(0, len(ledger["kept"]), stride)
    tau = np.asarray(ledger["time_constant"], dtype=np.float64)
    shown = np.where(np.isfinite(tau), tau, np.nan)  # a gate stuck at 1 keeps forever: no bar
    colours = ["#d62728" if u == unit else "#1f77b4" for u in range(len(tau))]
    data = [
        dict(type="scatter", mode="lines", x=steps, y=typed_array(kept),
             name=f"kept: f⊙c<sub>{'t+1' if direction else 't−1'}</sub>",
             line={"color": LINE_COLOURS["f"]}, hovertemplate="t=%{x}<br>kept %{y:.4f}<extra></extra>"),
        dict(type="scatter", mode="lines", x=steps, y=typed_array(written), name="written: i⊙g",
             line={"color": LINE_COLOURS["g"]}, hovertemplate="t=%{x}<br>written %{y:.4f}<extra></extra>"),
        dict(type="scatter", mode="lines", x=steps, y=typed_array(kept + written), name="c<sub>t</sub>",
             line={"color": LINE_COLOURS["c"], "dash": "dot"}, hovertemplate="t=%{x}<br>c %{y:.4f}<extra></extra>"),
        dict(type="bar", x=list(range(len(tau))), y=[None if np.isnan(v) else float(v) for v in shown],
             marker={"color": colours}, name="time constant", xaxis="x2", yaxis="y2", showlegend=False,
             hovertemplate="unit %{x}<br>−1/log(mean f) = %{y:.2f} steps<extra></extra>"),
    ]
    layout = dict(
        xaxis={"domain": [0, 1], "anchor": "y", "title": {"text": "time step t"}},
        yaxis={"domain": [0.58, 1], "anchor": "x", "title": {"text": f"unit {unit}"}},
        xaxis2={"domain": [0, 1], "anchor": "y2", "title": {"text": "unit"}},
        yaxis2={"domain": [0, 0.38], "anchor": "x2", "title": {"text": "steps"}, "type": "log"},
        height=520, margin=dict(l=60, r=10, t=40, b=40), legend={"orientation": "h", "y": 1.1},
        title={"text": f"memory ledger · layer {layer}{' · reverse' if direction else ''}: what c keeps and writes; "
               "each unit's time constant"
               + _every(stride, len(ledger["kept"])),
               "font": {"size": 14}},
    )
    return dict(data=data, layout=layout)


def loss_spec(losses: list[float], threshold: float) -> dict:
    """A training loss curve against its stated target."""
    steps = list(range(1, len(losses) + 1))
    return dict(
        data=[dict(type="scatter", mode="lines", x=steps, y=list(map(float, losses)), name="loss",
                   hovertemplate="step %{x}<br>loss %{y:.4f}<extra></extra>")],
        layout=dict(height=260, margin=dict(l=60, r=10, t=30, b=40), title={"text": "training loss"},
                    xaxis={"title": {"text": "step"}}, yaxis={"title": {"text": "MSE"}, "type": "log"},
                    shapes=[dict(type="line", xref="paper", x0=0, x1=1, y0=threshold, y1=threshold,
                                 line={"color": "#2ca02c", "dash": "dash"})],
                    annotations=[dict(text=f"target {threshold:g}", xref="paper", x=1, y=np.log10(threshold),
                                      xanchor="right", yanchor="bottom", showarrow=False)]),
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
