"""Seeded weights: the numbers torch.manual_seed(seed) would give, the global RNG untouched, and the same
whatever other threads (the app's other sessions) do at the same time."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
import torch
from torch import nn

from lstm_viz import seeding, tasks
from lstm_viz.config import LSTMConfig
from lstm_viz.pipeline import DTYPES, make_model

CONFIGS = [(LSTMConfig(3, 5, 2, bidirectional=True, proj_size=2), "float32"), (LSTMConfig(4, 8), "float64"),
           (LSTMConfig(1, 16, bias=False), "float32")]


def same_weights(a: nn.Module, b: nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.mark.parametrize("config,dtype", CONFIGS)
def test_a_seed_gives_what_manual_seed_then_nn_lstm_gives(config, dtype):
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(11)
        reference = nn.LSTM(**config.to_dict(), dtype=DTYPES[dtype])
    assert same_weights(make_model(config, 11, "cpu", dtype), reference)


def test_the_task_head_too():
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(5)
        reference = nn.Linear(16, 3)
    seeding.lstm(nn.LSTM, gen := seeding.generator(0), input_size=1, hidden_size=16)  # whatever came before
    assert not same_weights(seeding.linear(16, 3, gen), reference)
    assert same_weights(seeding.linear(16, 3, seeding.generator(5)), reference)


def test_the_global_rng_is_neither_read_nor_changed():
    state = torch.get_rng_state()
    make_model(LSTMConfig(3, 5), 1, "cpu", "float32")
    tasks.new_lstm("memory", seed=2)
    tasks.train("sine", steps=3, seed=3)
    assert torch.equal(torch.get_rng_state(), state)


def test_sessions_in_parallel_threads_get_their_own_weights():
    """The app's sessions are threads: each must get its seed's weights while the others draw theirs."""
    jobs = [(LSTMConfig(2 + k % 3, 4 + k), k) for k in range(16)]
    alone = {seed: make_model(config, seed, "cpu", "float32") for config, seed in jobs}
    trained_alone = tasks.train("memory", steps=5, seed=1).losses

    def session(job):
        config, seed = job
        return seed, [make_model(config, seed, "cpu", "float32") for _ in range(20)]

    with ThreadPoolExecutor(max_workers=16) as pool:
        training = pool.submit(tasks.train, "memory", steps=5, seed=1)
        results = list(pool.map(session, jobs))
    wrong = [seed for seed, models in results for model in models if not same_weights(model, alone[seed])]
    assert not wrong, f"{len(wrong)} of {20 * len(jobs)} models drawn in parallel differ (seeds {sorted(set(wrong))})"
    assert training.result().losses == trained_alone
