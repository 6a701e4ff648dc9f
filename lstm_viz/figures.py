"""Plotly figures, pure functions of a Trace. No streamlit here: they work in a notebook too.

Colour conventions: sigmoid gates f, i, o share one sequential 0..1 scale; g and h (both tanh-bounded)
share a diverging −1..1 scale centred on 0; c is unbounded, so its diverging scale is symmetric around 0
with the bound taken from the data (and the colour bar says so).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import plotly.graph_objects as go

from .trace import Trace

GATE_SCALE = "Viridis"
# Values one over-time figure may carry (float32 on the wire: ~4/3 × 4 bytes each, base64): ~1.3 MB.
OVER_TIME_MAX_VALUES = 200_000
DIVERGING_SCALE = "RdBu_r"


@dataclass(frozen=True)
class Quantity:
    key: str
    words: str
    symbol: str  # as HTML, for Plotly titles

    @property
    def title(self) -> str:
        return f"{self.words} {self.symbol}"


QUANTITIES = {
    "f": Quantity("f", "forget gate", "f<sub>t</sub>"),
    "i": Quantity("i", "input gate", "i<sub>t</sub>"),
    "o": Quantity("o", "output gate", "o<sub>t</sub>"),
    "g": Quantity("g", "candidate", "g<sub>t</sub> (C̃<sub>t</sub>)"),
    "c": Quantity("c", "cell state", "C<sub>t</sub>"),
    "h": Quantity("h", "hidden state", "h<sub>t</sub>"),
}
DISPLAY_ORDER = ("f", "i", "o", "g", "c", "h")


def colour_range(trace: Trace, name: str, layer: int, direction: int) -> dict:
    """zmin/zmax/colorscale and a colour-bar title for `name`, by the conventions above."""
    if name in ("f", "i", "o"):
        return dict(zmin=0.0, zmax=1.0, colorscale=GATE_SCALE, colorbar_title="0..1")
    if name in ("g", "h"):
        return dict(zmin=-1.0, zmax=1.0, colorscale=DIVERGING_SCALE, colorbar_title="−1..1")
    # c: one bound for the whole layer-direction so the scale stays put while stepping through time.
    bound = float(np.abs(trace.array("c")[layer, direction]).max()) or 1.0
    return dict(zmin=-bound, zmax=bound, colorscale=DIVERGING_SCALE,
                colorbar_title=f"±{bound:.3g}<br>(from data)")


def _heatmap(z: np.ndarray, scale: dict, hover: str, colorbar: dict | None = None, **axes) -> dict:
    bar = {"title": {"text": scale["colorbar_title"], "side": "right"}, "thickness": 12} | (colorbar or {})
    return dict(type="heatmap", z=z, zmin=scale["zmin"], zmax=scale["zmax"], colorscale=scale["colorscale"],
                zmid=0.0 if scale["zmin"] < 0 else None, colorbar=bar, hovertemplate=hover, **axes)


def step_heatmap(trace: Trace, name: str, t: int, layer: int = 0, direction: int = 0,
                 highlight_unit: int | None = None) -> go.Figure:
    """`name` at step t of one layer and direction: batch elements (rows) × units (columns)."""
    q = QUANTITIES[name]
    z = trace.array(name)[layer, direction, t]  # (B, H)
    hover = f"{q.words} {name}<br>t={t}<br>batch %{{y}}<br>unit %{{x}}<br>value %{{z:.4f}}<extra></extra>"
    heat = _heatmap(z, colour_range(trace, name, layer, direction), hover,
                    x=np.arange(z.shape[1]), y=np.arange(z.shape[0]))
    shapes = []
    if highlight_unit is not None and highlight_unit < z.shape[1]:
        shapes.append(_column_box(highlight_unit, yref="y", y0=-0.5, y1=z.shape[0] - 0.5))
    layout = dict(
        title={"text": f"{q.title} · t={t}", "font": {"size": 14}},
        xaxis={"title": {"text": "unit"}, "dtick": _tick_step(z.shape[1])},
        yaxis={"title": {"text": "batch"}, "autorange": "reversed", "dtick": _tick_step(z.shape[0])},
        height=120 + 22 * min(z.shape[0], 16), margin=dict(l=50, r=10, t=40, b=40), shapes=shapes,
    )
    return go.Figure(dict(data=[heat], layout=layout))


def time_window(seq_len: int, t: int, columns_budget: int) -> tuple[int, int]:
    """[start, stop) of at most `columns_budget` steps around t: the whole sequence when it fits."""
    width = max(1, min(seq_len, columns_budget))
    start = min(max(0, t - width // 2), seq_len - width)
    return start, start + width


def over_time_figure(trace: Trace, t: int, layer: int = 0, direction: int = 0, batch: int = 0,
                     quantities=DISPLAY_ORDER, time_labels: list[str] | None = None,
                     max_values: int = OVER_TIME_MAX_VALUES) -> go.Figure:
    """Each quantity as units × time, stacked with a shared time axis and a box marking step t.

    Long sequences show a window of steps around t, sized so the figure stays under `max_values`.
    """
    n, gap = len(quantities), 0.035
    units = trace.config.hidden_size
    start, stop = time_window(trace.seq_len, t, max_values // (n * units))
    height = (1 - gap * (n - 1)) / n
    data, layout = [], {}
    for k, name in enumerate(quantities):
        q = QUANTITIES[name]
        z = trace.array(name)[layer, direction, start:stop, batch, :].T  # (units, window)
        top = 1 - k * (height + gap)
        axis = "" if k == 0 else str(k + 1)
        hover = f"{q.words} {name}<br>t=%{{x}}<br>batch {batch}<br>unit %{{y}}<br>value %{{z:.4f}}<extra></extra>"
        data.append(_heatmap(z, colour_range(trace, name, layer, direction), hover,
                             colorbar={"y": top - height / 2, "len": height, "yanchor": "middle"},
                             x=np.arange(start, stop), y=np.arange(z.shape[0]), xaxis="x", yaxis=f"y{axis}"))
        layout[f"yaxis{axis}"] = {"domain": [top - height, top], "title": {"text": f"{name}: unit"},
                                  "anchor": "x"}
        layout.setdefault("annotations", []).append(
            dict(text=q.title, x=0, y=top, xref="paper", yref="paper", xanchor="left", yanchor="bottom",
                 showarrow=False, font={"size": 12}))
    seq_len = trace.seq_len
    xaxis = {"title": {"text": "time step t"}, "anchor": f"y{n if n > 1 else ''}", "range": [start - 0.5, stop - 0.5]}
    if time_labels is not None and stop - start <= 64:
        xaxis |= {"tickvals": list(range(start, stop)), "ticktext": list(time_labels[start:stop])}
    window = "" if stop - start == seq_len else f" · steps {start}–{stop - 1} of {seq_len} (a window around t)"
    layout |= dict(
        xaxis=xaxis,
        shapes=[_column_box(t, yref="paper", y0=0, y1=1, xref="x")],
        height=140 * n + 60, margin=dict(l=60, r=10, t=30, b=40),
        title={"text": f"over time · layer {layer}" + (" (reverse)" if direction else "") + f" · batch {batch}"
                + window,
               "font": {"size": 14}},
    )
    return go.Figure(dict(data=data, layout=layout))


def _column_box(x: int, yref: str, y0: float, y1: float, xref: str = "x") -> dict:
    """An outlined box around column x: the current step, or a highlighted unit."""
    return dict(type="rect", xref=xref, yref=yref, x0=x - 0.5, x1=x + 0.5, y0=y0, y1=y1,
                line={"color": "#ff7f0e", "width": 2}, fillcolor="rgba(0,0,0,0)")


def _tick_step(n: int) -> int:
    return max(1, int(np.ceil(n / 20)))
