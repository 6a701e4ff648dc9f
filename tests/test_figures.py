"""Figures: every spec is valid Plotly, and its decoded data is the trace's, on the conventional scales."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from figure_data import decode_array

from lstm_viz import InstrumentedLSTM, figures, shapes
from lstm_viz.config import LSTMConfig
from lstm_viz.figures import (
    DISPLAY_ORDER,
    OVER_TIME_MAX_VALUES,
    QUANTITIES,
    over_time_spec,
    step_heatmap_spec,
    step_spec,
    time_window,
)


@pytest.fixture(scope="module")
def trace():
    torch.manual_seed(0)
    return InstrumentedLSTM(3, 6, num_layers=2, bidirectional=True, proj_size=4).trace(torch.randn(9, 2, 3))


def test_step_spec_is_valid_and_holds_the_trace(trace):
    spec = step_spec(trace, t=4, layer=1, direction=1, highlight_unit=2)
    go.Figure(spec)  # strict validation: the app skips it, so the tests must not
    for k, name in enumerate(DISPLAY_ORDER):
        z = decode_array(spec["data"][k]["z"])
        np.testing.assert_allclose(z, trace.get(name)[1, 1, 4].numpy(), rtol=1e-7)
        assert figures.plain(spec["layout"]["annotations"][k]["text"]) == figures.plain(QUANTITIES[name].title)
        assert f"{QUANTITIES[name].named} · t=4 · batch %{{y}} · unit %{{x}} · layer 1 · reverse<br>" in \
            spec["data"][k]["hovertemplate"]
    assert spec["layout"]["title"]["text"] == "step t=4 · layer 1 · reverse"
    assert decode_array(spec["data"][5]["z"]).shape == (2, 4)  # h has proj_size units
    boxes = [s for s in spec["layout"]["shapes"]]
    assert len(boxes) == 6
    assert all(b["x0"] == 1.5 and b["x1"] == 2.5 for b in boxes)


def test_colour_conventions(trace):
    layout = step_spec(trace, 0)["layout"]
    axis_of = {name: d["coloraxis"] for name, d in zip(DISPLAY_ORDER, step_spec(trace, 0)["data"], strict=True)}
    assert axis_of["f"] == axis_of["i"] == axis_of["o"]
    assert axis_of["g"] == axis_of["h"] != axis_of["f"]
    gates, tanh, cell = (layout[axis_of[q]] for q in ("f", "g", "c"))
    assert (gates["cmin"], gates["cmax"]) == (0.0, 1.0)
    assert (tanh["cmin"], tanh["cmax"], tanh["cmid"]) == (-1.0, 1.0, 0.0)
    bound = np.abs(trace.c[0, 0].numpy()).max()
    assert cell["cmin"] == -cell["cmax"]
    assert cell["cmax"] == pytest.approx(bound)
    assert "from data" in cell["colorbar"]["title"]["text"]


def test_over_time_spec_units_by_time_with_marker(trace):
    spec = over_time_spec(trace, t=6, layer=0, direction=0, batch=1, time_labels=list("abcdefghi"))
    go.Figure(spec)
    for k, name in enumerate(DISPLAY_ORDER):
        z = decode_array(spec["data"][k]["z"])
        np.testing.assert_allclose(z, trace.get(name)[0, 0, :, 1].numpy().T, rtol=1e-7)
    marker = spec["layout"]["shapes"][0]
    assert (marker["x0"], marker["x1"]) == (5.5, 6.5)
    assert spec["layout"]["xaxis"]["ticktext"] == list("abcdefghi")
    assert "window" not in spec["layout"]["title"]["text"]


def test_long_sequences_are_windowed_and_say_so():
    torch.manual_seed(0)
    tr = InstrumentedLSTM(2, 64).trace(torch.randn(5000, 1, 2))
    spec = over_time_spec(tr, t=4321)
    z = decode_array(spec["data"][0]["z"])
    start, stop = spec["data"][0]["x0"], spec["data"][0]["x0"] + z.shape[1]
    assert start <= 4321 < stop
    assert 6 * z.size <= OVER_TIME_MAX_VALUES
    np.testing.assert_allclose(z, tr.f[0, 0, start:stop, 0].numpy().T, rtol=1e-7)
    assert f"steps {start}–{stop - 1} of 5000" in spec["layout"]["title"]["text"]


@pytest.mark.parametrize("seq_len,t,budget", [(10, 3, 100), (1000, 0, 100), (1000, 999, 100), (1000, 517, 64),
                                              (7, 6, 3)])
def test_time_window_holds_t_and_moves_in_strides(seq_len, t, budget):
    start, stop = time_window(seq_len, t, budget)
    assert 0 <= start <= t < stop <= seq_len
    assert stop - start == min(seq_len, budget)
    # within a stride the window does not move, so the figure's data need not change
    assert time_window(seq_len, min(t + 1, seq_len - 1), budget)[0] in (start, start + max(1, budget // 2))


def test_single_heatmap_for_notebooks(trace):
    spec = step_heatmap_spec(trace, "g", t=2, layer=0)
    go.Figure(spec)
    np.testing.assert_allclose(decode_array(spec["data"][0]["z"]), trace.g[0, 0, 2].numpy(), rtol=1e-7)
    assert spec["layout"]["title"]["text"].startswith("candidate")


def test_shapes_of_the_classic_example():
    cfg = LSTMConfig(10, 20, 2)
    io = {r.name: r for r in shapes.io_shapes(cfg, seq_len=5, batch_size=3)}
    ref = torch.nn.LSTM(10, 20, 2)
    out, (h_n, c_n) = ref(torch.randn(5, 3, 10))
    assert io["input"].shape == (5, 3, 10)
    assert io["input"].axes[:2] == ("seq", "batch")
    assert io["output"].shape == tuple(out.shape)
    assert io["h_n"].shape == tuple(h_n.shape)
    assert io["c_n"].shape == tuple(c_n.shape)
    weights = {r.name: r.shape for r in shapes.weight_shapes(cfg)}
    assert weights == {k: tuple(v.shape) for k, v in ref.state_dict().items()}
    assert shapes.parameter_count(cfg) == sum(p.numel() for p in ref.parameters())
    assert shapes.constructor_call(cfg) == "nn.LSTM(10, 20, 2)"


@pytest.mark.parametrize("option", [dict(batch_first=True), dict(bidirectional=True, proj_size=3), dict(bias=False)])
def test_io_shapes_match_nn_lstm(option):
    cfg = LSTMConfig(4, 6, 2, **option)
    ref = torch.nn.LSTM(**cfg.to_dict())
    x = torch.randn((3, 5, 4) if cfg.batch_first else (5, 3, 4))
    out, (h_n, c_n) = ref(x)
    io = {r.name: r.shape for r in shapes.io_shapes(cfg, seq_len=5, batch_size=3)}
    assert io["input"] == tuple(x.shape)
    assert io["output"] == tuple(out.shape)
    assert io["h_n"] == tuple(h_n.shape)
    assert io["c_n"] == tuple(c_n.shape)
    assert {r.name: r.shape for r in shapes.weight_shapes(cfg)} == {k: tuple(v.shape)
                                                                   for k, v in ref.state_dict().items()}


def test_notebook_api_returns_figures_of_the_trace(trace):
    fig = trace.heatmap("c", t=3, layer=1, direction=1)
    assert isinstance(fig, go.Figure)
    np.testing.assert_allclose(decode_array(fig.to_dict()["data"][0]["z"]), trace.c[1, 1, 3].numpy(), rtol=1e-7)
    lines = trace.over_time("c", unit=5)
    c_line = next(d for d in lines.to_dict()["data"] if d["name"] == "c")  # first panel: layer 0, forward
    np.testing.assert_allclose(decode_array(c_line["y"]), trace.c[0, 0, :, 0, 5].numpy(), rtol=1e-7)
    assert all(d["name"] != "h" for d in lines.to_dict()["data"])  # unit 5 ≥ proj_size 4: h has no such unit
    assert isinstance(trace.over_time(), go.Figure)


def test_saturation_and_ledger_specs_are_valid(trace):
    from lstm_viz import analysis
    from lstm_viz.figures import ledger_spec, loss_spec, saturation_spec, unit_spec

    sat = analysis.saturation(trace, 0.2, 0.8)
    spec = saturation_spec(sat, 0.2, 0.8, highlight_unit=1)
    go.Figure(spec)
    first = spec["data"][0]
    np.testing.assert_allclose(first["x"], sat["f"][0, 0, :, 0])  # two statements: assert_allclose returns None
    np.testing.assert_allclose(first["y"], sat["f"][0, 0, :, 1])
    go.Figure(ledger_spec(analysis.memory_ledger(trace, 1, 1, 0), unit=2, layer=1))
    go.Figure(unit_spec(trace, unit=0, batch=1, t=4))
    go.Figure(loss_spec([1.0, 0.5, 0.1], threshold=0.2))


def test_long_sequences_thin_the_lines_and_say_so():
    from lstm_viz import analysis
    from lstm_viz.figures import LINE_MAX_POINTS, ledger_spec, unit_spec

    torch.manual_seed(0)
    tr = InstrumentedLSTM(2, 4).trace(torch.randn(10_001, 1, 2))
    spec = unit_spec(tr, unit=1)
    c_line = next(d for d in spec["data"] if d["name"] == "c")
    y = decode_array(c_line["y"])
    assert len(y) <= LINE_MAX_POINTS
    assert c_line["x"][1] - c_line["x"][0] == 3
    np.testing.assert_allclose(y, tr.c[0, 0, ::3, 0, 1].numpy(), rtol=1e-7)
    assert "a point every 3 steps of 10,001" in spec["layout"]["title"]["text"]
    ledger = ledger_spec(analysis.memory_ledger(tr), unit=1, layer=0)
    assert len(decode_array(ledger["data"][0]["y"])) <= LINE_MAX_POINTS


def mutable_parts(spec) -> list:
    """Every dict and list inside a spec (the parts a consumer could change in place)."""
    found, stack = [], [spec]
    while stack:
        node = stack.pop()
        if isinstance(node, (dict, list)):
            found.append(node)
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, (list, tuple)):
            stack.extend(node)
    return found


def test_specs_share_nothing_mutable_across_sessions(trace):
    """Two sessions drawing the same view get specs with no dict or list in common: a change one makes can
    never show in another's figure (the shared colour scales and marker style are immutable)."""
    from lstm_viz import analysis
    from lstm_viz.figures import ledger_spec, saturation_spec, unit_spec

    def every_spec():
        return [step_spec(trace, 3, 1, 1, highlight_unit=2), over_time_spec(trace, 3, 1, 0, 1),
                step_heatmap_spec(trace, "c", 2), unit_spec(trace, unit=1, batch=0, t=4),
                saturation_spec(analysis.saturation(trace, 0.1, 0.9), 0.1, 0.9, highlight_unit=1),
                ledger_spec(analysis.memory_ledger(trace, 0, 0, 0), unit=1, layer=0)]

    mine, theirs = every_spec(), every_spec()
    shared = {id(p) for p in mutable_parts(mine)} & {id(p) for p in mutable_parts(theirs)}
    assert not shared
