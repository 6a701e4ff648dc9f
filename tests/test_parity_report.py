"""parity.check_trace: passes on honest traces of every layout, and fails, naming what, on a corrupted one."""

from __future__ import annotations

import pytest
import torch

from lstm_viz import InstrumentedLSTM
from lstm_viz.parity import SAMPLE_STEPS, TOLERANCE, ParityReport, check_trace, sampled_steps


def traced(dtype=torch.float32, seq_len=9, batch=3, unbatched=False, engine="auto", **option):
    torch.manual_seed(5)
    model = InstrumentedLSTM(4, 6, dtype=dtype, **option).eval()
    shape = (seq_len, 4) if unbatched else (batch, seq_len, 4) if model.batch_first else (seq_len, batch, 4)
    x = torch.randn(*shape, dtype=dtype)
    return model, x, model.trace(x, engine=engine)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("engine", ["stepwise", "fused"])
@pytest.mark.parametrize("option", [
    dict(), dict(batch_first=True), dict(unbatched=True), dict(unbatched=True, batch_first=True),
    dict(bidirectional=True, num_layers=2), dict(proj_size=3, num_layers=2, bidirectional=True, batch_first=True),
    dict(bias=False, num_layers=3),
])
def test_honest_traces_pass(option, engine, dtype):
    model, x, tr = traced(dtype, engine=engine, **option)
    report = check_trace(model, x, tr)
    assert isinstance(report, ParityReport)
    assert report.ok, report.summary()
    assert report.tolerance == TOLERANCE[dtype]
    assert report.max_diff <= report.tolerance
    assert report.steps_checked == report.seq_len == 9
    assert report.summary().startswith("gates and states at 9 of 9 steps match the reference cell")


def test_a_long_sequence_is_sampled_first_and_last_included():
    model, x, tr = traced(seq_len=1000, batch=1, bidirectional=True)
    report = check_trace(model, x, tr)
    assert report.ok
    assert report.steps_checked == SAMPLE_STEPS
    assert report.seq_len == 1000
    assert f"{SAMPLE_STEPS} of 1,000 steps" in report.summary()
    steps = sampled_steps(1000, SAMPLE_STEPS)
    assert len(set(steps)) == SAMPLE_STEPS
    assert steps[0] == 0
    assert steps[-1] == 999
    assert steps == sorted(steps)
    assert sampled_steps(5, SAMPLE_STEPS) == [0, 1, 2, 3, 4]
    assert sampled_steps(65, 64) == sorted(set(sampled_steps(65, 64)))


def test_train_mode_dropout_still_checks_what_ran():
    torch.manual_seed(0)
    model = InstrumentedLSTM(4, 6, num_layers=3, dropout=0.5).train()
    x = torch.randn(7, 2, 4)
    report = check_trace(model, x, model.trace(x))
    assert report.ok, report.summary()


@pytest.mark.parametrize("direction", [0, 1])
@pytest.mark.parametrize("engine", ["stepwise", "fused"])
def test_a_corrupted_gate_fails_and_is_named(engine, direction):
    model, x, tr = traced(engine=engine, seq_len=200, bidirectional=True)
    t = sampled_steps(200, SAMPLE_STEPS)[7]
    tr.f[0, direction, t, 0, 1] += 0.01
    report = check_trace(model, x, tr)
    assert not report.ok
    assert report.cell_diff > report.tolerance
    assert report.cell_diff == pytest.approx(0.01, rel=1e-3)
    assert report.torch_diff <= report.tolerance  # the output never saw the corruption
    text = report.summary()
    assert "gates and states (i, f, g, o, c, h)" in text
    assert "reference cell" in text
    assert f"f at layer 0, direction {direction}, step {t}, batch 0, unit 1" in text


def test_a_corrupted_cell_state_fails():
    model, x, tr = traced(num_layers=2)
    tr.c[1, 0, 4, 2, 0] -= 0.05  # step 4's c is wrong, and step 5 reads it as c_{t−1}
    report = check_trace(model, x, tr)
    assert not report.ok
    assert report.cell_diff == pytest.approx(0.05, rel=1e-3)
    assert "c at layer 1, direction 0, step 4" in report.summary()


def test_a_corrupted_output_fails():
    # fused: its output is a tensor of its own. The stepwise and compiled engines return the top layer's h as the
    # output (no copy), so there a corrupted output is a corrupted h too, which the cell check also reports.
    model, x, tr = traced(batch_first=True, engine="fused")
    tr.output[1, 3, 2] += 0.02
    report = check_trace(model, x, tr)
    assert not report.ok
    assert report.cell_diff <= report.tolerance
    assert report.torch_diff == pytest.approx(0.02, rel=1e-3)
    assert "differ from torch.nn.LSTM" in report.summary()
    assert "output" in report.summary()


def test_a_layer_input_that_is_not_the_layer_below_fails():
    model, x, tr = traced(num_layers=2, engine="fused")
    tr.layer_inputs[1] = tr.layer_inputs[1] + 0.03
    report = check_trace(model, x, tr)
    assert not report.ok
    assert report.layer_input_diff == pytest.approx(0.03, rel=1e-3)
    assert "previous layer's h" in report.summary()


def test_weights_changed_after_tracing_fail():
    model, x, tr = traced()
    with torch.no_grad():
        model.weight_hh_l0[0, 0] += 0.5
    report = check_trace(model, x, tr)
    assert not report.ok
    assert report.torch_diff > report.tolerance
