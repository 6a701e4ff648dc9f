"""Toy tasks: each trains to its stated loss within its step cap, deterministically, and the gates show it."""

from __future__ import annotations

import pytest
import torch

from lstm_viz import tasks
from lstm_viz.inputs import SequenceInput
from lstm_viz.model import InstrumentedLSTM
from lstm_viz.tasks import TASKS

# The memory unit's forget gate, mean over the hold period, must stay above this once trained: f = 0.98 for
# 23 steps still keeps 0.98²³ ≈ 63% of the stored value (trained here: ≈ 0.999; at init: ≈ 0.91).
HOLD_FORGET = 0.98


@pytest.fixture(scope="module")
def trained():
    """train(name, seed=0), each task trained once for the whole module."""
    cache: dict[str, tasks.TrainResult] = {}

    def get(name: str) -> tasks.TrainResult:
        if name not in cache:
            cache[name] = tasks.train(name, seed=0)
        return cache[name]

    return get


@pytest.mark.parametrize("name", TASKS)
def test_reaches_threshold_within_cap(trained, name):
    task, result = TASKS[name], trained(name)
    assert result.steps <= task.max_steps
    assert len(result.losses) == result.steps
    assert result.final_loss < task.loss_threshold
    assert not result.lstm.training
    assert not result.head.training


@pytest.mark.parametrize("name", TASKS)
def test_same_seed_same_losses(trained, name):
    calls = []
    short = tasks.train(name, seed=0, steps=25, progress=lambda step, loss: calls.append(step))
    assert short.losses == trained(name).losses[:25]  # bit for bit: same data, same init
    assert calls == [10, 20, 25]  # every PROGRESS_EVERY steps and the last
    assert tasks.train(name, seed=1, steps=3).losses != short.losses[:3]


def test_step_cap_is_enforced():
    cap = TASKS["sine"].max_steps
    for steps in (cap + 1, 0):
        with pytest.raises(ValueError, match="steps must be between"):
            tasks.train("sine", steps=steps)
    assert tasks.train("sine", steps=5).steps == 5  # too few steps to reach the target: runs them all


def test_unknown_task():
    with pytest.raises(ValueError, match="unknown task"):
        tasks.train("nope")


def test_global_rng_untouched():
    before = torch.random.get_rng_state()
    tasks.train("memory", steps=2)
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.parametrize("name", TASKS)
def test_batch_and_example_shapes(name):
    task = TASKS[name]
    x, y = tasks.make_batch(task, 3, torch.Generator().manual_seed(0))
    assert x.shape == (task.seq_len, 3, task.input_size)
    assert y.shape == ((3, task.output_size) if task.last_step_only else (task.seq_len, 3, task.output_size))
    ex = tasks.example(name, seed=0)
    assert isinstance(ex, SequenceInput)
    assert ex.x.shape == (task.seq_len, 1, task.input_size)
    assert len(ex.labels) == task.seq_len
    assert torch.equal(ex.x, tasks.example(name, seed=0).x)


def test_example_labels():
    ex = tasks.example("brackets", seed=0)
    assert ex.vocab == tasks.BRACKET_VOCAB
    assert all(label in tasks.BRACKET_VOCAB for label in ex.labels)
    memory = tasks.example("memory").labels
    assert (memory[0], memory[-1]) == ("store", "recall")


@pytest.mark.parametrize("name", TASKS)
def test_trained_trace_matches_the_lstm(trained, name):
    result, x = trained(name), tasks.example(name, seed=2).x
    trace = tasks.trained_trace(result, name, seed=2)
    assert trace.f.shape == (1, 1, TASKS[name].seq_len, 1, result.lstm.hidden_size)
    torch.testing.assert_close(trace.output, result.lstm(x)[0].detach())


def hold_forget(lstm: torch.nn.LSTM, x: torch.Tensor) -> float:
    """Max over units of the forget gate's mean over t in [1, T-1) (the hold period) and the batch."""
    f = InstrumentedLSTM.from_torch(lstm).trace(x).f[0, 0]  # (T, B, H)
    return f[1:-1].mean(dim=(0, 1)).max().item()


def test_memory_forget_gate_holds(trained):
    x, _ = tasks.make_batch("memory", 32, torch.Generator().manual_seed(123))
    untrained = tasks.new_lstm("memory", seed=0)  # the same starting point as train(seed=0)
    assert hold_forget(trained("memory").lstm, x) > HOLD_FORGET
    assert hold_forget(untrained, x) < HOLD_FORGET - 0.03


def test_brackets_predicts_depth(trained):
    result = trained("brackets")
    for seed in range(8):
        ex = tasks.example("brackets", seed)
        # the true depth, from the characters themselves rather than from make_batch
        depth = torch.tensor([{"(": 1, ")": -1}.get(c, 0) for c in ex.labels]).cumsum(0)
        close = (result.predict(ex.x)[:, 0, 0] - depth).abs() < 0.5
        assert close.float().mean() >= 0.9, f"example {seed}: {''.join(ex.labels)}"
