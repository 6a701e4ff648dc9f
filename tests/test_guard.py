"""The resource guard: its estimates are what traces really take, and it refuses what would not fit."""

from __future__ import annotations

import gc

import pytest
import torch

from lstm_viz import InstrumentedLSTM, LSTMConfig
from lstm_viz.guard import ResourceError, check_trace, trace_bytes


@pytest.mark.parametrize("option", [dict(), dict(num_layers=3, bidirectional=True), dict(proj_size=3, num_layers=2)])
def test_estimate_is_the_trace_tensors(option):
    cfg = LSTMConfig(5, 7, **option)
    model = InstrumentedLSTM(**cfg.to_dict())
    tr = model.trace(torch.randn(11, 3, 5))
    values = 4 * tr.f.numel() + tr.c.numel() + tr.h.numel() + sum(x.numel() for x in tr.layer_inputs)  # 4 gates
    held = values * tr.f.element_size()
    held += 2 * sum(p.numel() * p.element_size() for p in model.parameters())  # the model's and the trace's copy
    assert trace_bytes(cfg, 11, 3) == held


def test_small_traces_pass_and_huge_ones_are_refused_with_advice(monkeypatch):
    check_trace(LSTMConfig(4, 8), 12, 2)  # the app's default: no complaint
    with pytest.raises(ResourceError, match=r"needs about .* GB of memory.*seq_len ≤ [\d,]+ would fit.*lower seq_len"):
        check_trace(LSTMConfig(4, 2048, num_layers=8), 100_000, 1)
    monkeypatch.setenv("LSTM_VIZ_MAX_TRACE_S", "1")
    with pytest.raises(ResourceError, match=r"would take about [\d,]+ s, the limit here is 1 s"):
        check_trace(LSTMConfig(256, 1024, num_layers=2), 2_000, 64)
    monkeypatch.setenv("LSTM_VIZ_MAX_TRACE_GB", "1000")
    monkeypatch.setenv("LSTM_VIZ_MAX_TRACE_S", "1e9")
    check_trace(LSTMConfig(4, 2048, num_layers=8), 100_000, 1)  # a bigger server may allow it


def test_the_app_pipeline_refuses_before_building_or_running_anything(monkeypatch):
    from lstm_viz import pipeline

    def never(*args):
        raise AssertionError("a model was built for a trace the guard should refuse")

    monkeypatch.setattr(pipeline, "traced_run", never)
    config = pipeline.AppConfig(hidden_size=2048, num_layers=8, seq_len=100_000, batch_size=1)
    seq = pipeline.make_sequence(config, {})  # the input itself is small: 100,000 × 1 × 4
    with pytest.raises(ResourceError, match="lower seq_len"):
        pipeline.run(config, seq)


def test_a_trace_counts_against_the_server_total_exactly_while_it_is_alive():
    from lstm_viz import guard, pipeline

    gc.collect()
    before = guard.held_bytes()
    config = pipeline.AppConfig(hidden_size=32, seq_len=50)
    result = pipeline.run(config, pipeline.make_sequence(config, {}))
    assert guard.held_bytes() - before == trace_bytes(config.lstm_config(), 50, config.batch_size)
    del result
    gc.collect()
    assert guard.held_bytes() == before


def test_the_server_total_refuses_a_trace_while_others_hold_the_memory(monkeypatch):
    from lstm_viz import guard

    gc.collect()
    small, big = LSTMConfig(4, 8), LSTMConfig(4, 256)
    need_small = int(guard.PEAK_OVER_TENSORS * trace_bytes(small, 100, 1))
    need_big = int(guard.PEAK_OVER_TENSORS * trace_bytes(big, 100, 1))
    room = guard.held_bytes() + need_big + need_small // 2  # either fits alone, not both at once
    monkeypatch.setenv("LSTM_VIZ_MAX_TOTAL_GB", str(room / 1e9))
    busy = r"the server is busy: the traces of all sessions hold [\d.]+ MB of the [\d.]+ MB allowed .*try again"
    with guard.admitted(small, 100, 1), pytest.raises(ResourceError, match=busy):  # one session computing …
        guard.admitted(big, 100, 1).__enter__()  # … so a second one must wait
    with guard.admitted(big, 100, 1) as need:  # and once the first is done, it is admitted
        assert need == need_big
