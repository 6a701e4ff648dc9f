"""The resource guard: its estimates are what traces really take, and it refuses what would not fit."""

from __future__ import annotations

import gc
import time

import pytest
import torch

from lstm_viz import InstrumentedLSTM, LSTMConfig
from lstm_viz.guard import ResourceError, check_trace, trace_bytes


@pytest.mark.parametrize("engine", ["stepwise", "fused"])
@pytest.mark.parametrize("option", [dict(), dict(num_layers=3, bidirectional=True), dict(proj_size=3, num_layers=2)])
def test_estimate_is_the_storage_a_trace_holds(option, engine):
    """Measured, not restated: the bytes of every distinct storage the Trace and the model hold."""
    cfg = LSTMConfig(5, 7, **option)
    model = InstrumentedLSTM(**cfg.to_dict())
    T, B = 200, 3  # long enough that what does not grow with T is under 1%
    tr = model.trace(torch.randn(T, B, 5), engine=engine)
    small = [tr.h0, tr.c0, tr.h_n, tr.c_n]  # the estimate leaves these out: L·D·B·(H + H_r) values a pair
    tensors = [tr.i, tr.f, tr.g, tr.o, tr.c, tr.h, tr.output, *tr.layer_inputs, *tr.weights.values(),
               *model.parameters(), *small]
    held = storage_bytes(tensors)
    small_bytes = storage_bytes(small)
    estimate = trace_bytes(cfg, T, B)
    assert estimate >= held - small_bytes  # never under what grows with the input
    # Over by at most 20%: only where stepwise's single-direction output and layer inputs are views of h.
    assert estimate <= 1.2 * held
    if engine == "fused":  # every tensor its own storage: exact but for the small ones
        assert estimate == held - small_bytes


def storage_bytes(tensors) -> int:
    """Bytes of the distinct storages under `tensors`: views of one buffer (i, f, g, o) count once."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}
    return sum(storages.values())


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
    need_small = guard.peak_bytes(small, 100, 1)
    need_big = guard.peak_bytes(big, 100, 1)
    room = guard.server_bytes() + need_big + need_small // 2  # either fits alone, not both at once
    monkeypatch.setenv("LSTM_VIZ_MAX_TOTAL_GB", str(room / 1e9))
    busy = r"the server is busy: it holds [\d.]+ [MG]B of the [\d.]+ [MG]B allowed and this trace needs .*try again"
    with guard.admitted(small, 100, 1), pytest.raises(ResourceError, match=busy):  # one session computing …
        guard.admitted(big, 100, 1).__enter__()  # … so a second one must wait
    with guard.admitted(big, 100, 1) as need:  # and once the first is done, it is admitted
        assert need == need_big


def test_a_run_is_stopped_at_the_time_limit_whatever_the_estimate_said(monkeypatch):
    from lstm_viz import guard, pipeline

    config = pipeline.AppConfig(hidden_size=1024, seq_len=20_000, batch_size=1)
    assert guard.run_seconds(config.lstm_config(), 20_000, 1) > 3  # the honest estimate: far over the limit
    monkeypatch.setattr(guard, "run_seconds", lambda *args, **kwargs: 0.0)  # an estimate that is badly wrong
    monkeypatch.setenv("LSTM_VIZ_MAX_TRACE_S", "1")
    seq = pipeline.make_sequence(config, {})
    before = guard.held_bytes()
    started = time.monotonic()
    with pytest.raises(ResourceError, match=r"stopped at step [\d,]+ of 20,000 after [\d.]+ s: the limit here is 1 s"):
        pipeline.run(config, seq)
    assert time.monotonic() - started < 4  # the full run takes ~6 s here
    assert guard.held_bytes() == before  # nothing of it stays charged


def test_progress_is_reported_and_raising_from_it_cancels_the_run():
    from lstm_viz import guard, pipeline

    config = pipeline.AppConfig(hidden_size=128, seq_len=5_000, batch_size=1)
    seq = pipeline.make_sequence(config, {})
    seen = []
    pipeline.run(config, seq, progress=seen.append)
    assert seen[0] == 0.0, seen
    assert seen[-1] == 1.0, seen
    assert seen == sorted(seen), seen

    class Cancelled(BaseException):  # what Streamlit raises in the script thread when a rerun is asked for
        pass

    def cancel(done):
        if done > 0:
            raise Cancelled

    before = guard.held_bytes()
    with pytest.raises(Cancelled):
        pipeline.run(config, seq, progress=cancel)
    assert guard.held_bytes() == before


def test_a_cancelled_run_is_not_started_again_until_the_user_asks():
    from lstm_viz import resolve
    from lstm_viz.pipeline import AppConfig
    from lstm_viz.session import SessionData
    from lstm_viz.view import Sources

    session, sources = SessionData(), Sources()
    first = resolve.resolve(AppConfig(), sources, {}, resolve.ModelChoice(), session)
    session.request_cancel()  # pressed while the next run computes: the rerun it asks for finds it
    config = AppConfig(hidden_size=9)
    for _ in range(2):  # and later reruns (an explorer report, say) do not start it again either
        cancelled = resolve.resolve(config, sources, {}, resolve.ModelChoice(), session)
        assert cancelled.problem == resolve.CANCELLED
        assert cancelled.run is first.run  # the last good view stays
    session.run_again()
    again = resolve.resolve(config, sources, {}, resolve.ModelChoice(), session)
    assert not again.problem
    assert again.run.trace.config.hidden_size == 9
