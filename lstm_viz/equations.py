"""The cell's equations at one step, one unit and one batch element, with the live numbers filled in."""

from __future__ import annotations

import torch

from .trace import Trace

SIGMOID_GATES = {"f": "forget", "i": "input", "o": "output"}


def step_terms(trace: Trace, layer: int, direction: int, t: int, unit: int, batch: int = 0) -> dict[str, float]:
    """Every number in the equations at step t for one hidden unit: gate parts, gates, c, h."""
    terms: dict[str, float] = {}
    for gate in ("f", "i", "g", "o"):
        parts = trace.gate_parts(gate, layer, direction, t)
        for part, value in parts.items():
            terms[f"{gate}.{part}"] = value[batch, unit].item()
        terms[f"{gate}.pre"] = sum(terms[f"{gate}.{p}"] for p in parts)
        terms[gate] = trace.get(gate)[layer, direction, t, batch, unit].item()
    terms["c_prev"] = trace.c_prev(layer, direction, t)[batch, unit].item()
    terms["c"] = trace.c[layer, direction, t, batch, unit].item()
    terms["m"] = terms["o"] * torch.tanh(torch.tensor(terms["c"], dtype=torch.float64)).item()
    if not trace.config.proj_size:
        terms["h"] = trace.h[layer, direction, t, batch, unit].item()
    elif unit < trace.config.proj_size:
        terms["h"] = trace.h[layer, direction, t, batch, unit].item()  # (W_hr m_t)_u: all of m_t mixes in
    return terms


def _n(x: float) -> str:
    """A number for LaTeX: 4 significant decimals, true minus sign, negatives bracketed for sums."""
    return f"{x:.4f}" if x >= 0 else f"({x:.4f})"


def step_latex(terms: dict[str, float], t: int, unit: int, projected: bool) -> list[str]:
    """LaTeX lines: each gate split into input, recurrent and bias parts, then c_t and h_t."""
    lines = []
    sub = f"[{unit}]"
    for gate in ("f", "i", "g", "o"):
        act = r"\tanh" if gate == "g" else r"\sigma"
        lines.append(
            rf"{gate}_{{t}}{sub} = {act}\big("
            rf"\underbrace{{W_{{i{gate}}}x_t}}_{{{_n(terms[gate + '.input'])}}} + "
            rf"\underbrace{{W_{{h{gate}}}h_{{t-1}}}}_{{{_n(terms[gate + '.recurrent'])}}} + "
            rf"\underbrace{{b_{{i{gate}}} + b_{{h{gate}}}}}_{{{_n(terms[gate + '.bias'])}}}\big)"
            rf" = {act}({terms[gate + '.pre']:.4f}) = {terms[gate]:.4f}"
        )
    lines.append(
        rf"c_t{sub} = f_t\,c_{{t-1}} + i_t\,g_t = {terms['f']:.4f}\cdot{_n(terms['c_prev'])}"
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
