"""Figures of training, as plain Plotly dict specs (like figures.py): one unit's gate or state through training
(snapshots × timesteps), and a toy task's target against the model's prediction on a few examples.
The loss curve is figures.loss_spec.
"""

from __future__ import annotations

import numpy as np

from . import escape
from .figures import DIVERGING_SCALE, GATE_SCALE, MARKER, QUANTITIES, colour_bar, hover_text, typed_array

# The explorer's colours for the same two lines (explorer/assets/explorer.js)
TARGET_MARKER = {"color": "#2ca02c", "size": 7, "symbol": "x"}
PREDICTION_LINE = {"color": "#d62728", "width": 2}


def colour_range(quantity: str, values: np.ndarray) -> dict:
    """The heatmap's scale by the app's conventions: f, i, o sequential 0..1; g, h diverging −1..1; c diverging,
    symmetric around 0 with the bound taken from the data."""
    if quantity in ("f", "i", "o"):
        return {"colorscale": GATE_SCALE, "zmin": 0.0, "zmax": 1.0}
    finite = np.abs(values[np.isfinite(values)])
    bound = 1.0 if quantity != "c" or finite.size == 0 else max(float(finite.max()), 1e-6)
    return {"colorscale": DIVERGING_SCALE, "zmin": -bound, "zmax": bound}


def through_training_spec(values: np.ndarray, steps: list[int], quantity: str, unit: int, chosen: int,
                          time_labels: list[str] | None = None) -> dict:
    """One unit's `quantity` (f, i, o, g, c or h) at every timestep (x) under the weights of each snapshot (y: the
    training step it was taken at), values (S, T); the row of snapshot index `chosen` is boxed."""
    S, T = values.shape
    rows = [str(step) for step in steps]
    info = QUANTITIES[quantity]
    labels = [escape.plotly(label) for label in time_labels] if time_labels and T <= 64 else None
    chosen = chosen % S
    return dict(
        data=[dict(type="heatmap", z=typed_array(values), x=list(range(T)), y=rows, **colour_range(quantity, values),
                   colorbar=colour_bar(quantity, min(160, 14 * S + 40)),
                   hovertemplate=hover_text(f"{info.words} {quantity}", "t=%{x:d}", unit=unit,
                                            where="after %{y} training steps"))],
        layout=dict(
            height=120 + 14 * S, margin=dict(l=60, r=10, t=40, b=40),
            title={"text": f"{info.title} of unit {unit} through training", "font": {"size": 14}},
            xaxis={"title": {"text": "timestep t"},
                   **({"tickvals": list(range(T)), "ticktext": labels} if labels else {})},
            yaxis={"title": {"text": "training step"}, "type": "category"},
            shapes=[dict(type="rect", xref="x", yref="y", x0=-0.5, x1=T - 0.5, y0=chosen - 0.5, y1=chosen + 0.5,
                         line=dict(MARKER))],
        ),
    )


def hover(example: str, line: str) -> str:
    return hover_text(line, "t=%{x:d}", where=escape.plotly(example), value="%{y:.4g}")


def readout_spec(examples: list[tuple[str, np.ndarray, np.ndarray]]) -> dict:
    """Target and prediction over time on a few examples, one row each: (title, target (T,), prediction (T,)).
    A target is NaN where the task has none (a last-step-only task: all but the last step)."""
    n = len(examples)
    gap = 0.08 if n > 1 else 0.0
    height = (1 - gap * (n - 1)) / n
    data, layout = [], dict(height=60 + 150 * n, margin=dict(l=50, r=10, t=40, b=40),
                            title={"text": "target and prediction on examples", "font": {"size": 14}},
                            legend={"orientation": "h", "y": 1.0, "yanchor": "bottom", "x": 1, "xanchor": "right"},
                            annotations=[])
    for k, (title, target, prediction) in enumerate(examples):
        suffix = "" if k == 0 else str(k + 1)
        steps = list(range(len(target)))
        top = 1 - k * (height + gap)
        data.append(dict(type="scatter", mode="markers", x=steps, y=typed_array(target), name="target",
                         marker=TARGET_MARKER, legendgroup="target", showlegend=k == 0, xaxis=f"x{suffix}",
                         yaxis=f"y{suffix}", hovertemplate=hover(title, "target")))
        data.append(dict(type="scatter", mode="lines", x=steps, y=typed_array(prediction), name="prediction",
                         line=PREDICTION_LINE, legendgroup="prediction", showlegend=k == 0, xaxis=f"x{suffix}",
                         yaxis=f"y{suffix}", hovertemplate=hover(title, "prediction")))
        xaxis = {"anchor": f"y{suffix}", "showticklabels": k == n - 1}
        if k:
            xaxis["matches"] = "x"
        if k == n - 1:
            xaxis["title"] = {"text": "timestep t"}
        layout[f"xaxis{suffix}"] = xaxis
        layout[f"yaxis{suffix}"] = {"domain": [max(0.0, top - height), top], "anchor": f"x{suffix}"}
        layout["annotations"].append(dict(text=escape.plotly(title), xref="paper", yref="paper", x=0,
                                          y=top, xanchor="left", yanchor="bottom", showarrow=False))
    return dict(data=data, layout=layout)
