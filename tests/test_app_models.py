"""The app with real models: uploaded weights, a toy task trained in the app, drill-down, saturation, export."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from app_support import assert_clean, open_tab, rendered, report, start
from figure_data import chart, explorer_window, step_z

from lstm_viz import tasks, training
from lstm_viz.tasks import TASKS

pytestmark = pytest.mark.app


def saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def test_uploaded_weights_are_traced_as_nn_lstm_runs_them():
    torch.manual_seed(3)
    lstm = torch.nn.LSTM(3, 7, num_layers=2, bidirectional=True)
    at = start(model_source="uploaded weights")
    assert_clean(at)
    assert any("Upload a state_dict" in i.value for i in at.info)
    at.file_uploader(key="weights_upload").upload("model.pt", saved({"encoder.rnn." + k: v for k, v in
                                                                      lstm.state_dict().items()}))
    at.run()
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    assert any("nn.LSTM(3, 7, num_layers=2, bidirectional=True)" in c.value for c in at.caption)
    # the sizes come from the weights; the random input adapts to input_size 3
    assert step_z(at, "f").shape == (2, 7)
    badge = next(m.value for m in at.markdown if "parity: max |Δ|" in m.value)
    assert "green" in badge


@pytest.mark.parametrize("payload,fragment", [
    (b"", "empty"),
    (b"not a torch file at all", "torch"),
    (saved(torch.nn.Linear(3, 4).state_dict()), "no LSTM"),
])
def test_bad_weights_say_why(payload, fragment):
    at = start(model_source="uploaded weights")
    at.file_uploader(key="weights_upload").upload("model.pt", payload)
    at.run()
    assert_clean(at)
    assert at.error
    assert fragment.lower() in rendered(at.error[0].value).lower()


class Boom:
    def __reduce__(self):
        return (Path.touch, (Path("/tmp/lstm_viz_app_pickle_ran"),))


def test_a_pickle_that_runs_code_is_refused_and_runs_nothing():
    marker = Path("/tmp/lstm_viz_app_pickle_ran")
    marker.unlink(missing_ok=True)
    at = start(model_source="uploaded weights")
    at.file_uploader(key="weights_upload").upload("model.pt", pickle.dumps({"weight_ih_l0": Boom()}))
    at.run()
    assert_clean(at)
    assert at.error
    assert not marker.exists()


def test_toy_task_trains_in_the_app_and_its_gates_are_traced():
    at = start(model_source="toy task", task="memory")
    assert_clean(at)
    assert at.number_input(key="hidden_size").value == TASKS["memory"].hidden_size  # the sidebar shows its sizes
    assert at.number_input(key="hidden_size").disabled
    assert any("Untrained" in i.value for i in at.info)
    at.button(key="train_task").click().run()
    assert training.find("memory", 0).wait(300)  # training runs in the background: wait, then see the page
    at.run()
    assert_clean(at)
    caption = next(c.value for c in at.caption if c.value.startswith("Trained in"))
    assert "reached the target" in caption
    losses = chart(at, "loss_curve")["data"][0]["y"]
    assert losses[-1] < losses[0]
    assert step_z(at, "f").shape == (1, TASKS["memory"].hidden_size)
    report(at, t=5)  # stepping through the trained trace
    assert_clean(at)
    header, arrays = explorer_window(at)
    result = next(iter(at.session_state["state.session"].trained.values())).result
    x, target = tasks.example_with_target("memory", seed=0)
    np.testing.assert_array_equal(arrays["target"], target)  # the task's target: only at the last step
    assert np.isnan(arrays["target"][:-1]).all()
    assert not np.isnan(arrays["target"][-1]).any()
    np.testing.assert_allclose(arrays["prediction"], result.predict(x.x)[..., 0].numpy(), rtol=0, atol=1e-5)


def test_drill_down_saturation_and_export_tabs():
    at = start(hidden_size=6, num_layers=2, bidirectional=True, unit=4, tab="unit")
    assert_clean(at)
    assert len(at.get("plotly_chart")) == 1  # lazy tabs: only the open one ran
    lines = chart(at, "unit_lines")
    assert {d["name"] for d in lines["data"]} == set("fiogch")  # 2 layers × 2 dirs
    assert len(lines["data"]) == 6 * 4
    open_tab(at, "saturation")
    saturation = chart(at, "saturation")
    assert len(saturation["data"]) == 3 * 4  # three gates, each a scatter per layer-direction
    xs = np.concatenate([np.asarray(d["x"]) for d in saturation["data"]])
    assert ((xs >= 0) & (xs <= 1)).all()
    at.slider(key="sat_high").set_value(0.6).run()
    assert_clean(at)
    ledger = chart(at, "ledger")
    assert len(ledger["data"]) == 4
    open_tab(at, "export")
    assert_clean(at)
    labels = {b.label for b in at.get("download_button")}
    assert {"Trace (.npz)", "Trace (long CSV)", "Weights (.pt)"} <= labels
