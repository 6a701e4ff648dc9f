"""The guided lesson: every step is a full, valid state that a link reaches; what its texts state is true of the
view it sets up (computed here with lstm_viz and torch.nn.LSTM); the panel hides each answer until it is revealed,
moves between steps, and classroom links hide the settings."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch
from app_support import VIEW, assert_clean, link, start
from figure_data import chart, decode_array

from lstm_viz import analysis, lesson, shapes, tasks, training
from lstm_viz.equations import step_terms
from lstm_viz.lesson import STEP_KEYS, STEPS, Lesson, best_cell_unit, link_query, neighbour, step
from lstm_viz.model import InstrumentedLSTM
from lstm_viz.pipeline import make_model, make_sequence, model_input
from lstm_viz.unit_ranking import rank_units
from lstm_viz.view import TABS

pytestmark = pytest.mark.usefixtures("one_thread")
CONFIG, SOURCES, LESSON = "state.config", "state.sources", "state.lesson"  # lstm_viz.page_state's keys


def trace_of(s: lesson.Step, dtype: str = "float32"):
    """The trace the app shows for a random-init step, computed outside the app."""
    config = dataclasses.replace(s.config, dtype=dtype)
    model = make_model(config.lstm_config(), config.seed, "cpu", dtype)
    seq = make_sequence(config, s.sources.input_params(config.input_source))
    return model.trace(model_input(seq, model.config, "cpu", dtype))


def shape_of(rows, name: str) -> str:
    return next(row.shape_text for row in rows if row.name == name)


# --- the lesson as data ---------------------------------------------------------------------------------------------

def test_steps_have_unique_keys_and_about_eight_steps():
    assert len(set(STEP_KEYS)) == len(STEPS) == 8
    assert all(re.fullmatch(r"[a-z]+(-[a-z]+)*", key) for key in STEP_KEYS)  # short and safe in a URL


@pytest.mark.parametrize("key", STEP_KEYS)
def test_each_step_is_a_full_valid_state(key):
    s = step(key)
    for part in (s.config, s.sources, s.view):
        back, problems = type(part).from_query(part.to_query())  # within the limits and choices a link allows
        assert problems == []
        assert back == part
    s.config.lstm_config()  # nn.LSTM accepts the sizes
    assert s.view.tab in TABS
    assert s.title
    assert s.look
    assert s.question
    assert s.answer
    assert s.highlight
    assert s.correct is None or 0 <= s.correct < len(s.choices)
    if s.trained_task:
        assert s.sources.model_source == "toy task"
        assert s.sources.task == s.trained_task
    if s.sources.model_source != "toy task":
        view = s.view.fitted(s.config.seq_len, s.config.num_layers, 1 + s.config.bidirectional,
                             s.config.hidden_size, s.config.batch_size)
        assert view == s.view  # every index the step names exists in its run


def test_lesson_links_round_trip_and_stay_short():
    assert Lesson().to_query() == {}
    for key in STEP_KEYS:
        for classroom in (False, True):
            state = Lesson(key, classroom)
            assert Lesson.from_query(state.to_query()) == (state, [])
    assert link_query("brackets", classroom=True) == "?lesson=brackets&classroom=true"
    wrong, problems = Lesson.from_query({"lesson": "nope"})
    assert wrong == Lesson()
    assert len(problems) == 1
    assert "lesson" in problems[0]


def test_neighbours_walk_the_lesson_in_order():
    assert neighbour(STEP_KEYS[0], -1) is None
    assert neighbour(STEP_KEYS[-1], +1) is None
    assert [neighbour(key, +1) for key in STEP_KEYS[:-1]] == list(STEP_KEYS[1:])


# --- the facts the texts state, for the setups they describe -------------------------------------------------------

def test_the_shapes_step_states_the_shapes_of_its_setup():
    s = step("shapes")
    assert all(getattr(s.config, name) == value for name, value in shapes.CLASSIC_PRESET.items())
    rows = shapes.io_shapes(s.config.lstm_config(), s.config.seq_len, s.config.batch_size)
    stated = f"{shape_of(rows, 'output')} and {shape_of(rows, 'h_n')}"
    assert s.choices[s.correct] == stated
    assert f"**{shape_of(rows, 'output')}**" in s.answer
    assert f"**{shape_of(rows, 'h_n')}**" in s.answer
    assert f"({s.config.seq_len}, {s.config.batch_size}, {s.config.input_size})" in s.question
    output, (h_n, _) = torch.nn.LSTM(10, 20, 2)(torch.randn(5, 3, 10))  # the docs' example, as nn.LSTM runs it
    assert stated == f"{tuple(output.shape)} and {tuple(h_n.shape)}"


def test_at_the_first_step_the_forget_gate_has_nothing_to_forget():
    trace = trace_of(step("step-through"), "float64")
    c, i, g = (trace.get(q)[:, :, 0] for q in ("c", "i", "g"))  # every layer, t = 0
    np.testing.assert_allclose(c, i * g, rtol=0, atol=1e-12)
    assert trace.f[:, :, 0].min() > 0.05  # …although f itself is far from 0


def test_the_equations_step_h_stays_within_one_and_is_o_tanh_c():
    s = step("equations")
    trace = trace_of(s, "float64")
    assert trace.h.abs().max() < 1
    assert trace.c.abs().max() > trace.h.abs().max()  # c is not squashed; h is
    terms = step_terms(trace, s.view.layer, s.view.direction, s.view.timestep, s.view.unit)
    assert terms["h"] == pytest.approx(terms["o"] * np.tanh(terms["c"]), abs=1e-12)
    assert f"t = {s.view.timestep}" in s.look
    assert f"unit {s.view.unit}" in s.look


def memory_trace(lstm: torch.nn.LSTM, s: lesson.Step):
    return InstrumentedLSTM.from_torch(lstm).trace(tasks.example(s.sources.task, s.config.seed).x)


def test_before_training_the_memory_task_forgets():
    s = step("memory-untrained")
    task = tasks.TASKS[s.sources.task]
    assert f"{task.seq_len - 1} steps later" in s.look
    trace = memory_trace(tasks.new_lstm(task, seed=s.config.seed), s)
    assert trace.f.mean().item() == pytest.approx(torch.sigmoid(torch.tensor(2.0)).item(), abs=0.03)  # "≈ 0.88"
    assert 0.88 ** (task.seq_len - 1) == pytest.approx(0.05, abs=0.005)  # "0.88²⁴ ≈ 0.05"
    kept = analysis.retention(trace, 1, task.seq_len)
    assert kept.max() < 0.12  # "every unit keeps less than 12%"


def test_after_training_the_shown_units_forget_gate_holds_over_the_whole_delay():
    s = step("memory-trained")
    result = tasks.train(s.trained_task, seed=s.config.seed)
    best = best_cell_unit(rank_units(s.trained_task, result, s.config.seed))
    trace = memory_trace(result.lstm, s)
    f = trace.f[best.layer, best.direction, 1:, 0, best.unit]
    assert f.min().item() > 0.99  # "above 0.99 at every step of the hold"
    assert s.choices[s.correct] == "Sits at about 1"


def test_the_bracket_unit_steps_with_each_bracket_and_little_with_letters():
    s = step("brackets")
    result = tasks.train(s.trained_task, seed=s.config.seed)
    best = best_cell_unit(rank_units(s.trained_task, result, s.config.seed))
    seq = tasks.example(s.trained_task, s.config.seed)
    c = InstrumentedLSTM.from_torch(result.lstm).trace(seq.x).c[best.layer, best.direction, :, 0, best.unit]
    change = torch.diff(torch.cat([torch.zeros(1), c])).numpy()  # from c = 0 before the first step
    labels = np.array(seq.labels)
    opens, closes, letters = change[labels == "("], change[labels == ")"], change[np.isin(labels, ["a", "b"])]
    assert len(opens)
    assert len(closes)
    assert len(letters)
    sign = np.sign(opens[0])
    assert (np.sign(opens) == sign).all()  # one way, and back
    assert (np.sign(closes) == -sign).all()
    assert np.abs(letters).max() < 0.5 * np.abs(np.concatenate([opens, closes])).min()  # "far less"


def test_the_reverse_direction_at_t_has_read_t_to_the_end():
    s = step("bidirectional")
    assert s.view.direction == 1
    assert f"t = {s.view.timestep}" in s.question
    config = dataclasses.replace(s.config, dtype="float64")
    model = make_model(config.lstm_config(), config.seed, "cpu", "float64")
    x = model_input(make_sequence(config, {}), model.config, "cpu", "float64")
    t, T = s.view.timestep, config.seq_len
    base = model.trace(x)
    for changed in range(T):
        nudged = x.clone()
        nudged[changed] += 1.0
        h = model.trace(nudged).h
        reverse_moved = not torch.allclose(h[0, 1, t], base.h[0, 1, t], rtol=0, atol=1e-12)
        forward_moved = not torch.allclose(h[0, 0, t], base.h[0, 0, t], rtol=0, atol=1e-12)
        assert reverse_moved == (changed >= t), changed  # read x_t … x_{T−1}
        assert forward_moved == (changed <= t), changed  # read x_0 … x_t
    assert f"x_{t} … x_{T - 1}" in s.answer
    assert f"x_0 … x_{t}" in s.answer


def test_where_each_direction_ends():
    s = step("bidirectional-ends")
    cfg = s.config.lstm_config()
    rows = shapes.io_shapes(cfg, s.config.seq_len, s.config.batch_size)
    assert f"`output` is {shape_of(rows, 'output')}" in s.look
    assert f"`h_n` is {shape_of(rows, 'h_n')}" in s.look
    H = cfg.hidden_size
    lstm = torch.nn.LSTM(cfg.input_size, H, bidirectional=True)
    output, (h_n, _) = lstm(torch.randn(s.config.seq_len, s.config.batch_size, cfg.input_size))
    torch.testing.assert_close(output[-1, :, :H], h_n[0])  # forward ends at the last step
    torch.testing.assert_close(output[0, :, H:], h_n[1])  # reverse ends at t = 0
    assert not torch.allclose(output[-1, :, H:], h_n[1])
    assert f"output[-1, :, :{H}]" in s.answer
    assert f"output[0, :, {H}:]" in s.answer


# --- the panel in the app -----------------------------------------------------------------------------------------

def texts(at, kind: str) -> str:
    return "\n".join(element.value for element in getattr(at, kind))


@pytest.mark.app
@pytest.mark.parametrize("key", STEP_KEYS)
def test_a_link_reaches_each_steps_view_and_hides_the_answer_until_revealed(key):
    s = step(key)
    at = start(lesson=key, hidden_size=5, tab="export")  # the step's setup wins over the link's own settings
    assert_clean(at)
    assert at.session_state[CONFIG] == s.config
    assert at.session_state[SOURCES] == s.sources
    shown = at.session_state[VIEW]
    if s.best_unit and shown != s.view:  # training finished already (it is shared): its best unit is open
        best = best_cell_unit(training.find(s.trained_task, s.config.seed).ranking(s.config.seed))
        assert shown == dataclasses.replace(s.view, layer=best.layer, direction=best.direction, unit=best.unit)
    else:
        assert shown == s.view
    markdown = texts(at, "markdown")
    assert f"step {STEP_KEYS.index(key) + 1} of {len(STEPS)}: {s.title}" in markdown
    assert s.question in markdown
    assert s.answer not in markdown + texts(at, "success")
    assert link(at)["lesson"] == key
    at.button(key="lesson_reveal").click().run()
    assert_clean(at)
    assert s.answer in texts(at, "success")
    assert not [b for b in at.button if b.key == "lesson_reveal"]
    if s.trained_task:  # entering the step started its training: let it end (a daemon thread in torch at exit aborts)
        assert training.find(s.trained_task, s.config.seed).wait(120)


@pytest.mark.app
def test_next_and_back_apply_the_neighbouring_steps_setup():
    at = start(lesson="shapes")
    at.button(key="lesson_reveal").click().run()
    at.button(key="lesson_next").click().run()
    assert_clean(at)
    following = step("step-through")
    assert (at.session_state[CONFIG], at.session_state[VIEW]) == (following.config, following.view)
    assert link(at)["lesson"] == "step-through"
    assert following.answer not in texts(at, "success")  # each step's answer is hidden until its own reveal
    at.button(key="lesson_next").click().run()
    assert at.session_state[CONFIG] == step("equations").config
    at.button(key="lesson_back").click().run()
    at.button(key="lesson_back").click().run()
    assert_clean(at)
    assert at.session_state[VIEW] == step("shapes").view
    assert step("shapes").answer in texts(at, "success")  # revealed before: stays revealed
    assert at.button(key="lesson_back").disabled
    at.button(key="lesson_leave").click().run()
    assert_clean(at)
    assert "lesson" not in link(at)
    assert at.session_state[LESSON] == Lesson()
    assert at.number_input(key="hidden_size").value == 20  # the settings stay as the step left them


@pytest.mark.app
def test_classroom_hides_the_settings_and_the_downloads_but_not_the_lesson():
    at = start(lesson="equations", classroom=True)
    assert_clean(at)
    assert len(at.sidebar.children) == 0  # no Configure panel: no sidebar at all
    assert not [w for w in at.number_input if w.key == "hidden_size"]
    hidden = "\n".join(e.proto.body for e in at.get("html"))
    assert f"[data-key='{list(TABS).index('export')}'] {{ display: none; }}" in hidden  # the Export tab
    assert step("equations").highlight in hidden
    assert {b.key for b in at.button} >= {"lesson_reveal", "lesson_next", "lesson_back", "lesson_leave"}
    assert link(at)["classroom"] == "true"
    at.button(key="lesson_next").click().run()
    assert link(at)["classroom"] == "true"  # a class stays a class from step to step


@pytest.mark.app
def test_the_plain_app_offers_the_lesson_and_starts_it_at_its_first_step():
    at = start(hidden_size=5)
    assert_clean(at)
    assert "Lesson ·" not in texts(at, "markdown")
    at.sidebar.button(key="lesson_start").click().run()
    assert_clean(at)
    assert at.session_state[CONFIG] == STEPS[0].config
    assert link(at)["lesson"] == STEP_KEYS[0]


@pytest.mark.app
def test_a_trained_step_trains_and_then_opens_the_unit_that_tracks_the_task():
    s = step("brackets")
    at = start(lesson=s.key)
    job = training.find(s.trained_task, s.config.seed)
    assert job is not None  # entering the step started its training
    assert job.wait(120)
    assert not job.error
    at.run()
    assert_clean(at)
    best = best_cell_unit(job.ranking(s.config.seed))
    assert at.session_state[VIEW].unit == best.unit
    assert f"Unit {best.unit}'s cell state c follows the bracket depth with r = {best.r:+.2f}" in texts(at, "caption")
    at.session_state[VIEW] = dataclasses.replace(at.session_state[VIEW], unit=(best.unit + 1) % 16)
    at.run()
    assert at.session_state[VIEW].unit == (best.unit + 1) % 16  # opened once: the user may look elsewhere



@pytest.mark.app
def test_once_trained_the_untrained_step_still_shows_the_weights_training_starts_from():
    at = start(lesson="memory-trained")
    job = training.find("memory", step("memory-trained").config.seed)
    assert job.wait(120)
    assert not job.error
    at.run()
    at.button(key="lesson_back").click().run()
    assert_clean(at)
    s = step("memory-untrained")
    f = next(line for line in chart(at, "unit_lines")["data"] if line["name"] == "f")
    want = memory_trace(tasks.new_lstm(s.sources.task, seed=s.config.seed), s).f[0, 0, :, 0, s.view.unit]
    np.testing.assert_allclose(decode_array(f["y"]), want.numpy(), rtol=0, atol=1e-6)
