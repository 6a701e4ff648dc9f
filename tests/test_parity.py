"""Parity: InstrumentedLSTM against torch.nn.LSTM with identical weights, over random configurations."""

from __future__ import annotations

import pytest
import torch
from conftest import DEVICES, TOLERANCE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lstm_viz import InstrumentedLSTM, trace
from lstm_viz.engines import ENGINES


@st.composite
def lstm_cases(draw):
    """A config, an input and maybe initial states, covering every nn.LSTM option."""
    hidden = draw(st.integers(1, 8))
    cfg = dict(
        input_size=draw(st.integers(1, 6)),
        hidden_size=hidden,
        num_layers=draw(st.integers(1, 4)),
        bias=draw(st.booleans()),
        batch_first=draw(st.booleans()),
        bidirectional=draw(st.booleans()),
        proj_size=draw(st.integers(0, hidden - 1)) if draw(st.booleans()) else 0,
        dropout=draw(st.sampled_from([0.0, 0.5])),  # eval mode: dropout must change nothing
    )
    case = dict(cfg=cfg, seq_len=draw(st.integers(1, 7)), batch=draw(st.integers(1, 4)),
                unbatched=draw(st.booleans()), given_hx=draw(st.booleans()), seed=draw(st.integers(0, 2**31)))
    return case


def make_pair(case, dtype, device):
    """An nn.LSTM with random weights, our copy of it, an input and hx in nn.LSTM's layout."""
    torch.manual_seed(case["seed"])
    cfg = case["cfg"]
    ref = torch.nn.LSTM(**cfg, dtype=dtype, device=device).eval()
    ours = InstrumentedLSTM.from_torch(ref)
    T, B, D = case["seq_len"], case["batch"], 2 if cfg["bidirectional"] else 1
    shape = (B, T) if cfg["batch_first"] else (T, B)
    x = torch.randn(*shape, cfg["input_size"], dtype=dtype, device=device)
    hx = None
    if case["given_hx"]:
        h_size = cfg["proj_size"] or cfg["hidden_size"]
        hx = (torch.randn(cfg["num_layers"] * D, B, h_size, dtype=dtype, device=device),
              torch.randn(cfg["num_layers"] * D, B, cfg["hidden_size"], dtype=dtype, device=device))
    if case["unbatched"]:
        x = x[0] if cfg["batch_first"] else x[:, 0]
        hx = None if hx is None else (hx[0][:, 0], hx[1][:, 0])
    return ref, ours, x, hx


def max_err(a, b) -> float:
    assert a.shape == b.shape, (a.shape, b.shape)
    return (a - b).abs().max().item()


def check_parity(case, dtype, device):
    ref, ours, x, hx = make_pair(case, dtype, device)
    tol = TOLERANCE[dtype]
    with torch.no_grad():
        want_out, (want_h, want_c) = ref(x, hx)
        got_out, (got_h, got_c) = ours(x, hx)
        traces = {engine: ours.trace(x, hx, engine=engine) for engine in ENGINES}
    for name, got, want in (("output", got_out, want_out), ("h_n", got_h, want_h), ("c_n", got_c, want_c)):
        assert max_err(got, want) <= tol, f"{name} differs for {case}"
    for engine, tr in traces.items():
        # compiled where it cannot run (no build, CUDA) is the stepwise engine, and says so
        assert tr.engine == engine or engine == "compiled" and tr.engine.startswith("stepwise (compiled cell unavail")
        for got, want in ((tr.output, want_out), (tr.h_n, want_h), (tr.c_n, want_c)):
            assert max_err(got, want) <= tol, f"engine {engine} differs for {case}"
        check_last_layer_is_output(tr, case, want_out, tol)
    # The engines agree on every recorded gate and state, not only on what nn.LSTM returns.
    for q in ("f", "i", "g", "o", "c", "h"):
        assert max_err(traces["fused"].get(q), traces["stepwise"].get(q)) <= 10 * tol, q


def check_last_layer_is_output(tr, case, want_out, tol):
    # The last layer's recorded h is the output, direction by direction ([forward, reverse] features).
    out = want_out if not case["cfg"]["batch_first"] or case["unbatched"] else want_out.transpose(0, 1)
    out = out.reshape(tr.seq_len, tr.batch_size, -1)
    h_size = tr.h.shape[-1]
    for d in range(tr.num_directions):
        assert max_err(tr.h[-1, d], out[..., d * h_size:(d + 1) * h_size]) <= tol
    assert tr.f.device == want_out.device
    assert not tr.f.requires_grad


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=lstm_cases())
def test_parity_random_configs(case, dtype, device):
    check_parity(case, dtype, device)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("option", [
    dict(batch_first=True), dict(bidirectional=True), dict(proj_size=3), dict(bias=False),
    dict(num_layers=4), dict(num_layers=3, dropout=0.3), dict(num_layers=2, bidirectional=True, proj_size=2),
])
@pytest.mark.parametrize("unbatched,given_hx", [(False, False), (True, False), (False, True), (True, True)])
def test_parity_each_option(option, unbatched, given_hx, device):
    """Each option on its own, so a failure names it (hypothesis covers the combinations)."""
    for dtype in (torch.float64, torch.float32):
        check_parity(option_case(option, unbatched, given_hx), dtype, device)


def option_case(option: dict, unbatched: bool, given_hx: bool) -> dict:
    """A small case (as lstm_cases draws them) of a 2-layer LSTM with `option` changed from nn.LSTM's defaults."""
    cfg = dict(input_size=5, hidden_size=7, num_layers=2, bias=True, batch_first=False, bidirectional=False,
               proj_size=0, dropout=0.0) | option
    return dict(cfg=cfg, seq_len=6, batch=3, unbatched=unbatched, given_hx=given_hx, seed=1)


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_match_nn_lstm(device):
    """Autograd through the manual cell gives nn.LSTM's gradients (float64)."""
    case = dict(cfg=dict(input_size=3, hidden_size=5, num_layers=2, bias=True, batch_first=False,
                         bidirectional=True, proj_size=2, dropout=0.0),
                seq_len=4, batch=2, unbatched=False, given_hx=True, seed=3)
    ref, ours, x, hx = make_pair(case, torch.float64, device)
    grads = []
    for module in (ref, ours):
        xi = x.clone().requires_grad_()
        h0 = hx[0].clone().requires_grad_()
        out, (h_n, c_n) = module(xi, (h0, hx[1]))
        (out.sin().sum() + h_n.sum() + c_n.pow(2).sum()).backward()
        grads.append([xi.grad, h0.grad] + [p.grad for p in module.parameters()])
    for got, want in zip(grads[1], grads[0], strict=True):
        assert max_err(got, want) <= 1e-10


def test_train_mode_dropout_between_layers():
    """In train mode dropout acts between layers only: layer 0 is untouched, later layers see zeros."""
    torch.manual_seed(0)
    m = InstrumentedLSTM(4, 16, num_layers=2, dropout=0.5).train()
    x = torch.randn(6, 2, 4)
    tr = m.trace(x)
    assert torch.equal(tr.layer_inputs[0], x)
    fed = tr.layer_inputs[1]
    zeros = (fed == 0).float().mean().item()
    assert 0.3 < zeros < 0.7  # p = 0.5 of the 6·2·16 features zeroed
    kept = fed != 0
    assert torch.allclose(fed[kept], 2 * tr.h[0, 0][kept])  # survivors scaled by 1/(1 − p)
    eval_out = m.eval()(x)[0]
    assert not torch.allclose(tr.output, eval_out)


def test_module_level_trace_accepts_nn_lstm():
    torch.manual_seed(0)
    ref = torch.nn.LSTM(3, 4, num_layers=2).double()
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    tr = trace(ref, x)
    assert max_err(tr.output, ref(x)[0].detach()) <= 1e-12
    with pytest.raises(TypeError, match="InstrumentedLSTM or torch.nn.LSTM"):
        trace(torch.nn.GRU(3, 4), x)
