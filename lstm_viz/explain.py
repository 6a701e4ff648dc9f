"""Plain words shown beside the pictures: what each gate, state, colour scale and marker is, what the parity check
compared, what the saturation plot and the time constants mean, with the run's own numbers put in. No streamlit:
each function returns Markdown, its foreign strings escaped.
"""

from __future__ import annotations

import math

import numpy as np

from . import escape
from .parity import ParityReport

EXPLORER_LABEL = "What am I looking at?"
EXPLORER_KEY = "explain_explorer"  # a stable container: the page gives it the class st-key-explain_explorer

# One line per quantity, in the explorer's order (f, i, o, then g, C, h).
ROWS = {
    "f": "**f, forget gate** (0 to 1) decides what to drop from the cell state: 0 forgets the unit's Cₜ₋₁, "
         "1 keeps all of it.",
    "i": "**i, input gate** (0 to 1) scales how much of the candidate g is written into the cell.",
    "o": "**o, output gate** (0 to 1) decides what part of the cell state becomes hₜ.",
    "g": "**g, candidate C̃** (−1 to 1): the tanh layer proposes these new values for the cell.",
    "c": "**C, cell state**, the memory: Cₜ = f·Cₜ₋₁ + i·g, what was kept plus what was written.",
    "h": "**h, hidden state** (−1 to 1): hₜ = o·tanh(Cₜ), this layer's output at step t; the next step reads it.",
}
LAYOUT = ("At the top, each heatmap is batch elements (rows) × units (columns) at step t. Below, over time: the "
          "input x, then each quantity as units (rows) × steps (columns).")
MARKER = ("**The orange box** is the inspected unit (its column at step t) and, over time, the current step t. Click "
          "a cell to inspect another unit and batch element, or set them under Inspect in the sidebar.")
CELL_DIAGRAM = ("**The cell diagram** is the inspected unit at step t: Cₜ₋₁ enters top left, × f drops part of it, "
                "+ i·g writes new values, giving Cₜ; o × tanh(Cₜ) gives hₜ. Each node is coloured on its quantity's "
                "scale and shows its value; the equations beside it use the same numbers.")
REVERSE = ("This is the **reverse** direction: it reads the sequence from the last step to the first, so the step "
           "before t is t+1 (Cₜ₊₁ and hₜ₊₁ where the lines above say Cₜ₋₁).")
GATE_SCALE = "**f, i, o**: 0 (dark purple, shut) to 1 (yellow, open)."
TANH_SCALE = "**g, h**: −1 (blue), 0 (white), +1 (red)."

# Why the tolerance is what it is, per dtype (parity.TOLERANCE holds the numbers).
TOLERANCE_WHY = {
    "float32": "float32 keeps ~7 digits, torch sums in another order",
    "float64": "float64 keeps ~16 digits: nearly every bit must agree",
}
EXAMPLE_MEAN_F = (0.9, 0.5)  # the worked examples of a time constant

HELP = {  # the sidebar's settings, in plain words
    "input_size": "Numbers per step: the length of each input xₜ.",
    "hidden_size": "Units per layer: the length of Cₜ and hₜ, one heatmap column each.",
    "num_layers": "LSTMs stacked: each layer reads the h of the layer below as its input.",
    "proj_size": "0: no projection. Otherwise hₜ is shrunk to this many values by a learned matrix W_hr "
                 "(must be < hidden_size); Cₜ keeps hidden_size.",
    "bidirectional": "Also run every layer backwards, from the last step to the first; the output puts both "
                     "directions' h side by side.",
    "bias": "Add the learned biases inside each gate. Off: a gate sees only W xₜ + U hₜ₋₁.",
    "batch_first": "Input laid out as (batch, seq, features) instead of (seq, batch, features); the numbers are "
                   "the same.",
    "seq_len": "Steps in the input sequence: the time axis you step through.",
    "batch_size": "Sequences run side by side, each with its own C and h: the rows of the step heatmaps.",
    "unit": "The unit you inspect: boxed in orange in the heatmaps; the cell diagram, equations, unit lines and "
            "memory ledger show it.",
    "batch_index": "Which sequence of the batch the rows over time, the cell diagram and the unit lines follow.",
}


def _num(x: float) -> str:
    """A value in a sentence: 3 decimals, a true minus sign."""
    return f"{x:.3f}".replace("-", "−")


def _share(x: float) -> str:
    """A fraction as a percentage, "under 1%" rather than a misleading 0%."""
    if x != x:
        return "—"
    return "0%" if x == 0 else "under 1%" if x < 0.005 else f"{x:.0%}"


def cell_scale(bound: float) -> str:
    """What the cell state's colour bar, "±0.926 from data", means, for the bound of the layer shown."""
    return (f"**C, ±{bound:.3g} from data**: C has no fixed range, so its scale runs to the largest |C| in this "
            f"layer (all steps and batch elements): full red is +{bound:.3g} here, not +1. It stays put while you "
            "step.")


def explorer_guide(bound: float, direction: int = 0) -> str:
    """The "What am I looking at?" text above the explorer: the six quantities, the three scales, the marker, the
    cell diagram; for the reverse direction, which step comes "before"."""
    rows = "\n".join(f"- {line}" for line in ROWS.values())
    scales = "\n".join(f"- {line}" for line in (GATE_SCALE, TANH_SCALE, cell_scale(bound)))
    reverse = f"\n\n{REVERSE}" if direction == 1 else ""
    return (f"**The six quantities**\n\n{rows}{reverse}\n\n{LAYOUT}\n\n**The colours**\n\n{scales}\n\n{MARKER}"
            f"\n\n{CELL_DIAGRAM}")


def parity_words(report: ParityReport, dtype: str, engine: str, source: str) -> str:
    """The parity badge's caption: what was compared with what, by how much, and why the tolerance is what it is."""
    why = TOLERANCE_WHY.get(dtype, "")
    return (f"**Checked on this run:** {report.summary()}. The badge's max |Δ| is the largest of these"
            f"{f'; the tolerance covers rounding ({why})' if why else ''}. {escape.markdown(engine).capitalize()} "
            f"engine · input: {escape.markdown(source)}.")


def step_reading(terms: dict[str, float], direction: int, projected: bool) -> str:
    """This step of the inspected unit read aloud from equations.step_terms: kept, written, let out."""
    previous = "Cₜ₊₁" if direction == 1 else "Cₜ₋₁"
    f, i, o, g, c, c_prev = (terms[k] for k in ("f", "i", "o", "g", "c", "c_prev"))
    out = (f"out: o·tanh(Cₜ) = {_num(terms['m'])}, which W_hr projects into hₜ" if projected
           else f"out as hₜ = {_num(terms['h'])}")
    return (f"In words: f = {_num(f)} keeps {f:.0%} of {previous} = {_num(c_prev)} → {_num(f * c_prev)}; "
            f"i = {_num(i)} writes {i:.0%} of the candidate g = {_num(g)} → {_num(i * g)}; the sum is Cₜ = "
            f"{_num(c)}. o = {_num(o)} lets {o:.0%} of tanh(Cₜ) = {_num(math.tanh(c))} {out}.")


def unit_lines(unit: int, batch: int, t: int) -> str:
    """The unit drill-down's caption: its three scales, the same split as the heatmaps' colours."""
    return (f"Unit {unit} over time, batch element {batch}, on three scales as in the heatmaps: the gates f, i, o "
            "(0 shut, 1 open), g and h (−1 to 1), and C on its own range, since the cell state is not bounded. One "
            f"block per layer (and direction); the orange line is step t = {t}.")


def saturation_reading(low: float, high: float) -> str:
    """How to read the saturation plot, with the thresholds the sliders set."""
    return (f"Each point is one unit's gate. Across all steps and batch elements: x = how often it is below {low:g} "
            f"(nearly shut), y = how often above {high:g} (nearly open). **Top left**: almost always open (a forget "
            "gate there keeps its memory). **Bottom right**: almost always shut. On the dotted diagonal: a switch, "
            "always one or the other. The inspected unit is drawn larger.")


def saturation_why(low: float, high: float, fractions: dict[str, np.ndarray]) -> str:
    """Why a random network's units sit near (0, 0), and how far this run's gates go past the thresholds."""
    shares = ", ".join(f"{gate} {_share(float(np.nanmean(fractions[gate].sum(axis=-1))))}" for gate in fractions)
    return (f"**Near (0, 0)**: a gate that stays between {low:g} and {high:g}. A random network's units all sit "
            "there: each gate is σ of a small random sum, so it hovers around 0.5 and rarely goes below "
            f"{low:g} or above {high:g}; training moves units out. Share of values below {low:g} or above {high:g} "
            f"in this run: {shares}.")


def mean_forget(time_constant: float) -> float:
    """The mean f a time constant τ = −1/ln(mean f) came from: exp(−1/τ) (1 for τ = inf, 0 for τ = 0)."""
    if time_constant != time_constant:
        return math.nan
    return 0.0 if time_constant == 0 else math.exp(-1 / time_constant)


def time_constant(mean_f: float) -> float:
    """τ = −1/ln(mean f), as analysis.memory_ledger computes it."""
    return math.inf if mean_f >= 1 else 0.0 if mean_f <= 0 else -1 / math.log(mean_f)


def _tau_words(tau: float, mean_f: float) -> str:
    if tau != tau:
        return "no steps to average"
    if math.isinf(tau):
        return "mean f = 1, it never fades (no bar)"
    if tau == 0:
        return "mean f = 0, it forgets at once (no bar)"
    return f"mean f = {_num(mean_f)} → τ = {tau:.1f} steps"


def ledger_words(time_constants: np.ndarray, unit: int, direction: int) -> str:
    """The memory ledger's caption: kept against written, and the time constant with worked examples and the
    inspected unit's own numbers."""
    previous = "Cₜ₊₁" if direction == 1 else "Cₜ₋₁"
    first, *more = EXAMPLE_MEAN_F
    examples = "; ".join([f"f = {first:g} on average → about {time_constant(first):.1f} steps"]
                         + [f"{f:g} → about {time_constant(f):.1f}" for f in more])
    tau = float(time_constants[unit])
    return (f"**Top**: unit {unit}'s cell each step: kept = f·{previous} (carried over, blue) plus written = i·g "
            "(added, orange) make Cₜ (dotted). **Bottom**: every unit's time constant τ = −1/ln(mean f), in steps: "
            "how long a value in the cell takes to fade to 1/e ≈ 37% when nothing new is written. "
            f"E.g. {examples}. Unit {unit} (red): {_tau_words(tau, mean_forget(tau))}.")


EXPORT_INTRO = ("Take this run away: the trace (every gate and state, for numpy or a spreadsheet), the weights (for "
                "torch), or the figures as HTML files that open without this server.")
