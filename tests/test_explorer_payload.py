"""The explorer's payloads: what the page receives is exactly lstm_viz's trace, windowed within a byte budget.

The window payload is decoded with the same layout the page uses (lstm_viz.explorer.unpack); the app's payloads
are read from AppTest, where a components.v2 element is an unknown element whose proto carries the bytes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from app_support import assert_clean, report, start
from figure_data import explorer_focus, explorer_window

from lstm_viz import InstrumentedLSTM, tasks
from lstm_viz.equations import step_terms
from lstm_viz.explorer import BYTE_BUDGET, to_html, unit_payload, unpack, window_of, window_payload
from lstm_viz.explorer.payload import decode_terms, step_bytes, window_steps
from lstm_viz.figures import DISPLAY_ORDER
from lstm_viz.session import EXPLORER_WINDOWS_KEPT, SessionData


@pytest.fixture(scope="module")
def deep_trace():
    torch.manual_seed(0)
    model = InstrumentedLSTM(3, 6, num_layers=2, bidirectional=True, proj_size=4, dtype=torch.float64)
    return model.trace(torch.randn(40, 3, 3, dtype=torch.float64))


@pytest.mark.parametrize("layer,direction", [(0, 0), (1, 1)])
def test_the_window_holds_the_traces_values_as_float32(deep_trace, layer, direction):
    header, arrays = unpack(window_payload(deep_trace, layer, direction, 7))
    assert (header["start"], header["stop"]) == (0, 40)  # it fits: one window, the whole sequence
    for name in DISPLAY_ORDER:
        want = deep_trace.get(name)[layer, direction].numpy().astype(np.float32)
        np.testing.assert_array_equal(arrays[name], want, err_msg=name)
    assert arrays["h"].shape == (40, 3, 4)  # projected h: proj_size units
    assert arrays["c"].shape == (40, 3, 6)
    np.testing.assert_array_equal(arrays["x"], deep_trace.layer_inputs[layer].numpy().astype(np.float32))
    output = deep_trace.output.numpy().astype(np.float32)  # the top layer's output is nn.LSTM's output
    if layer == deep_trace.num_layers - 1:
        np.testing.assert_array_equal(arrays["out"], output)
    assert header["c_bound"] == pytest.approx(float(np.abs(deep_trace.c[layer, direction].numpy()).max()))
    assert header["direction_name"] == ("reverse" if direction else "forward")


def test_windows_respect_the_budget_and_keep_t_inside_with_margin(deep_trace):
    budget = 10 * step_bytes(deep_trace, 0)  # ten steps a window
    assert window_steps(deep_trace, 0, budget=budget) == 10
    starts = set()
    for t in range(deep_trace.seq_len):
        payload = window_payload(deep_trace, 0, 0, t, budget=budget)
        header, arrays = unpack(payload)
        start, stop = header["start"], header["stop"]
        assert (start, stop) == window_of(deep_trace, 0, t, budget=budget)
        assert stop - start == 10
        assert start <= t < stop
        assert sum(a.nbytes for a in arrays.values()) <= budget + 4 * 3 * (6 + 4)  # + the two edge states
        if start > 0 and stop < deep_trace.seq_len:
            assert min(t - start, stop - 1 - t) >= 2  # a quarter window of margin, away from the ends
        for name in ("f", "c"):
            np.testing.assert_array_equal(arrays[name][t - start], deep_trace.get(name)[0, 0, t].numpy()
                                          .astype(np.float32))
        starts.add(start)
    assert min(starts) == 0  # the edges are reached exactly
    assert max(starts) == deep_trace.seq_len - 10
    assert len(starts) < deep_trace.seq_len // 2  # half-window strides: the window moves every few steps


@pytest.mark.parametrize("direction", [0, 1])
def test_the_state_before_the_window_is_what_its_first_step_reads(deep_trace, direction):
    budget = 8 * step_bytes(deep_trace, 1)
    header, arrays = unpack(window_payload(deep_trace, 1, direction, 20, budget=budget))
    start, stop = header["start"], header["stop"]
    first = stop - 1 if direction else start  # the reverse direction processes its window from the end
    np.testing.assert_array_equal(arrays["h_before"], deep_trace.h_prev(1, direction, first).numpy()
                                  .astype(np.float32))
    np.testing.assert_array_equal(arrays["c_before"], deep_trace.c_prev(1, direction, first).numpy()
                                  .astype(np.float32))


@pytest.mark.parametrize("direction", [0, 1])
def test_unit_terms_split_each_gate_as_the_equations_do(deep_trace, direction):
    window = (8, 20)
    payload = unit_payload(deep_trace, 1, direction, window, unit=5, batch=2, t=9, window_id="w")
    assert (payload["unit"], payload["batch"], payload["t"], payload["window_id"]) == (5, 2, 9, "w")
    terms = decode_terms(payload)
    for t in (8, 9, 19):  # the window's edges: the state before (or after) it comes from outside
        reference = step_terms(deep_trace, 1, direction, t, 5, 2)
        for gate in "ifgo":
            k = t - window[0]
            assert terms[gate]["input"][k] == pytest.approx(reference[f"{gate}.input"], abs=1e-6)
            assert terms[gate]["recurrent"][k] == pytest.approx(reference[f"{gate}.recurrent"], abs=1e-6)
            assert terms[gate]["bias"] == pytest.approx(reference[f"{gate}.bias"], abs=1e-12)
            z = terms[gate]["input"][k] + terms[gate]["recurrent"][k] + terms[gate]["bias"]
            activation = np.tanh(z) if gate == "g" else 1 / (1 + np.exp(-z))
            assert activation == pytest.approx(deep_trace.get(gate)[1, direction, t, 2, 5].item(), abs=1e-5)


def test_a_toy_tasks_target_and_prediction_travel_with_the_window():
    result = tasks.train("sine", steps=5, seed=0)
    seq, target = tasks.example_with_target("sine", seed=0)
    trace = InstrumentedLSTM.from_torch(result.lstm).trace(seq.x)
    readout = tasks.Readout(target, result.read(trace.layer_output(0)))
    header, arrays = unpack(window_payload(trace, 0, 0, 0, labels=seq.labels, readout=readout))
    np.testing.assert_array_equal(arrays["target"], target)
    np.testing.assert_allclose(arrays["prediction"], result.predict(seq.x)[..., 0].numpy(), atol=1e-5)
    assert header["labels"] == seq.labels


def test_a_session_keeps_two_windows_at_most_counted_in_the_servers_memory(deep_trace):
    import gc

    from lstm_viz import guard

    session, built = SessionData(), []

    def build(tag):
        built.append(tag)
        return tag.encode() * 1000

    gc.collect()
    before = guard.held_bytes()
    for first in (0, 10, 20, 0, 20):
        session.explorer_window(deep_trace, (0, 0, first, first + 10), lambda s=first: build(str(s)), 10**6)
    assert built == ["0", "10", "20", "0"]  # 20 was still kept; 0 had been dropped
    assert len(session._windows) == EXPLORER_WINDOWS_KEPT
    gc.collect()
    assert guard.held_bytes() - before == 2000 + 1000  # windows "20" and "0", while kept
    session.clear()
    gc.collect()
    assert guard.held_bytes() == before


def test_the_html_export_escapes_its_title_and_inlines_everything(deep_trace):
    document = to_html(deep_trace, title="<script>alert(1)</script> & co")
    assert "<title>&lt;script&gt;alert(1)&lt;/script&gt; &amp; co</title>" in document
    assert "<script>alert(1)" not in document
    assert "src=\"http" not in document
    assert "cdn." not in document.lower().split("<body>")[1]


# --- the app's payloads (AppTest) ----------------------------------------------------------------------------------

def test_the_apps_window_and_unit_payloads_match_lstm_viz():
    at = start(hidden_size=5, num_layers=2, bidirectional=True, layer=1, direction=1, unit=4, batch_index=1,
               timestep=3, dtype="float64")
    assert_clean(at)
    trace = at.session_state["state.session"].last_good.run.trace
    header, arrays = explorer_window(at)
    assert (header["layer"], header["direction"]) == (1, 1)
    for name in DISPLAY_ORDER:
        np.testing.assert_array_equal(arrays[name], trace.get(name)[1, 1].numpy().astype(np.float32))
    focus = explorer_focus(at)
    assert (focus["t"], focus["unit"], focus["batch"], focus["window_id"]) == (3, 4, 1, header["id"])
    reference = step_terms(trace, 1, 1, 3, 4, 1)
    assert decode_terms(focus)["f"]["recurrent"][3] == pytest.approx(reference["f.recurrent"], abs=1e-6)


def test_a_100000_step_sequence_is_windowed_within_the_byte_budget():
    at = start(seq_len=100_000, hidden_size=64, input_size=4, batch_size=2)
    assert_clean(at)
    trace = at.session_state["state.session"].last_good.run.trace
    payload = explorer_focus(at), at.get("bidi_component")[0].proto.bytes
    header, arrays = explorer_window(at)
    assert len(payload[1]) <= BYTE_BUDGET + 64 * 1024  # the arrays within the budget, plus a small header
    assert sum(a.nbytes for a in arrays.values()) <= BYTE_BUDGET
    assert header["start"] == 0
    assert header["stop"] < 100_000
    for t in (99_999, 50_000):  # the page reports where the user went; Python sends the window holding it
        report(at, t=t)
        assert_clean(at)
        header, arrays = explorer_window(at)
        assert header["start"] <= t < header["stop"]
        assert header["stop"] <= 100_000
        np.testing.assert_array_equal(arrays["c"][t - header["start"]], trace.c[0, 0, t].numpy())
    assert header["stop"] - header["start"] == header["window_steps"]
