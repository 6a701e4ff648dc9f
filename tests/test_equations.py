"""The equation panel's numbers: each one recomputed from the others and from the trace."""

from __future__ import annotations

import math

import pytest
import torch

from lstm_viz import InstrumentedLSTM
from lstm_viz.equations import step_latex, step_terms


def sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


@pytest.mark.parametrize("option,direction", [(dict(), 0), (dict(bidirectional=True), 1), (dict(bias=False), 0)])
def test_terms_follow_the_equations(option, direction):
    torch.manual_seed(1)
    tr = InstrumentedLSTM(3, 5, num_layers=2, dtype=torch.float64, **option).trace(
        torch.randn(6, 2, 3, dtype=torch.float64))
    for t in (0, 3, 5):
        terms = step_terms(tr, layer=1, direction=direction, t=t, unit=4, batch=1)
        for gate in "fio":
            assert terms[gate] == pytest.approx(sigmoid(terms[f"{gate}.pre"]), abs=1e-12)
            assert terms[f"{gate}.pre"] == pytest.approx(
                terms[f"{gate}.input"] + terms[f"{gate}.recurrent"] + terms[f"{gate}.bias"], abs=1e-12)
        assert terms["g"] == pytest.approx(math.tanh(terms["g.pre"]), abs=1e-12)
        assert terms["c"] == pytest.approx(terms["f"] * terms["c_prev"] + terms["i"] * terms["g"], abs=1e-12)
        assert terms["h"] == pytest.approx(terms["o"] * math.tanh(terms["c"]), abs=1e-12)
        assert terms["h"] == tr.h[1, direction, t, 1, 4].item()
        if not option.get("bias", True):
            assert terms["f.bias"] == 0.0
    latex = step_latex(terms, t=5, unit=4, projected=False)
    assert len(latex) == 6 and latex[4].startswith("c_t[4]") and f"{terms['c']:.4f}" in latex[4]


def test_projected_units_say_what_h_is():
    torch.manual_seed(2)
    tr = InstrumentedLSTM(3, 5, proj_size=2, dtype=torch.float64).trace(torch.randn(4, 1, 3, dtype=torch.float64))
    inside = step_terms(tr, 0, 0, t=2, unit=1)
    assert inside["h"] == tr.h[0, 0, 2, 0, 1].item()
    assert inside["m"] == pytest.approx(inside["o"] * math.tanh(inside["c"]), abs=1e-12)
    outside = step_terms(tr, 0, 0, t=2, unit=4)
    assert "h" not in outside
    assert "fewer units" in step_latex(outside, t=2, unit=4, projected=True)[-1]
