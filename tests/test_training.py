"""Background training jobs, snapshots along training, the units that track a task's hidden variable, and their
figures."""

from __future__ import annotations

import ctypes
import threading
from collections import OrderedDict
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch
from figure_data import decode_array

from lstm_viz import figures, tasks, training, training_figures, unit_ranking
from lstm_viz.guard import ResourceError
from lstm_viz.model import InstrumentedLSTM

pytestmark = pytest.mark.usefixtures("one_thread")

# Measured with seed 0 (the app's default): the memory task's storing unit (the best |r| of c with the stored value,
# r = −0.98) holds with a mean forget gate over t = 1..T−1 of 0.86 at init and 0.999 after training (226 steps, 16
# snapshots); Spearman's rank correlation of that mean with the snapshot's step is 0.98 (13 of 15 steps rise).
HELD_RISE = 0.1  # last snapshot's mean held f minus the first's, at least (measured 0.14)
HELD_TREND = 0.8  # Spearman's rho of the mean held f against the training step, at least (measured 0.98)
# Brackets, seed 0: the best unit's c follows the depth with |r| = 0.985 trained (seeds 1, 2: 0.986, 0.979); the
# untrained LSTM's best c reaches 0.61. A unit counts as counting depth above:
DEPTH_R = 0.9
QUICK_STEPS = 30  # jobs of the registry's tests train this many steps


@pytest.fixture
def registry(monkeypatch):
    """An empty job registry for the test, with training cut to QUICK_STEPS."""
    monkeypatch.setattr(training, "_jobs", OrderedDict())
    monkeypatch.setattr(training.tasks, "train", partial(tasks.train, steps=QUICK_STEPS))
    return training._jobs


@pytest.fixture
def gate(monkeypatch, registry):
    """Jobs of the sine task wait at each step until the test opens the gate (sets the event); others run."""
    opened = threading.Event()
    quick = training.tasks.train

    def held(name, *, on_step, **kwargs):
        def step(*args):
            assert name != "sine" or opened.wait(60), "the test never opened the gate"
            on_step(*args)
        return quick(name, on_step=step, **kwargs)

    monkeypatch.setattr(training.tasks, "train", held)
    yield opened
    opened.set()  # jobs still waiting end now


@pytest.fixture(scope="module")
def memory_job():
    job = training.start("memory", 0)
    assert job.wait(300)
    return job


def test_start_is_idempotent_and_the_job_is_found(registry):
    job = training.start("memory", 1)
    assert training.start("memory", 1) is job
    assert training.find("memory", 1) is job
    assert job.wait(60)
    assert job.error == ""
    assert training.start("memory", 1) is job  # finished: the same job, not trained again
    assert training.find("memory", 2) is None
    assert training.start("memory", 2) is not job
    assert job.result.losses == tasks.train("memory", seed=1, steps=QUICK_STEPS).losses  # seeded: what any would train
    progress = job.progress
    assert progress == (QUICK_STEPS, tasks.TASKS["memory"].max_steps, tuple(job.result.losses))


def test_the_servers_thread_counts_stay_as_they_were(registry):
    library = Path(torch.__file__).parent / "lib" / "libgomp.so.1"
    if not library.exists():
        pytest.skip("this torch has no bundled GNU OpenMP")
    gomp = ctypes.CDLL(str(library))
    before = torch.get_num_threads(), gomp.omp_get_max_threads()
    assert training.start("memory", 3).wait(60)  # its own thread runs on one OpenMP thread
    assert (torch.get_num_threads(), gomp.omp_get_max_threads()) == before


def test_unknown_task_is_refused(registry):
    with pytest.raises(ValueError, match="unknown task"):
        training.start("nope", 0)


def test_finished_jobs_are_bounded_and_running_ones_kept(registry, gate, monkeypatch):
    monkeypatch.setattr(training, "FINISHED_KEPT", 2)
    running = training.start("sine", 0)  # held by the gate
    finished = []
    for seed in range(1, 5):  # one at a time: MAX_RUNNING bounds those training at once
        finished.append(training.start("memory", seed))
        assert finished[-1].wait(60)
    assert training.start("memory", 4) is finished[-1]  # asked for again: the most recently used, and evicts
    assert [job for job in registry.values() if job.done] == finished[-2:]  # the least recently asked for went
    assert training.find("memory", 1) is None
    assert training.find("sine", 0) is running
    assert not running.done


def test_running_jobs_are_bounded(registry, gate):
    jobs = [training.start("sine", seed) for seed in range(training.MAX_RUNNING)]
    assert not any(job.done for job in jobs)
    with pytest.raises(ResourceError, match="training on this server already"):
        training.start("sine", training.MAX_RUNNING)
    assert training.start("sine", 0) is jobs[0]  # joining a running job is fine


def test_cancel_ends_the_job_with_a_message_and_start_trains_again(registry, gate):
    job = training.start("sine", 0)
    job.cancel()
    gate.set()
    assert job.wait(60)
    assert job.result is None
    assert "cancelled" in job.error
    again = training.start("sine", 0)
    assert again is not job
    assert again.wait(60)
    assert again.error == ""
    assert again.result.steps == QUICK_STEPS


def test_an_error_in_training_is_surfaced(registry, monkeypatch):
    def broken(name, **kwargs):
        raise RuntimeError("out of luck")

    monkeypatch.setattr(training.tasks, "train", broken)
    job = training.start("sine", 0)
    assert job.wait(60)
    assert job.result is None
    assert job.error == "Training failed: RuntimeError: out of luck"


def test_stop_and_on_step_leave_training_as_it_was():
    seen, steps = [], 5
    result = tasks.train("memory", seed=0, on_step=lambda step, lstm, head, loss: seen.append((step, loss)),
                         stop=lambda: len(seen) > steps)
    assert result.losses == tasks.train("memory", seed=0, steps=steps).losses  # the hook changes nothing
    assert [step for step, _ in seen] == list(range(steps + 1))
    assert np.isnan(seen[0][1])
    assert [loss for _, loss in seen[1:]] == result.losses


def same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


def test_snapshots_are_bounded_evenly_spaced_and_are_the_weights_of_their_step(memory_job):
    snapshots, result = memory_job.snapshots, memory_job.result
    steps = [s.step for s in snapshots]
    assert training.MAX_SNAPSHOTS // 2 <= len(snapshots) <= training.MAX_SNAPSHOTS  # thinned, never below half
    assert steps[0] == 0
    assert steps[-1] == result.steps
    assert len(set(np.diff(steps[:-1]))) == 1  # evenly spaced, the final weights besides
    assert same_weights(snapshots[0].lstm, tasks.new_lstm("memory", seed=0))
    assert same_weights(snapshots[-1].lstm, result.lstm)
    assert same_weights(snapshots[-1].head, result.head)
    middle = snapshots[len(snapshots) // 2]
    assert same_weights(middle.lstm, tasks.train("memory", seed=0, steps=middle.step).lstm)
    assert not any(p.requires_grad for s in snapshots for p in s.lstm.parameters())


def spearman(values: np.ndarray) -> float:
    """Spearman's rank correlation of values with their order."""
    ranks = np.argsort(np.argsort(values))
    return float(np.corrcoef(ranks, np.arange(len(values)))[0, 1])


def test_the_memory_tasks_held_forget_gate_rises_across_snapshots(memory_job):
    storing = next(s for s in unit_ranking.rank_units("memory", memory_job.result, seed=0) if s.quantity == "c")
    x = tasks.example("memory", seed=0).x  # the example the app's training scrub shows
    f = training.through_training(memory_job.snapshots, x)["f"][:, 1:, storing.unit]  # (snapshots, t = 1..T−1)
    held = f.mean(axis=1)
    assert held[-1] - held[0] > HELD_RISE, np.round(held, 3)
    assert spearman(held) > HELD_TREND, np.round(held, 3)


@pytest.fixture(scope="module")
def brackets_result():
    job = training.start("brackets", 0)
    assert job.wait(300)
    assert job.error == ""
    return job.result


def test_a_unit_of_the_bracket_task_counts_depth(brackets_result):
    ranking = unit_ranking.rank_units("brackets", brackets_result, seed=0)
    assert [abs(s.r) for s in ranking] == sorted((abs(s.r) for s in ranking), reverse=True)
    assert len(ranking) == 2 * tasks.TASKS["brackets"].hidden_size
    best_c = next(s for s in ranking if s.quantity == "c")
    assert abs(best_c.r) > DEPTH_R
    assert best_c.variable == "the bracket depth"
    # the r reported is numpy's Pearson r of that unit's c with the depth, over the same examples
    x, variables, _ = unit_ranking.hidden_variables("brackets", seed=0)
    c = InstrumentedLSTM.from_torch(brackets_result.lstm).trace(x).c[0, 0, :, :, best_c.unit]
    assert best_c.r == pytest.approx(np.corrcoef(c.numpy().ravel(), variables["the bracket depth"].ravel())[0, 1],
                                     abs=1e-9)


@pytest.mark.parametrize("name", tasks.TASKS)
def test_hidden_variables_leave_batches_as_they_were_and_are_what_they_say(name):
    x, y = tasks.make_batch(name, 8, torch.Generator().manual_seed(3))
    x2, y2, hidden = tasks.make_batch_with_hidden(name, 8, torch.Generator().manual_seed(3))
    assert torch.equal(x, x2)
    assert torch.equal(y, y2)
    assert hidden.shape == x.shape[:2]
    if name == "sine":  # x is the clean sine of the phase plus noise of std SINE_NOISE
        assert (x[..., 0] - torch.sin(hidden)).abs().max() < 6 * tasks.SINE_NOISE
    elif name == "memory":
        assert torch.equal(hidden, x[0, :, 0].expand_as(hidden))
    else:
        opened = {"(": 1, ")": -1}
        steps = torch.tensor([[opened.get(tasks.BRACKET_VOCAB[k], 0) for k in row] for row in x.argmax(-1).tolist()])
        assert torch.equal(hidden, steps.cumsum(0).float())


def test_correlations_of_a_unit_that_does_not_vary_are_zero():
    variable = np.arange(12.0).reshape(3, 4)
    values = np.stack([variable, -2 * variable, np.ones_like(variable)], axis=-1)  # (T, B, H = 3)
    np.testing.assert_allclose(unit_ranking.correlations(values, variable), [1.0, -1.0, 0.0])


def test_through_training_figure_carries_the_units_values_and_marks_the_snapshot():
    values = np.linspace(0, 1, 4 * 6).reshape(4, 6)
    spec = training_figures.through_training_spec(values, [0, 8, 16, 20], "f", 3, -1, list("ab()ab"))
    figures.figure(spec)  # valid plotly
    heatmap = spec["data"][0]
    np.testing.assert_allclose(decode_array(heatmap["z"]), values, rtol=1e-6)
    assert heatmap["y"] == ["0", "8", "16", "20"]
    assert heatmap["x"] == list(range(6))
    assert (heatmap["zmin"], heatmap["zmax"], heatmap["colorscale"]) == (0.0, 1.0, figures.GATE_SCALE)
    box = spec["layout"]["shapes"][0]
    assert (box["y0"], box["y1"]) == (2.5, 3.5)  # the final snapshot (index −1) is boxed
    assert spec["layout"]["xaxis"]["ticktext"] == ["a", "b", "(", ")", "a", "b"]
    c = training_figures.through_training_spec(-3 * values, [0, 8, 16, 20], "c", 3, 0)
    assert (c["data"][0]["zmin"], c["data"][0]["zmax"]) == (-3.0, 3.0)


def test_readout_figure_carries_target_and_prediction_of_each_example(memory_job):
    shown = training.readouts("memory", memory_job.snapshots[-1], range(2))
    spec = training_figures.readout_spec(shown)
    figures.figure(spec)
    assert [d["name"] for d in spec["data"]] == ["target", "prediction"] * 2
    for k, seed in enumerate(range(2)):
        seq, target = tasks.example_with_target("memory", seed)
        np.testing.assert_array_equal(decode_array(spec["data"][2 * k]["y"]), target[:, 0])
        np.testing.assert_allclose(decode_array(spec["data"][2 * k + 1]["y"]),
                                   memory_job.result.predict(seq.x)[:, 0, 0].numpy(), rtol=1e-6)
