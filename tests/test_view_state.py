"""One view state: the app keeps the user's place across tabs and reruns, shows the sizes in use, and a link
reproduces what it shows. Each test is a regression test for a way the page used to lose or misstate its state."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from app_support import APP, VIEW, assert_clean, link, open_tab, rendered, report, start
from figure_data import chart, decode_array, explorer_focus, explorer_html, explorer_window, step_z
from plotly.utils import PlotlyJSONEncoder
from streamlit.runtime.media_file_manager import MediaFileManager
from streamlit.testing.v1 import AppTest

from lstm_viz import analysis, export, training
from lstm_viz.figures import DISPLAY_ORDER
from lstm_viz.model import InstrumentedLSTM
from lstm_viz.parity import TOLERANCE
from lstm_viz.pipeline import AppConfig, make_model, make_sequence, model_input

pytestmark = pytest.mark.app
DEEP = dict(num_layers=2, bidirectional=True, hidden_size=6)


def trace_for(config: AppConfig, params: dict | None = None):
    """The trace lstm_viz computes for the app's settings, outside the app."""
    model = make_model(config.lstm_config(), config.seed, "cpu", config.dtype)
    return model.trace(model_input(make_sequence(config, params or {}), model.config, "cpu", config.dtype))


def saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def set_view(at: AppTest, t: int, layer: int, direction: int, unit: int) -> AppTest:
    """Choose a view as a user would: t by stepping in the explorer (its report), the rest through widgets."""
    report(at, t=t)
    at.selectbox(key="layer").set_value(layer).run()
    at.selectbox(key="direction").set_value(direction).run()
    at.number_input(key="unit").set_value(unit).run()
    assert_clean(at)
    return at


def test_a_tab_round_trip_keeps_t_layer_direction_and_unit():
    at = set_view(start(**DEEP), t=4, layer=1, direction=1, unit=3)
    open_tab(at, "shapes")
    assert not at.get("bidi_component")  # the step view was not drawn in that run
    assert "layer" not in [s.key for s in at.selectbox]
    open_tab(at, "step")
    assert_clean(at)
    assert explorer_focus(at)["t"] == 4
    assert at.selectbox(key="layer").value == 1
    assert at.selectbox(key="direction").value == 1
    assert at.number_input(key="unit").value == 3
    trace = trace_for(AppConfig(**DEEP))
    for q in DISPLAY_ORDER:
        np.testing.assert_allclose(step_z(at, q), trace.get(q)[1, 1, 4].numpy(), rtol=0, atol=1e-6)
    assert {k: link(at)[k] for k in ("timestep", "layer", "direction", "unit")} == \
        {"timestep": "4", "layer": "1", "direction": "1", "unit": "3"}
    assert "tab" not in link(at)  # the default tab: links stay short


def test_the_memory_ledger_follows_the_views_layer_and_direction():
    at = set_view(start(**DEEP), t=2, layer=1, direction=1, unit=3)
    open_tab(at, "saturation")
    assert_clean(at)
    ledger = chart(at, "ledger")
    assert "layer 1 · reverse" in ledger["layout"]["title"]["text"]
    want = analysis.memory_ledger(trace_for(AppConfig(**DEEP)), 1, 1, 0)
    np.testing.assert_allclose(decode_array(ledger["data"][0]["y"]), want["kept"][:, 3], rtol=0, atol=1e-6)


def test_an_upload_shows_the_weights_sizes_on_the_same_run():
    lstm = torch.nn.LSTM(3, 16, num_layers=2)
    at = start(model_source="uploaded weights")
    at.file_uploader(key="weights_upload").upload("model.pt", saved(lstm.state_dict())).run()
    assert_clean(at)
    for key, value in (("input_size", 3), ("hidden_size", 16), ("num_layers", 2)):
        widget = at.number_input(key=key)
        assert widget.value == value, (key, widget.value)
        assert widget.disabled, (key, widget.value)
        assert "uploaded weights" in widget.help
    assert link(at)["hidden_size"] == "16"
    assert link(at)["weights"] == "model.pt"


def test_an_upload_of_nine_layers_shows_nine():
    at = start(model_source="uploaded weights")
    at.file_uploader(key="weights_upload").upload("deep.pt", saved(torch.nn.LSTM(2, 3, num_layers=9).state_dict()))
    at.run()
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    assert at.number_input(key="num_layers").value == 9
    assert at.selectbox(key="layer").options == [str(k) for k in range(9)]


@pytest.mark.parametrize("source,put_in,sizes", [
    ("typed", lambda at: at.text_area(key="typed_text").set_value("1 2 3\n4 5 6\n\n7 8 9\n1 1 1"),
     {"input_size": 3, "seq_len": 2, "batch_size": 2}),
    ("text", lambda at: at.text_input(key="text_input").set_value("abcab"),
     {"input_size": 3, "seq_len": 5, "batch_size": 1}),
    ("file", lambda at: at.file_uploader(key="upload").upload("x.csv", b"1,2\n3,4\n5,6\n7,8\n9,0\n1,1\n2,2\n"),
     {"input_size": 2, "seq_len": 7, "batch_size": 1}),
])
def test_data_sized_inputs_show_the_datas_sizes(source, put_in, sizes):
    at = start(input_source=source)
    put_in(at)
    at.run()
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    for key, value in sizes.items():
        widget = at.number_input(key=key)
        assert widget.value == value, (key, widget.value)
        assert widget.disabled, (key, widget.value)
        assert f"set by the {source} input" in widget.help
    assert step_z(at, "f").shape[0] == sizes["batch_size"]


def test_toy_task_fixes_seq_len_and_batch_too():
    at = start(model_source="toy task", task="memory")
    assert_clean(at)
    for key in ("seq_len", "batch_size", "input_size", "hidden_size"):
        assert at.number_input(key=key).disabled, key
    assert at.number_input(key="batch_size").value == 1


def deferred_downloads(monkeypatch) -> dict[str, object]:
    """Record each download button's deferred callable by file name (they run only when clicked)."""
    recorded, original = {}, MediaFileManager.add_deferred

    def record(self, data_callable, mimetype, coordinates, file_name=None, **kwargs):
        recorded[file_name] = data_callable
        return original(self, data_callable, mimetype, coordinates, file_name, **kwargs)

    monkeypatch.setattr(MediaFileManager, "add_deferred", record)
    monkeypatch.setattr(export, "figure_html", lambda spec: json.dumps(spec, cls=PlotlyJSONEncoder))  # to decode
    return recorded


def test_exported_figures_follow_the_view(monkeypatch):
    downloads = deferred_downloads(monkeypatch)
    at = set_view(start(**DEEP, batch_size=3), t=5, layer=1, direction=1, unit=2)
    at.number_input(key="batch_index").set_value(2).run()
    open_tab(at, "export")
    assert_clean(at)
    trace = trace_for(AppConfig(**DEEP, batch_size=3))
    step = json.loads(downloads["step_t5_layer1_reverse.html"]())
    assert step["layout"]["title"]["text"] == "step t=5 · layer 1 · reverse"
    for k, q in enumerate(DISPLAY_ORDER):
        np.testing.assert_allclose(decode_array(step["data"][k]["z"]), trace.get(q)[1, 1, 5].numpy(), atol=1e-6)
    over_time = json.loads(downloads["over_time_t5_layer1_reverse.html"]())
    assert over_time["layout"]["title"]["text"].startswith("over time · layer 1 · reverse · batch 2")
    np.testing.assert_allclose(decode_array(over_time["data"][0]["z"]), trace.f[1, 1, :, 2].T.numpy(), atol=1e-6)
    unit = json.loads(downloads["unit2_batch2.html"]())
    assert unit["layout"]["shapes"][0]["x0"] == 5  # step t marked
    explorer = downloads["explorer_layer1_reverse.html"]()  # the offline explorer of the same layer and view
    header, arrays, focus = explorer_html(explorer)
    assert (header["layer"], header["direction"]) == (1, 1)
    np.testing.assert_allclose(arrays["f"], trace.f[1, 1].numpy(), atol=1e-6)
    assert (focus["t"], focus["unit"], focus["batch"]) == (5, 2, 2)


def test_reverse_direction_equations_use_the_state_from_t_plus_1():
    at = start(bidirectional=True, direction=1, timestep=3, unit=2, dtype="float64")
    assert_clean(at)
    latex = [e.value.strip("$\n") for e in at.get("latex")]
    assert latex[0].startswith(r"\text{reverse direction")
    assert all("t-1" not in line for line in latex)
    assert any("h_{t+1}" in line for line in latex)
    assert any("c_{t+1}" in line for line in latex)
    trace = trace_for(AppConfig(bidirectional=True, dtype="float64"))
    c_line = next(line for line in latex if line.startswith("c_t[2]"))
    c_next = trace.c[0, 1, 4, 0, 2].item()  # the reverse step at t=3 starts from c at t=4
    assert f"{c_next:.4f}".lstrip("-") in c_line
    assert any("reverse" in c.value for c in at.caption)
    assert explorer_window(at)[0]["direction_name"] == "reverse"


def test_a_link_made_on_uploaded_weights_says_so_instead_of_showing_other_weights():
    lstm = torch.nn.LSTM(3, 16, num_layers=2)
    at = start(model_source="uploaded weights")
    at.file_uploader(key="weights_upload").upload("model.pt", saved(lstm.state_dict())).run()
    reopened = AppTest.from_file(APP, default_timeout=180)
    reopened.query_params.update(link(at))
    reopened.run()
    assert_clean(reopened)
    words = " ".join(rendered(w.value) for w in reopened.warning)
    assert "model.pt" in words
    assert "nn.LSTM(3, 16, num_layers=2)" in words
    assert "upload" in words
    assert not reopened.get("bidi_component")  # no heatmaps of random weights
    assert not any("parity" in m.value for m in reopened.markdown)
    assert reopened.number_input(key="hidden_size").value == 16  # the sizes the link names


def test_a_link_reopens_the_same_view_and_data():
    at = start(**DEEP, input_source="signal", signal_kind="square", seed=7, dtype="float64")
    at = set_view(at, t=5, layer=1, direction=1, unit=3)
    at.number_input(key="signal_period").set_value(6.0).run()
    open_tab(at, "unit")
    assert link(at)["tab"] == "unit"
    assert link(at)["signal_period"] == "6.0"
    reopened = AppTest.from_file(APP, default_timeout=180)
    reopened.query_params.update(link(at))
    reopened.run()
    assert_clean(reopened)
    assert reopened.session_state[VIEW] == at.session_state[VIEW]
    assert chart(reopened, "unit_lines") == chart(at, "unit_lines")


def test_the_parity_badge_turns_red_when_the_recorded_gates_are_corrupted(monkeypatch):
    honest = InstrumentedLSTM.trace

    def corrupted(self, *args, **kwargs):
        trace = honest(self, *args, **kwargs)
        trace.f[0, 0, 3, 0, 1] += 0.01  # one forget gate, one step, one unit: what a heatmap would show
        return trace

    monkeypatch.setattr(InstrumentedLSTM, "trace", corrupted)
    at = start()
    assert_clean(at)
    badge = next(m.value for m in at.markdown if "parity: max |Δ|" in m.value)
    assert "red" in badge
    assert f"> {TOLERANCE[torch.float32]:.0e}" in badge
    summary = next(c.value for c in at.caption if "reference cell" in c.value)
    assert "differ from the reference cell by up to 1.0e-02" in summary, summary
    assert "f at layer 0, direction 0, step 3, batch 0, unit 1" in summary, summary


def test_a_link_made_after_training_trains_again_and_reproduces_the_view():
    at = start(model_source="toy task", task="memory", seed=3)
    at.button(key="train_task").click().run()
    assert training.find("memory", 3).wait(300)  # training runs in the background: wait, then see the page
    report(at, t=7)
    assert_clean(at)
    assert link(at)["trained"] == "true"
    training._jobs.clear()  # as on another server: the link's training must run again
    reopened = AppTest.from_file(APP, default_timeout=180)
    reopened.query_params.update(link(at))
    reopened.run()
    assert_clean(reopened)
    assert any("being trained again" in rendered(i.value) for i in reopened.info)
    assert not reopened.get("bidi_component")  # not the untrained weights in their place
    assert training.find("memory", 3).wait(300)
    reopened.run()
    assert_clean(reopened)
    for q in DISPLAY_ORDER:  # training is seeded: the same weights, so the same gates at the same step
        np.testing.assert_array_equal(step_z(reopened, q), step_z(at, q))


def test_a_problem_quoting_typed_markdown_shows_it_literally():
    at = start(input_source="typed")
    at.text_area(key="typed_text").set_value("1, [sign-in](http://evil.example)").run()
    assert_clean(at)
    message = at.error[0].value
    assert "[sign-in](http://evi" in rendered(message)  # the user sees what they typed…
    assert "](" not in message  # …and Markdown gets no link to render
