"""The cost model against the runs it estimates, auto's pick, and a trace's progress reports, cancellation, deadline
and chunks.

Two tests here time things, because that is what they check: the estimate of a run against the run (within 3×
either way), and auto's pick against the faster engine. A neighbour's burst of work can slow this machine's 2-thread
kernels 10× for a while, so a shape that misses is calibrated and measured again, once, before it fails.
"""

from __future__ import annotations

import statistics
import threading
import time

import pytest
import torch
from conftest import TOLERANCE
from torch import nn

from lstm_viz import InstrumentedLSTM, cost, engines
from lstm_viz.engines import ENGINES
from lstm_viz.parity import check_trace

# (T, B, I, H, options, engine): batch 1 with big weights (the review's case, shorter), batch 64, two bidirectional
# layers, a projection, long thin inputs; each engine. About 0.05–0.2 s a run on 2 CPU cores.
SHAPES = [
    (300, 1, 8, 1024, {}, "stepwise"),
    (300, 1, 8, 1024, {}, "fused"),
    (100, 64, 64, 256, {}, "stepwise"),
    (100, 64, 64, 256, {}, "fused"),
    (200, 8, 16, 128, dict(num_layers=2, bidirectional=True), "stepwise"),
    (200, 8, 16, 128, dict(num_layers=2, bidirectional=True), "fused"),
    (300, 8, 16, 512, dict(proj_size=128), "stepwise"),
    (300, 8, 16, 512, dict(proj_size=128), "fused"),
    (1000, 1, 4, 64, {}, "stepwise"),
    (2000, 1, 4, 64, {}, "fused"),
]
# Where the model separates the engines by far: tiny steps, long (fused); big weights, big batch (stepwise).
APART = [(2000, 1, 4, 32, {}), (40, 64, 32, 1024, {})]


def median_seconds(fn, repeats: int = 3) -> float:
    return statistics.median(cost.timed_calls(fn, "cpu", repeats))


def model_and_input(T, B, I, H, options):
    torch.manual_seed(0)
    return InstrumentedLSTM(I, H, **options).eval(), torch.randn(T, B, I)


def estimate_and_run(shape, rates) -> tuple[float, float]:
    """The model's seconds for trace + parity check, and the median of 3 measured."""
    T, B, I, H, options, engine = shape
    model, x = model_and_input(T, B, I, H, options)
    estimate = cost.run_seconds(model.config, T, B, engine, rates)
    return estimate, median_seconds(lambda: check_trace(model, x, model.trace(x, engine=engine)))


def table(rows) -> str:
    lines = [f"{'T':>5} {'B':>3} {'I':>3} {'H':>5} {'options':<42} {'engine':<9} {'estimate s':>10} {'measured s':>10}"
             f" {'ratio':>6}"]
    for (T, B, I, H, options, engine), (estimate, measured) in rows:
        lines.append(f"{T:>5} {B:>3} {I:>3} {H:>5} {str(options):<42} {engine:<9} {estimate:>10.3f} {measured:>10.3f} "
                     f"{measured / estimate:>5.2f}x")
    return "\n".join(lines)


def within_3x(estimate: float, measured: float) -> bool:
    return 1 / 3 <= measured / estimate <= 3


def test_estimate_of_a_run_is_within_3x_of_its_measured_time():
    """Trace + parity check, each shape measured (median of 3) right after a calibration."""
    rates = cost.calibrate()
    rows = [estimate_and_run(shape, rates) for shape in SHAPES]
    missed = [k for k, row in enumerate(rows) if not within_3x(*row)]
    if missed:  # calibrated or measured during a neighbour's burst? Once more, from a fresh calibration.
        rates = cost.calibrate()
        for k in missed:
            rows[k] = estimate_and_run(SHAPES[k], rates)
    assert all(within_3x(*row) for row in rows), "estimate vs measured, trace + parity check:\n" + table(
        zip(SHAPES, rows, strict=True))


def trace_seconds_measured(T, B, I, H, options, engine) -> float:
    model, x = model_and_input(T, B, I, H, options)
    return median_seconds(lambda: model.trace(x, engine=engine))


@pytest.mark.parametrize("shape", APART, ids=["tiny-steps-long", "big-weights-batch-64"])
def test_auto_picks_the_engine_that_is_faster_where_the_model_says_they_differ(shape, monkeypatch):
    T, B, I, H, options = shape
    cfg = InstrumentedLSTM(I, H, **options).config
    for _attempt in range(2):  # a second calibration and measurement before failing, as above
        rates = cost.calibrate()
        estimates = {engine: cost.trace_seconds(cfg, T, B, engine, rates) for engine in cost.engines_here(rates)}
        pick = min(estimates, key=estimates.get)
        apart = [engine for engine in estimates if estimates[engine] > 1.5 * estimates[pick]]  # clearly slower
        measured = {engine: trace_seconds_measured(T, B, I, H, options, engine) for engine in (pick, *apart)}
        if apart and all(measured[pick] < measured[engine] for engine in apart):
            break
    assert apart, f"the model no longer separates the engines here: {estimates}"
    assert all(measured[pick] < measured[engine] for engine in apart), (
        f"the model picks {pick}: estimated {estimates}, measured {measured}")
    monkeypatch.setitem(cost._calibrated, ("cpu", torch.float32), rates)  # auto uses the process's: these
    model, x = model_and_input(T, B, I, H, options)
    assert model.auto_engine(T, B) == pick


def test_rates_are_calibrated_once_per_device_and_dtype_even_when_asked_at_once(monkeypatch):
    calls = []

    def calibrate(device, dtype):
        calls.append((str(device), dtype))
        time.sleep(0.05)  # long enough for the other threads to ask meanwhile
        return f"rates for {device}, {dtype}"

    monkeypatch.setattr(cost, "calibrate", calibrate)
    monkeypatch.setattr(cost, "_calibrated", {})
    got = []
    threads = [threading.Thread(target=lambda: got.append(cost.rates("cpu", torch.float64))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert calls == [("cpu", torch.float64)]
    assert got == ["rates for cpu, torch.float64"] * 4
    cost.rates("cpu", torch.float64, refresh=True)
    assert len(calls) == 2


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a build or machine without a usable GPU")
def test_a_gpu_that_cannot_be_used_is_estimated_as_the_cpu_the_run_falls_back_to(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # as the app's device-fault tests pretend
    cfg = InstrumentedLSTM(4, 8).config
    assert cost.rates("cuda") is cost.rates("cpu")
    assert cost.estimate_seconds(cfg, 12, 2, device="cuda:0") > 0


def test_estimates_grow_with_the_work():
    cfg = InstrumentedLSTM(8, 64).config
    for engine in ("auto", *ENGINES):
        short, long = (cost.estimate_seconds(cfg, T, 2, engine) for T in (100, 1000))
        assert 0 < short < long
    deeper = InstrumentedLSTM(8, 64, num_layers=3, bidirectional=True).config
    assert cost.estimate_seconds(deeper, 100, 2) > cost.estimate_seconds(cfg, 100, 2)
    assert cost.faster_engine(cfg, 100, 2) in ENGINES


# --- progress, cancellation, deadline -------------------------------------------------------


def long_ish():
    torch.manual_seed(1)
    return InstrumentedLSTM(4, 16, num_layers=2), torch.randn(1500, 2, 4)


@pytest.mark.parametrize("engine", ENGINES)
def test_progress_is_reported_as_the_trace_runs_and_ends_at_one(engine):
    model, x = long_ish()
    seen = []

    def progress(done: float) -> None:
        seen.append(done)
        if len(seen) <= 3:  # the next check is then due: reports part-way however fast this machine is
            time.sleep(1.1 * cost.REPORT_EVERY)

    tr = model.trace(x, engine=engine, progress=progress)
    assert len(seen) > 3, seen
    assert seen[0] == 0.0, seen
    assert seen[-1] == 1.0, seen
    assert all(a <= b for a, b in zip(seen, seen[1:], strict=False)), seen
    assert any(0 < done < 1 for done in seen), seen
    whole = model.trace(x, engine=engine)
    for q in "ifgoch":
        torch.testing.assert_close(tr.get(q), whole.get(q), rtol=0, atol=10 * TOLERANCE[torch.float32])


class Cancelled(Exception):
    pass


@pytest.mark.parametrize("engine", ENGINES)
def test_an_exception_from_progress_stops_the_trace_and_propagates(engine):
    model, x = long_ish()
    seen = []

    def progress(done: float) -> None:
        seen.append(done)
        if done > 0:
            raise Cancelled
        time.sleep(1.1 * cost.REPORT_EVERY)

    with pytest.raises(Cancelled):
        model.trace(x, engine=engine, progress=progress)
    assert 0 < seen[-1] < 0.5, seen  # stopped part-way through the first layer


@pytest.mark.parametrize("engine", ENGINES)
def test_a_deadline_already_passed_stops_the_trace_at_its_first_step(engine):
    model, x = long_ish()
    with pytest.raises(cost.TooSlow, match=r"^the trace stopped at step 0 of 1,500 of layer 1 of 2 after \d+\.\d s: "
                                           r"the limit here is 0\.0 s; lower seq_len") as info:
        model.trace(x, engine=engine, deadline=time.monotonic() - 1)
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, ValueError)
    assert (info.value.step, info.value.seq_len) == (0, 1500)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_deadline_passed_part_way_says_how_far_the_trace_got(engine):
    model, x = long_ish()
    deadline = time.monotonic() + 1.0

    def progress(done: float) -> None:
        # the work up to here "took" past the deadline (at the first report part-way), else report again soon
        time.sleep(max(deadline - time.monotonic(), 0) + 0.01 if done > 0 else 1.1 * cost.REPORT_EVERY)

    with pytest.raises(cost.TooSlow) as info:
        model.trace(x, engine=engine, progress=progress, deadline=deadline)
    step = info.value.step
    assert 0 < step < 1500
    assert f"stopped at step {step:,} of 1,500 of layer 1 of 2" in str(info.value)
    assert info.value.limit == pytest.approx(1.0, abs=0.1)
    assert info.value.elapsed >= info.value.limit


# --- chunks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("option", [
    dict(), dict(num_layers=2, bidirectional=True), dict(proj_size=3, bidirectional=True),
    dict(num_layers=2, bias=False, batch_first=True),
])
def test_traces_in_chunks_equal_nn_lstm_and_the_whole_trace(option, engine, monkeypatch):
    """With a progress callback the fused engine runs torch.lstm a chunk of steps at a time, carrying (h, c)."""
    torch.manual_seed(2)
    ref = nn.LSTM(4, 8, **option).eval()
    ours = InstrumentedLSTM.from_torch(ref)
    T, B, D, L = 200, 3, 2 if ref.bidirectional else 1, ref.num_layers
    x = torch.randn((B, T, 4) if ref.batch_first else (T, B, 4))
    hx = (torch.randn(L * D, B, ref.proj_size or 8), torch.randn(L * D, B, 8))
    lstm_calls, real_lstm = [], torch.lstm
    monkeypatch.setattr(torch, "lstm", lambda *args, **kw: lstm_calls.append(1) or real_lstm(*args, **kw))
    tr = ours.trace(x, hx, engine=engine, progress=lambda done: None)
    whole = ours.trace(x, hx, engine=engine)
    if engine == "fused":  # the first chunk is 16 steps, and each grows at most 4×: 16 + 64 < 200
        assert len(lstm_calls) >= 3 * L * D + L
    monkeypatch.undo()
    with torch.no_grad():
        want_out, (want_h, want_c) = ref(x, hx)
    tol = TOLERANCE[torch.float32]
    for got, want in ((tr.output, want_out), (tr.h_n, want_h), (tr.c_n, want_c)):
        torch.testing.assert_close(got, want, rtol=0, atol=tol)
    for q in "ifgoch":
        torch.testing.assert_close(tr.get(q), whole.get(q), rtol=0, atol=10 * tol)
    assert check_trace(ours, x, tr).ok


def test_without_progress_or_deadline_the_fused_engine_runs_whole(monkeypatch):
    def never(*args):
        raise AssertionError("chunked without a clock")

    monkeypatch.setattr(engines, "fused_in_chunks", never)
    model, x = long_ish()
    assert model.trace(x, engine="fused").engine == "fused"


def test_chunks_aim_at_a_tenth_of_a_second_grow_at_most_4x_and_outweigh_their_fixed_cost():
    clock = cost.Clock(seq_len=1000, num_layers=1, num_directions=1)
    assert clock.next_chunk(16, 0.001) == 64  # fast: grows, but at most 4×
    assert clock.next_chunk(1000, 1.0) == int(1000 * cost.CHUNK_SECONDS)  # slow: shrinks to ~CHUNK_SECONDS
    assert clock.next_chunk(5, 100.0) == 1
    assert clock.next_chunk(8, 0.0) == 32
    clock = cost.Clock(seq_len=1000, num_layers=1, num_directions=1)
    assert clock.next_chunk(16, 0.020 + 16e-3) == 44  # 20 ms a chunk + 1 ms a step, seen as 2.25 ms a step
    # two sizes fit the 20 ms: chunks of 200 ms, 10×, of which 180 ms of steps (at most 4× the last, 176)
    assert clock.next_chunk(44, 0.020 + 44e-3) == 176
    clock = cost.Clock(seq_len=10, num_layers=2, num_directions=2)
    clock.layer = 1
    assert clock.fraction(1, 5) == (3 * 10 + 5) / 40
