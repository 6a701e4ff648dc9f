"""The trace is self-consistent: every recorded number follows from the weights and the equations."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import DEVICES

from lstm_viz import InstrumentedLSTM, LSTMConfig
from lstm_viz.engines import ENGINES, linear_scan

CONFIGS = [
    dict(num_layers=1),
    dict(num_layers=3, bidirectional=True),
    dict(num_layers=2, proj_size=3, bidirectional=True, batch_first=True),
    dict(num_layers=2, bias=False),
]


def traced(device="cpu", engine="auto", **option):
    torch.manual_seed(7)
    m = InstrumentedLSTM(4, 6, dtype=torch.float64, device=device, **option)
    B, T = 3, 5
    x = torch.randn((B, T, 4) if m.batch_first else (T, B, 4), dtype=torch.float64, device=device)
    D = 2 if m.bidirectional else 1
    hx = (torch.randn(m.num_layers * D, B, m.proj_size or 6, dtype=torch.float64, device=device),
          torch.randn(m.num_layers * D, B, 6, dtype=torch.float64, device=device))
    return m, m.trace(x, hx, engine=engine)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("option", CONFIGS)
def test_cell_and_hidden_follow_the_equations(option, engine, device):
    m, tr = traced(device, engine, **option)
    assert tr.engine == engine
    for layer in range(tr.num_layers):
        for d in range(tr.num_directions):
            w_hr = tr.weights.get("weight_hr" + LSTMConfig.suffix(layer, d))
            for t in range(tr.seq_len):
                f, i, g, o = (tr.get(q)[layer, d, t] for q in "figo")
                c = tr.c[layer, d, t]
                # c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t
                torch.testing.assert_close(c, f * tr.c_prev(layer, d, t) + i * g, rtol=0, atol=1e-12)
                # h_t = o_t ⊙ tanh(c_t), projected by W_hr when proj_size > 0
                h = o * torch.tanh(c)
                h = h @ w_hr.T if w_hr is not None else h
                torch.testing.assert_close(tr.h[layer, d, t], h, rtol=0, atol=1e-12)


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("option", CONFIGS)
def test_gates_recomputed_from_weights(option, engine):
    _, tr = traced(engine=engine, **option)
    act = {"i": torch.sigmoid, "f": torch.sigmoid, "o": torch.sigmoid, "g": torch.tanh}
    for layer in range(tr.num_layers):
        for d in range(tr.num_directions):
            for t in range(tr.seq_len):
                for gate, fn in act.items():
                    parts = tr.gate_parts(gate, layer, d, t)
                    z = parts["input"] + parts["recurrent"] + parts["bias"]
                    torch.testing.assert_close(tr.get(gate)[layer, d, t], fn(z), rtol=0, atol=1e-12)


def test_trace_shapes_and_numpy():
    _, tr = traced(num_layers=2, proj_size=3, bidirectional=True, batch_first=True)
    for q in "figoc":
        assert tuple(tr.get(q).shape) == (2, 2, 5, 3, 6)
    assert tuple(tr.h.shape) == (2, 2, 5, 3, 3)
    arrays = tr.to_numpy()
    assert arrays["h"].shape == (2, 2, 5, 3, 3)
    assert arrays["output"].shape == (3, 5, 6)
    assert arrays["c_n"].shape == (4, 3, 6)
    assert arrays["h_n"].shape == (4, 3, 3)


def test_unbatched_trace_has_batch_one():
    m = InstrumentedLSTM(2, 3, num_layers=2)
    tr = m.trace(torch.randn(4, 2))
    assert tuple(tr.f.shape) == (2, 1, 4, 1, 3)
    assert not tr.batched
    assert tuple(tr.output.shape) == (4, 3)
    assert tuple(tr.h_n.shape) == (2, 3)


@pytest.mark.parametrize("option", CONFIGS)
def test_state_dict_round_trips_both_ways(option):
    torch.manual_seed(0)
    ref = torch.nn.LSTM(4, 6, **option)
    ours = InstrumentedLSTM(4, 6, **option)
    assert list(ours.state_dict()) == list(ref.state_dict())  # same names, same order
    ours.load_state_dict(ref.state_dict())
    back = torch.nn.LSTM(4, 6, **option)
    back.load_state_dict(ours.state_dict())
    x = torch.randn(5, 2, 4)
    torch.testing.assert_close(back(x)[0], ref(x)[0], rtol=0, atol=0)
    converted = ours.to_torch()
    assert isinstance(converted, torch.nn.LSTM)
    assert LSTMConfig.of(converted) == ours.config
    torch.testing.assert_close(converted(x)[0], ref(x)[0], rtol=0, atol=0)
    again = InstrumentedLSTM.from_torch(converted)
    for name, p in ref.state_dict().items():
        assert torch.equal(again.state_dict()[name], p)


def test_default_init_matches_nn_lstm_range():
    m = InstrumentedLSTM(3, 16, num_layers=2, proj_size=4)
    bound = 1 / math.sqrt(16)
    values = torch.cat([p.flatten() for p in m.parameters()])
    assert values.abs().max() <= bound
    assert values.abs().max() > 0.9 * bound
    assert values.std() > 0.4 * bound  # spread out, not constant


@pytest.mark.parametrize("kwargs", [
    dict(input_size=4, hidden_size=0), dict(input_size=0, hidden_size=4), dict(input_size=4, hidden_size=4,
                                                                                num_layers=0),
    dict(input_size=4, hidden_size=4, proj_size=4), dict(input_size=4, hidden_size=4, proj_size=-1),
    dict(input_size=4, hidden_size=4, dropout=1.5), dict(input_size=4, hidden_size=4, dropout=True),
    dict(input_size=4.0, hidden_size=4), dict(input_size=4, hidden_size="4"),
    dict(input_size=4, hidden_size=4, bias=1), dict(input_size=4, hidden_size=4, batch_first=None),
])
def test_constructor_errors_match_nn_lstm(kwargs):
    with pytest.raises(Exception) as want:
        torch.nn.LSTM(**kwargs)
    with pytest.raises(type(want.value)) as got:
        InstrumentedLSTM(**kwargs)
    assert str(got.value).startswith(str(want.value))  # nn.LSTM's message, maybe with the value appended


@pytest.mark.parametrize("x_shape,hx_shapes,fragment", [
    ((5, 3, 7), None, "Expected 4, got 7"),
    ((5, 3, 4, 1), None, "2D or 3D, got 4D"),
    ((4,), None, "2D or 3D, got 1D"),
    ((5, 3, 4), ((2, 3, 6), (1, 3, 6)), "Expected hidden[0] size (1, 3, 6), got [2, 3, 6]"),
    ((5, 3, 4), ((1, 3, 6), (1, 2, 6)), "Expected hidden[1] size (1, 3, 6), got [1, 2, 6]"),
    ((5, 3, 4), ((3, 6), (3, 6)), "should also be 3-D but got (2-D, 2-D)"),
    ((5, 4), ((1, 1, 6), (1, 1, 6)), "should also be 2-D but got (3-D, 3-D)"),
])
def test_forward_errors_match_nn_lstm(x_shape, hx_shapes, fragment):
    torch.manual_seed(0)
    ref = torch.nn.LSTM(4, 6)
    ours = InstrumentedLSTM.from_torch(ref)
    x = torch.randn(*x_shape)
    hx = None if hx_shapes is None else tuple(torch.zeros(s) for s in hx_shapes)
    with pytest.raises(Exception) as want:
        ref(x, hx)
    for call in (ours, ours.trace):
        with pytest.raises(type(want.value)) as got:
            call(x, hx)
        assert fragment in str(got.value)


def test_dtype_mismatch_is_a_clear_error():
    m = InstrumentedLSTM(4, 6)
    with pytest.raises(ValueError, match="does not match weight dtype"):
        m(torch.randn(5, 3, 4, dtype=torch.float64))


def test_empty_sequence_is_refused_as_nn_lstm_refuses_it():
    model, x = InstrumentedLSTM(4, 6), torch.randn(0, 3, 4)
    with pytest.raises(RuntimeError) as theirs:
        model.to_torch()(x)
    for run in (model, model.trace):
        with pytest.raises(RuntimeError) as ours:
            run(x)
        assert str(ours.value) == str(theirs.value)


def test_unknown_engine_is_refused():
    with pytest.raises(ValueError, match="unknown engine 'magic'"):
        InstrumentedLSTM(2, 3).trace(torch.randn(4, 1, 2), engine="magic")


@pytest.mark.parametrize("T,units", [(1, 3), (5, 1), (200, 7), (130, 5000), (3, 9000)])
def test_linear_scan_matches_the_recurrence(T, units):
    """The chunked scan against the plain loop c_t = f_t c_{t−1} + u_t, including f that underflowed to 0."""
    torch.manual_seed(T)
    f = torch.rand(T, 2, units, dtype=torch.float64)
    f[T // 2] = 0.0
    u = torch.randn(T, 2, units, dtype=torch.float64)
    c0 = torch.randn(2, units, dtype=torch.float64)
    got = linear_scan(f, u, c0, out=torch.empty_like(u))
    c = c0
    for t in range(T):
        c = f[t] * c + u[t]
        torch.testing.assert_close(got[t], c, rtol=0, atol=1e-12)


def test_memo_is_bounded_and_keeps_what_is_revisited():
    from lstm_viz.trace import MEMO_ENTRIES

    trace = InstrumentedLSTM(2, 3).trace(torch.randn(4, 1, 2))
    calls = []
    trace.memo("kept", lambda: calls.append("kept") or "k")
    for n in range(3 * MEMO_ENTRIES):  # a user sweeping a slider: each value a new derived figure
        trace.memo(("figure", n), lambda: "x" * 1000)
        trace.memo("kept", lambda: calls.append("again") or "k")  # revisited, so never evicted
    assert len(trace._memo) == MEMO_ENTRIES
    assert calls == ["kept"]
    assert ("figure", 0) not in trace._memo
    assert ("figure", 3 * MEMO_ENTRIES - 1) in trace._memo
