"""The app while a toy task trains in the background, and the training-step slider afterwards (AppTest)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import partial

import numpy as np
import pytest
from app_support import assert_clean, link, start
from figure_data import chart, explorer_focus, explorer_window, step_z

from lstm_viz import tasks, training, unit_ranking
from lstm_viz.model import InstrumentedLSTM

STEPS = 60  # enough for snapshots to be thinned; the tests are about the page, not about reaching the target


@pytest.fixture
def gate(monkeypatch):
    """Training (in a fresh registry) that waits at every step until the test opens the gate (sets the event):
    the test decides when training ends, not the machine's speed."""
    monkeypatch.setattr(training, "_jobs", OrderedDict())
    opened = threading.Event()
    quick = partial(tasks.train, steps=STEPS)

    def held(name, *, on_step, **kwargs):
        def step(*args):
            assert opened.wait(120), "the test never opened the gate"
            on_step(*args)
        return quick(name, on_step=step, **kwargs)

    monkeypatch.setattr(training.tasks, "train", held)
    yield opened
    opened.set()


def trained_memory(seed: int, gate: threading.Event):
    """The app on the memory task after pressing Train and letting training finish."""
    at = start(model_source="toy task", task="memory", seed=seed)
    at.button(key="train_task").click().run()
    gate.set()
    assert training.find("memory", seed).wait(120)
    return at.run()


def test_the_page_answers_while_training_runs_then_shows_the_trained_model(gate):
    at = start(model_source="toy task", task="memory", seed=5)
    untrained_f = step_z(at, "f")
    at.button(key="train_task").click().run()
    assert_clean(at)
    job = training.find("memory", 5)
    assert job is not None  # the script came back while training runs
    assert not job.done
    assert at.get("progress")  # the polling fragment's bar and Cancel
    assert at.button(key="cancel_training")
    assert any("Training in the background" in i.value for i in at.info)
    at.number_input(key="unit").set_value(3).run()  # another widget, still during training
    assert_clean(at)
    assert not job.done
    assert explorer_focus(at)["unit"] == 3  # it took effect without waiting for training
    np.testing.assert_array_equal(step_z(at, "f"), untrained_f)  # meanwhile: the untrained weights
    gate.set()
    assert job.wait(120)
    at.run()
    assert_clean(at)
    assert any(c.value.startswith(f"Trained in {STEPS} steps") for c in at.caption)
    assert not np.array_equal(step_z(at, "f"), untrained_f)
    header, arrays = explorer_window(at)
    seq, _ = tasks.example_with_target("memory", 5)
    np.testing.assert_allclose(arrays["prediction"], job.result.predict(seq.x)[..., 0].numpy(), rtol=0, atol=1e-5)
    assert explorer_focus(at)["unit"] == 3


def test_the_training_step_slider_picks_the_snapshot_every_view_shows(gate):
    at = trained_memory(6, gate)
    assert_clean(at)
    snapshots = training.find("memory", 6).snapshots
    slider = at.select_slider(key="snapshot")
    assert slider.value == len(snapshots) - 1  # the final weights by default
    assert "snapshot" not in link(at)
    trained_f = step_z(at, "f")
    untrained = tasks.new_lstm("memory", seed=6)

    at.select_slider(key="snapshot").set_value(0).run()
    assert_clean(at)
    x = tasks.example("memory", seed=6).x
    np.testing.assert_allclose(step_z(at, "f"), snapshots[0].model.trace(x).f[0, 0, 0].numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(step_z(at, "f"), InstrumentedLSTM.from_torch(untrained).trace(x).f[0, 0, 0].numpy(),
                               rtol=0, atol=1e-6)  # step 0 is the LSTM as training started
    assert link(at)["snapshot"] == "0"  # a link carries it
    box = chart(at, "through_training")["layout"]["shapes"][0]
    assert (box["y0"], box["y1"]) == (-0.5, 0.5)  # the heatmap marks the chosen snapshot's row

    at.select_slider(key="snapshot").set_value(len(snapshots) - 1).run()
    np.testing.assert_array_equal(step_z(at, "f"), trained_f)
    assert "snapshot" not in link(at)


def test_the_best_unit_opens_in_the_explorer(gate):
    at = trained_memory(7, gate)
    best = unit_ranking.rank_units("memory", training.find("memory", 7).result, seed=7)[0]
    at.button(key="open_best_unit").click().run()
    assert_clean(at)
    assert explorer_focus(at)["unit"] == best.unit
    assert at.session_state["state.view"].tab == "step"


def test_cancel_stops_training_and_says_so(gate):
    at = start(model_source="toy task", task="memory", seed=8)
    at.button(key="train_task").click().run()
    job = training.find("memory", 8)
    at.button(key="cancel_training").click().run()
    gate.set()
    assert job.wait(120)
    at.run()
    assert_clean(at)
    assert job.result is None
    assert any("cancelled" in w.value for w in at.warning)
    assert not at.get("select_slider")  # no training to scrub: the untrained weights are shown
