"""The app, driven through Streamlit's AppTest: widgets by key, figures decoded and checked against lstm_viz."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from app_support import APP, assert_clean, link, reference_trace, rendered, report, start
from figure_data import explorer_focus, explorer_window, step_z
from streamlit.testing.v1 import AppTest

from lstm_viz.figures import DISPLAY_ORDER
from lstm_viz.parity import TOLERANCE
from lstm_viz.pipeline import AppConfig

pytestmark = pytest.mark.app


@pytest.fixture(scope="module")
def app() -> AppTest:
    return start()


def test_defaults_run_and_draw_six_quantities(app):
    assert_clean(app)
    assert not app.error
    header, arrays = explorer_window(app)
    assert header["order"] == ["f", "i", "o", "g", "c", "h"]
    assert explorer_focus(app)["t"] == 0
    trace = reference_trace(AppConfig())
    for q in DISPLAY_ORDER:
        np.testing.assert_array_equal(arrays[q], trace.get(q)[0, 0].numpy())  # the whole sequence fits one window


CHANGES = [
    ("input_size", "number_input", 3), ("hidden_size", "number_input", 5), ("num_layers", "number_input", 3),
    ("seq_len", "number_input", 9), ("batch_size", "number_input", 4), ("proj_size", "number_input", 3),
    ("seed", "number_input", 11), ("bidirectional", "checkbox", True), ("batch_first", "checkbox", True),
    ("bias", "checkbox", False), ("dtype", "selectbox", "float64"), ("input_source", "selectbox", "typed"),
    ("input_source", "selectbox", "signal"), ("input_source", "selectbox", "text"),
    ("input_source", "selectbox", "file"),
]


@pytest.mark.parametrize("key,kind,value", CHANGES, ids=[f"{k}={v}" for k, _, v in CHANGES])
def test_each_config_widget_runs(app, key, kind, value):
    at = start()
    getattr(at, kind)(key=key).set_value(value).run()
    assert_clean(at)
    assert at.session_state[key] == value
    if value != "file":  # the file source waits for an upload and says so
        assert not at.error, [e.value for e in at.error]
        assert len(at.get("bidi_component")) == 2  # the explorer and its unit payload: other tabs run only when open
        assert not at.get("plotly_chart")


def test_device_widget_is_disabled_without_cuda(app):
    device = app.selectbox(key="device")
    assert device.disabled == (not torch.cuda.is_available())


def test_sizes_reach_the_figures():
    at = start()
    at.number_input(key="hidden_size").set_value(5)
    at.number_input(key="seq_len").set_value(7).run()
    assert_clean(at)
    for q in DISPLAY_ORDER:
        assert step_z(at, q).shape == (2, 5)  # batch × units
    header, arrays = explorer_window(at)
    for q in DISPLAY_ORDER:
        assert arrays[q].shape == (7, 2, 5)  # time × batch × units: the page draws units × time from it


def test_timestep_slices_the_trace():
    at = start()
    config = AppConfig()
    trace = reference_trace(config)
    seen = []
    for t in (0, 5, config.seq_len - 1):
        report(at, t=t)
        assert_clean(at)
        for q in DISPLAY_ORDER:
            np.testing.assert_allclose(step_z(at, q), trace.get(q)[0, 0, t].numpy(), rtol=0, atol=1e-6)
        assert link(at).get("timestep", "0") == str(t)  # the URL leaves out defaults
        assert any(f"t = {t}" in e.label for e in at.expander)  # the typeset equations follow
        seen.append(step_z(at, "c").copy())
    assert not np.allclose(seen[0], seen[1])  # the data really changes with t


@pytest.mark.parametrize("garbage,fragment", [
    ("1, 2\n3, abc", "line 2"),
    ("1, 2\n3, 4, 5", "line 2"),
    ("", "empty"),
    ("nan, 1", "NaN"),
])
def test_typed_garbage_shows_an_error_and_keeps_the_last_good_input(garbage, fragment):
    at = start(input_source="typed")
    assert not at.error
    good = step_z(at, "f")
    at.text_area(key="typed_text").set_value(garbage).run()
    assert_clean(at)
    assert at.error
    assert fragment in rendered(at.error[0].value)
    np.testing.assert_array_equal(step_z(at, "f"), good)  # last good state kept


def test_impossible_config_is_an_error_not_a_crash():
    at = start()
    at.number_input(key="proj_size").set_value(8).run()  # = hidden_size
    assert_clean(at)
    assert at.error
    assert "proj_size has to be smaller than hidden_size" in rendered(at.error[0].value)
    assert len(at.get("bidi_component")) == 2  # the last good run's explorer stays


def test_parity_badge_says_what_was_checked(app):
    badge = [m.value for m in app.markdown if "parity: max |Δ|" in m.value]
    assert len(badge) == 1
    value = float(badge[0].split("max |Δ| = ")[1].split()[0])
    assert value <= TOLERANCE[torch.float32]
    assert "green" in badge[0]
    steps = AppConfig().seq_len
    assert any(f"gates and states at {steps} of {steps} steps match the reference cell" in c.value
               for c in app.caption)


def test_classic_preset_and_shapes_tables():
    at = start(tab="shapes")
    at.button(key="preset_classic").click().run()
    assert_clean(at)
    io = shapes_table(at)
    assert io["input"][0] == "(5, 3, 10)"
    assert io["input"][1].startswith("(seq, batch")
    assert io["output"][0] == "(5, 3, 20)"
    assert io["h_n"][0] == io["c_n"][0] == "(2, 3, 20)"
    assert any("first axis is the **sequence**" in m.value for m in at.info)
    at.checkbox(key="batch_first").check().run()
    io = shapes_table(at)
    assert io["input"][0] == "(3, 5, 10)"
    assert io["input"][1].startswith("(batch, seq")
    assert io["h_n"][0] == "(2, 3, 20)"  # h_n is never batch-first


def shapes_table(at) -> dict[str, tuple[str, str]]:
    """The "Input and outputs" Markdown table: tensor -> (shape, axes)."""
    text = next(m.value for m in at.markdown if m.value.startswith("**Input and outputs**"))
    rows = [line.split("|")[1:4] for line in text.splitlines() if line.startswith("| `")]
    return {name.strip(" `"): (shape.strip(" `").replace("\u00a0", " "), axes.strip()) for name, shape, axes in rows}


def test_equation_panel_numbers_match_the_trace():
    at = start(timestep=4)
    at.number_input(key="unit").set_value(3).run()
    trace = reference_trace(AppConfig())
    latex = [e.value.strip("$\n") for e in at.get("latex")]
    assert len(latex) == 6
    f = trace.f[0, 0, 4, 0, 3].item()
    c = trace.c[0, 0, 4, 0, 3].item()
    assert latex[0].startswith("f_{t}[3]")
    assert latex[0].endswith(f"{f:.4f}")
    assert f"{c:.4f}" in latex[4]


def test_url_round_trip():
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update({"hidden_size": "6", "seq_len": "9", "bidirectional": "true", "timestep": "4",
                            "layer": "0", "num_layers": "oops"})
    at.run()
    assert_clean(at)
    assert at.number_input(key="hidden_size").value == 6
    assert at.checkbox(key="bidirectional").value
    assert explorer_focus(at)["t"] == 4
    assert any("num_layers='oops'" in rendered(w.value) for w in at.warning)
    at.number_input(key="hidden_size").set_value(7).run()
    assert at.query_params["hidden_size"] == ["7"] or at.query_params["hidden_size"] == "7"


def test_a_trace_too_big_for_the_server_is_refused_and_the_last_good_view_stays():
    at = start()
    good = step_z(at, "f")
    at.number_input(key="hidden_size").set_value(2048)
    at.number_input(key="num_layers").set_value(8)
    at.number_input(key="seq_len").set_value(100_000).run()
    assert_clean(at)
    assert at.error
    assert "GB of memory" in rendered(at.error[0].value)
    assert "lower seq_len" in rendered(at.error[0].value)
    np.testing.assert_array_equal(step_z(at, "f"), good)
