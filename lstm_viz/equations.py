"""The cell's equations at one step, one unit and one batch element, with the live numbers filled in."""

from __future__ import annotations

import torch

from .config import LSTMConfig
from .engines import DirectionWeights, input_part, lstm_cell
from .trace import Trace

SIGMOID_GATES = {"f": "forget", "i": "input", "o": "output"}


def step_terms(trace: Trace, layer: int, direction: int, t: int, unit: int, batch: int = 0) -> dict[str, float]:
    """Every number in the equations at step t for one hidden unit: gate parts, gates, c, h.

    The gates, c, m and h are what `lstm_cell` gives from the trace's x_t, h_{t−1} and c_{t−1} (t+1 in the reverse
    direction), so the panel shows what its equations compute; "trace.f" … "trace.h" are the recorded values, to
    compare with.
    """
    one = slice(batch, batch + 1)  # the cell on this batch element only, kept 2-D
    w = DirectionWeights.from_state(trace.weights, LSTMConfig.suffix(layer, direction))
    x_t = trace.layer_inputs[layer][t, one]
    c_prev = trace.c_prev(layer, direction, t)[one]
    step = lstm_cell(input_part(x_t, w), trace.h_prev(layer, direction, t)[one], c_prev, w)
    terms: dict[str, float] = {}
    for gate in ("f", "i", "g", "o"):
        parts = trace.gate_parts(gate, layer, direction, t)
        for part, value in parts.items():
            terms[f"{gate}.{part}"] = value[batch, unit].item()
        terms[f"{gate}.pre"] = sum(terms[f"{gate}.{p}"] for p in parts)
        terms[gate] = getattr(step, gate)[0, unit].item()
        terms[f"trace.{gate}"] = trace.get(gate)[layer, direction, t, batch, unit].item()
    terms["c_prev"] = c_prev[0, unit].item()
    terms["c"] = step.c[0, unit].item()
    terms["trace.c"] = trace.c[layer, direction, t, batch, unit].item()
    terms["m"] = (step.o * torch.tanh(step.c))[0, unit].item()  # m_t = o_t ⊙ tanh(c_t), before any projection
    if unit < step.h.shape[-1]:  # with proj_size, h_t = W_hr m_t has only proj_size units
        terms["h"] = step.h[0, unit].item()
        terms["trace.h"] = trace.h[layer, direction, t, batch, unit].item()
    return terms


def _n(x: float) -> str:
    """A number for LaTeX: 4 significant decimals, true minus sign, negatives bracketed for sums."""
    return f"{x:.4f}" if x >= 0 else f"({x:.4f})"


def step_latex(terms: dict[str, float], t: int, unit: int, projected: bool, direction: int = 0) -> list[str]:
    """LaTeX lines: each gate split into input, recurrent and bias parts, then c_t and h_t.

    direction 1 (reverse) runs from the last step to the first: the state step t reads is h_{t+1}, c_{t+1}, and a
    first line says so.
    """
    prev = "t+1" if direction == 1 else "t-1"
    lines = []
    if direction == 1:
        lines.append(r"\text{reverse direction: the state comes from step } t+1 \text{, processed before } t")
    sub = f"[{unit}]"
    for gate in ("f", "i", "g", "o"):
        act = r"\tanh" if gate == "g" else r"\sigma"
        lines.append(
            rf"{gate}_{{t}}{sub} = {act}\big("
            rf"\underbrace{{W_{{i{gate}}}x_t}}_{{{_n(terms[gate + '.input'])}}} + "
            rf"\underbrace{{W_{{h{gate}}}h_{{{prev}}}}}_{{{_n(terms[gate + '.recurrent'])}}} + "
            rf"\underbrace{{b_{{i{gate}}} + b_{{h{gate}}}}}_{{{_n(terms[gate + '.bias'])}}}\big)"
            rf" = {act}({terms[gate + '.pre']:.4f}) = {terms[gate]:.4f}"
        )
    lines.append(
        rf"c_t{sub} = f_t\,c_{{{prev}}} + i_t\,g_t = {terms['f']:.4f}\cdot{_n(terms['c_prev'])}"
        rf" + {terms['i']:.4f}\cdot{_n(terms['g'])} = {terms['c']:.4f}"
    )
    if not projected:
        lines.append(rf"h_t{sub} = o_t \tanh(c_t) = {terms['o']:.4f}\cdot\tanh({terms['c']:.4f}) = {terms['h']:.4f}")
    else:
        lines.append(rf"m_t{sub} = o_t \tanh(c_t) = {terms['o']:.4f}\cdot\tanh({terms['c']:.4f}) = {terms['m']:.4f}")
        if "h" in terms:
            lines.append(rf"h_t{sub} = (W_{{hr}}\,m_t){sub} = {terms['h']:.4f}")
        else:
            lines.append(r"h_t = W_{hr}\,m_t \text{ has fewer units (proj\_size) than this unit's index}")
    return lines
