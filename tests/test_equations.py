"""The equation panel's numbers, each checked against an independent float64 computation: torch.nn.LSTM stepped
one step at a time for the states, and plain arithmetic on the weights for the gate parts."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor, nn

from lstm_viz import InstrumentedLSTM, LSTMConfig
from lstm_viz.equations import step_latex, step_terms

TOL = 1e-12  # float64 throughout
GATE_ROWS = "ifgo"  # nn.LSTM's row order of the (4H, ·) weights


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def reference_steps(model: InstrumentedLSTM, x: Tensor, hx, layer: int, direction: int) -> dict[int, dict]:
    """For each input position t of (layer, direction): x_t, the state step t read (h_prev, c_prev) and the state
    it produced (h, c), from torch.nn.LSTM. Layers below come from an nn.LSTM of `layer` layers; this layer-direction
    is a one-layer, one-direction nn.LSTM fed one step at a time, last to first for the reverse direction."""
    cfg, state = model.config, model.state_dict()
    options = dict(hidden_size=cfg.hidden_size, bias=cfg.bias, proj_size=cfg.proj_size, dtype=torch.float64)
    inp = x
    if layer > 0:
        lower = nn.LSTM(cfg.input_size, num_layers=layer, bidirectional=cfg.bidirectional, **options)
        lower.load_state_dict({k: v for k, v in state.items() if int(k.split("_l")[1].split("_")[0]) < layer})
        below = layer * cfg.num_directions  # the initial states of the layers below
        inp = lower(x, (hx[0][:below], hx[1][:below]))[0]
    one = nn.LSTM(inp.shape[-1], **options)
    sfx = LSTMConfig.suffix(layer, direction)
    one.load_state_dict({k.replace(sfx, "_l0"): v for k, v in state.items() if k.endswith(sfx)})
    k = layer * cfg.num_directions + direction
    h, c = hx[0][k:k + 1], hx[1][k:k + 1]
    steps = {}
    order = range(x.shape[0] - 1, -1, -1) if direction == 1 else range(x.shape[0])
    for t in order:
        _, (h_next, c_next) = one(inp[t:t + 1], (h, c))
        steps[t] = dict(x=inp[t], h_prev=h[0], c_prev=c[0], h=h_next[0], c=c_next[0])
        h, c = h_next, c_next
    return steps


def dot(a: Tensor, b: Tensor) -> float:
    """Σ a_k b_k in Python floats, exactly rounded: no torch kernel involved."""
    return math.fsum(u * v for u, v in zip(a.tolist(), b.tolist(), strict=True))


def state(model: InstrumentedLSTM, kind: str, sfx: str) -> Tensor:
    return model.state_dict()[kind + sfx]


def traced(option: dict, seed: int = 1):
    torch.manual_seed(seed)
    model = InstrumentedLSTM(3, 5, num_layers=2, dtype=torch.float64, **option).eval()
    D = 2 if model.bidirectional else 1
    x = torch.randn(6, 2, 3, dtype=torch.float64)
    hx = (torch.randn(2 * D, 2, model.proj_size or 5, dtype=torch.float64),
          torch.randn(2 * D, 2, 5, dtype=torch.float64))
    return model, x, hx, model.trace(x, hx)


@pytest.mark.parametrize("option,direction", [
    (dict(), 0), (dict(bidirectional=True), 0), (dict(bidirectional=True), 1), (dict(bias=False), 0),
    (dict(bidirectional=True, bias=False), 1), (dict(bidirectional=True, proj_size=3), 1),
])
@torch.no_grad()
def test_terms_match_an_independent_lstm(option, direction):
    model, x, hx, tr = traced(option)
    layer, unit, batch = 1, 2, 1
    ref = reference_steps(model, x, hx, layer, direction)
    sfx = LSTMConfig.suffix(layer, direction)
    H = model.hidden_size
    for t in range(tr.seq_len):
        want = ref[t]
        if direction == 1 and t + 1 < tr.seq_len:  # the reverse direction reads the state step t+1 left
            assert torch.equal(want["c_prev"], ref[t + 1]["c"])
            assert torch.equal(want["h_prev"], ref[t + 1]["h"])
        terms = step_terms(tr, layer=layer, direction=direction, t=t, unit=unit, batch=batch)
        gates = {}
        for gate in "fiog":
            row = GATE_ROWS.index(gate) * H + unit
            # by hand: W_i· x_t, W_h· h_prev and b_i· + b_h· for this unit's row
            w_x = dot(state(model, "weight_ih", sfx)[row], want["x"][batch])
            w_h = dot(state(model, "weight_hh", sfx)[row], want["h_prev"][batch])
            bias = (state(model, "bias_ih", sfx)[row] + state(model, "bias_hh", sfx)[row]).item() if model.bias else 0
            assert terms[f"{gate}.input"] == pytest.approx(w_x, abs=TOL)
            assert terms[f"{gate}.recurrent"] == pytest.approx(w_h, abs=TOL)
            assert terms[f"{gate}.bias"] == pytest.approx(bias, abs=TOL)
            assert terms[f"{gate}.pre"] == pytest.approx(w_x + w_h + bias, abs=TOL)
            gates[gate] = math.tanh(w_x + w_h + bias) if gate == "g" else sigmoid(w_x + w_h + bias)
            assert terms[gate] == pytest.approx(gates[gate], abs=TOL)
            assert terms[f"trace.{gate}"] == pytest.approx(gates[gate], abs=TOL)
        assert terms["c_prev"] == pytest.approx(want["c_prev"][batch, unit].item(), abs=TOL)
        c = want["c"][batch, unit].item()
        assert gates["f"] * terms["c_prev"] + gates["i"] * gates["g"] == pytest.approx(c, abs=TOL)  # the reference
        assert terms["c"] == pytest.approx(c, abs=TOL)
        assert terms["trace.c"] == pytest.approx(c, abs=TOL)
        assert terms["m"] == pytest.approx(gates["o"] * math.tanh(c), abs=TOL)
        if unit < (model.proj_size or H):
            h = want["h"][batch, unit].item()
            assert terms["h"] == pytest.approx(h, abs=TOL)
            assert terms["trace.h"] == pytest.approx(h, abs=TOL)
    projected = bool(model.proj_size)
    latex = step_latex(terms, t=tr.seq_len - 1, unit=unit, projected=projected, direction=direction)
    c_line = next(line for line in latex if line.startswith(f"c_t[{unit}]"))
    assert f"{terms['c']:.4f}" in c_line
    assert f"{terms['c_prev']:.4f}" in c_line


def test_reverse_direction_latex_reads_the_state_of_step_t_plus_one():
    _, _, _, tr = traced(dict(bidirectional=True))
    for direction, ahead, behind in ((1, "t+1", "t-1"), (0, "t-1", "t+1")):
        terms = step_terms(tr, layer=0, direction=direction, t=2, unit=0)
        latex = "\n".join(step_latex(terms, t=2, unit=0, projected=False, direction=direction))
        assert ahead in latex
        assert behind not in latex
        assert ("reverse direction" in latex) == (direction == 1)
    forward = step_latex(terms, t=2, unit=0, projected=False)
    assert len(forward) == 6
    assert forward[4].startswith("c_t[0]")


@torch.no_grad()
def test_projected_units_say_what_h_is():
    torch.manual_seed(2)
    model = InstrumentedLSTM(3, 5, proj_size=2, dtype=torch.float64)
    x = torch.randn(4, 1, 3, dtype=torch.float64)
    tr = model.trace(x)
    hx = (torch.zeros(1, 1, 2, dtype=torch.float64), torch.zeros(1, 1, 5, dtype=torch.float64))
    want = reference_steps(model, x, hx, layer=0, direction=0)[2]
    inside = step_terms(tr, 0, 0, t=2, unit=1)
    assert inside["h"] == pytest.approx(want["h"][0, 1].item(), abs=TOL)  # (W_hr m_t)_1
    outside = step_terms(tr, 0, 0, t=2, unit=4)
    assert "h" not in outside
    assert "trace.h" not in outside
    assert "fewer units" in step_latex(outside, t=2, unit=4, projected=True)[-1]

