"""The named cell against torch's own: lstm_cell is torch.nn.LSTMCell, and with W_hr one step of nn.LSTM.

That both engines, built on it, give nn.LSTM's output and agree on every gate is tests/test_parity.py's job; the
one path it cannot reach (big weights, oneDNN's packed product) is checked here.
"""

from __future__ import annotations

import pytest
import torch
from conftest import TOLERANCE
from torch import nn

from lstm_viz import InstrumentedLSTM, cost
from lstm_viz.engines import (
    ENGINES,
    CellStep,
    DirectionWeights,
    auto_engine,
    input_part,
    lstm_cell,
    step_product,
)

TOL = 1e-12  # float64


def weights_of(module: nn.Module, suffix: str = "") -> DirectionWeights:
    return DirectionWeights.from_state(dict(module.named_parameters()), suffix)


@pytest.mark.parametrize("bias", [True, False])
@torch.no_grad()
def test_lstm_cell_is_torch_lstm_cell(bias):
    torch.manual_seed(0)
    ref = nn.LSTMCell(4, 6, bias=bias, dtype=torch.float64)
    x, h, c = (torch.randn(3, n, dtype=torch.float64) for n in (4, 6, 6))
    step = lstm_cell(input_part(x, weights_of(ref)), h, c, weights_of(ref))
    want_h, want_c = ref(x, (h, c))
    assert isinstance(step, CellStep)
    assert step._fields == ("i", "f", "g", "o", "c", "h")
    torch.testing.assert_close(step.h, want_h, rtol=0, atol=TOL)
    torch.testing.assert_close(step.c, want_c, rtol=0, atol=TOL)
    # the gates, by plain arithmetic on the weights: rows i, f, g, o of z = W_ih x + b_ih + W_hh h + b_hh
    z = x @ ref.weight_ih.T + h @ ref.weight_hh.T + (ref.bias_ih + ref.bias_hh if bias else 0)
    for k, (name, act) in enumerate(zip("ifgo", (torch.sigmoid, torch.sigmoid, torch.tanh, torch.sigmoid),
                                        strict=True)):
        torch.testing.assert_close(getattr(step, name), act(z[:, k * 6:(k + 1) * 6]), rtol=0, atol=TOL)


@pytest.mark.parametrize("bias", [True, False])
@torch.no_grad()
def test_lstm_cell_with_projection_is_one_step_of_nn_lstm(bias):
    torch.manual_seed(1)
    ref = nn.LSTM(4, 6, proj_size=2, bias=bias, dtype=torch.float64)
    x, h, c = torch.randn(3, 4, dtype=torch.float64), torch.randn(3, 2, dtype=torch.float64), torch.randn(
        3, 6, dtype=torch.float64)
    w = weights_of(ref, "_l0")
    step = lstm_cell(input_part(x, w), h, c, w)
    _, (want_h, want_c) = ref(x[None], (h[None], c[None]))
    assert step.h.shape == (3, 2)
    torch.testing.assert_close(step.h, want_h[0], rtol=0, atol=TOL)
    torch.testing.assert_close(step.c, want_c[0], rtol=0, atol=TOL)


@torch.no_grad()
def test_input_part_covers_every_step_and_a_given_product_is_used():
    torch.manual_seed(2)
    ref = nn.LSTMCell(3, 5, dtype=torch.float64)
    w = weights_of(ref)
    x = torch.randn(7, 2, 3, dtype=torch.float64)
    parts = input_part(x, w)  # (T, B, 4H) in one GEMM
    assert parts.shape == (7, 2, 20)
    torch.testing.assert_close(parts[4], input_part(x[4], w), rtol=0, atol=TOL)
    h, c = torch.randn(2, 5, dtype=torch.float64), torch.randn(2, 5, dtype=torch.float64)
    calls = []
    product = step_product(w.weight_hh, batch=2)
    step = lstm_cell(parts[4], h, c, w, times_w_hh=lambda v: calls.append(v) or product(v))
    assert len(calls) == 1
    assert calls[0] is h
    torch.testing.assert_close(step.h, ref(x[4], (h, c))[0], rtol=0, atol=TOL)


def test_auto_engine_is_the_cost_models_pick_for_the_inputs_length_and_batch(monkeypatch):
    """auto asks cost.faster_engine about this run: the model's config, T and B read from the input in every layout
    (time-major, batch_first, unbatched), its device and dtype. Whether the pick is right is tests/test_cost.py's."""
    assert set(ENGINES) == {"stepwise", "fused", "compiled"} == set(cost.ENGINE_NAMES)
    asked = []

    def faster_engine(cfg, seq_len, batch, device, dtype):
        asked.append((cfg, seq_len, batch, torch.device(device).type, dtype))
        return "stepwise"

    monkeypatch.setattr(cost, "faster_engine", faster_engine)
    for batch_first in (False, True):
        m = InstrumentedLSTM(3, 4, num_layers=2, batch_first=batch_first, dtype=torch.float64)
        batched = torch.randn(5, 7, 3) if batch_first else torch.randn(7, 5, 3)  # T = 7, B = 5
        for x, B in ((batched, 5), (torch.randn(7, 3), 1)):
            asked.clear()
            assert m.trace(x.double()).engine == "stepwise"
            assert asked == [(m.config, 7, B, "cpu", torch.float64)]
    assert auto_engine(m.config, 9, 2, "cpu", torch.float64) == "stepwise"
    assert asked[-1][1:3] == (9, 2)


@torch.no_grad()
def test_stepwise_with_the_packed_product_matches_nn_lstm():
    """Big float32 weights on the CPU take oneDNN's prepacked W_hh product in each lstm_cell step: the one engine
    path the small random configs of test_parity.py never reach."""
    torch.manual_seed(3)
    ref = nn.LSTM(8, 512, bidirectional=True).eval()
    ours = InstrumentedLSTM.from_torch(ref)
    x = torch.randn(5, 2, 8)
    want_out, (want_h, want_c) = ref(x)
    stepwise, fused = ours.trace(x, engine="stepwise"), ours.trace(x, engine="fused")
    tol = TOLERANCE[torch.float32]
    for got, want in ((stepwise.output, want_out), (stepwise.h_n, want_h), (stepwise.c_n, want_c)):
        torch.testing.assert_close(got, want, rtol=0, atol=tol)
    for q in "ifgoch":
        torch.testing.assert_close(stepwise.get(q), fused.get(q), rtol=0, atol=10 * tol)
