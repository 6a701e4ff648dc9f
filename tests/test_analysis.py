"""Analysis: saturation, the memory ledger and retention agree with direct counts and products."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lstm_viz import InstrumentedLSTM
from lstm_viz.analysis import memory_ledger, retention, saturation


def traced(dtype=torch.float32, engine="auto", **option):
    torch.manual_seed(11)
    m = InstrumentedLSTM(3, 4, dtype=dtype, **option)
    with torch.no_grad():  # big weights push the gates towards 0 and 1, so both tails are populated
        for p in m.parameters():
            p.mul_(6)
    T, B = 6, 3
    hx = (torch.randn(m.num_layers * m.config.num_directions, B, m.proj_size or 4, dtype=dtype),
          torch.randn(m.num_layers * m.config.num_directions, B, 4, dtype=dtype))
    return m.trace(torch.randn(T, B, 3, dtype=dtype), hx, engine=engine)


def test_saturation_matches_a_direct_count():
    tr = traced(num_layers=2, bidirectional=True)
    for low, high in ((0.1, 0.9), (0.3, 0.6)):
        result = saturation(tr, low, high)
        assert list(result) == ["f", "i", "o"]
        for gate, fractions in result.items():
            assert fractions.shape == (2, 2, 4, 2)
            a = tr.get(gate).numpy()
            for layer in range(2):
                for d in range(2):
                    for u in range(4):
                        below = above = 0
                        for t in range(tr.seq_len):
                            for b in range(tr.batch_size):
                                below += a[layer, d, t, b, u] < low
                                above += a[layer, d, t, b, u] > high
                        n = tr.seq_len * tr.batch_size
                        assert fractions[layer, d, u, 0] == below / n
                        assert fractions[layer, d, u, 1] == above / n
    wide, narrow = saturation(tr, 0.1, 0.9), saturation(tr, 0.3, 0.6)
    assert not np.array_equal(wide["f"], narrow["f"])
    assert (narrow["f"] >= wide["f"]).all()  # looser thresholds count at least as many values


def test_saturation_extremes():
    tr = traced()
    all_in = saturation(tr, 0.0, 1.0)
    for fractions in all_in.values():  # sigmoids never leave [0, 1]
        assert (fractions == 0).all()


@pytest.mark.parametrize("low, high", [(0.5, 0.5), (0.9, 0.1), (-0.1, 0.5), (0.2, 1.5), (math.nan, 0.5)])
def test_saturation_rejects_bad_thresholds(low, high):
    with pytest.raises(ValueError, match="0 <= low < high <= 1"):
        saturation(traced(), low, high)


@pytest.mark.parametrize("engine", ["stepwise", "fused"])
@pytest.mark.parametrize("option", [dict(num_layers=2, bidirectional=True), dict(proj_size=2, bidirectional=True)],
                         ids=str)
def test_memory_ledger_adds_up_to_c(option, engine):
    tr = traced(engine=engine, **option)
    for layer in range(tr.num_layers):
        for d in range(tr.num_directions):
            for b in range(tr.batch_size):
                ledger = memory_ledger(tr, layer, d, b)
                assert ledger["kept"].shape == ledger["written"].shape == (tr.seq_len, 4)
                np.testing.assert_allclose(ledger["kept"] + ledger["written"], tr.c[layer, d, :, b].numpy(),
                                           rtol=0, atol=1e-6)
                for t in range(tr.seq_len):  # against the trace's own c_{t-1}
                    kept = (tr.f[layer, d, t, b] * tr.c_prev(layer, d, t)[b]).numpy()
                    written = (tr.i[layer, d, t, b] * tr.g[layer, d, t, b]).numpy()
                    np.testing.assert_array_equal(ledger["kept"][t], kept)
                    np.testing.assert_array_equal(ledger["written"][t], written)


def test_memory_ledger_uses_c0_at_the_start_of_each_direction():
    tr = traced(bidirectional=True)
    T = tr.seq_len
    forward, backward = memory_ledger(tr, 0, 0, 1), memory_ledger(tr, 0, 1, 1)
    np.testing.assert_array_equal(forward["kept"][0], (tr.f[0, 0, 0, 1] * tr.c0[0, 0, 1]).numpy())
    np.testing.assert_array_equal(backward["kept"][T - 1], (tr.f[0, 1, T - 1, 1] * tr.c0[0, 1, 1]).numpy())
    np.testing.assert_array_equal(backward["kept"][0], (tr.f[0, 1, 0, 1] * tr.c[0, 1, 1, 1]).numpy())


def test_time_constants_follow_the_formula():
    tr = traced(num_layers=2, bidirectional=True, dtype=torch.float64)
    ledger = memory_ledger(tr, 1, 1, 2)
    for u in range(4):
        mean_f = sum(tr.f[1, 1, t, 2, u].item() for t in range(tr.seq_len)) / tr.seq_len
        assert ledger["time_constant"][u] == pytest.approx(-1 / math.log(mean_f), rel=1e-12)


def test_time_constant_limits():
    tr = traced()
    tr.f[0, 0, :, 0, 0] = 1.0  # writes through the view into the gates buffer: a unit that never forgets
    tr.f[0, 0, :, 0, 1] = 0.0  # and one that forgets at once
    tr._memo.clear()  # the trace memoises its numpy arrays
    with np.errstate(all="raise"):  # no warnings leak out
        tau = memory_ledger(tr)["time_constant"]
    assert tau[0] == math.inf
    assert tau[1] == 0.0
    assert np.isfinite(tau[2:]).all()
    assert (tau[2:] > 0).all()


@pytest.mark.parametrize("direction", [0, 1])
def test_retention_is_the_product_of_f(direction):
    tr = traced(num_layers=2, bidirectional=True)
    for start, stop in ((0, 6), (2, 5), (3, 3), (5, 6)):
        got = retention(tr, start, stop, layer=1, direction=direction, batch=2)
        assert got.shape == (4,)
        for u in range(4):
            expected = 1.0
            for t in range(start, stop):
                expected *= float(tr.f[1, direction, t, 2, u])
            assert got[u] == pytest.approx(expected, rel=1e-12)
    assert (retention(tr, 3, 3) == 1).all()  # an empty range keeps everything


@pytest.mark.parametrize("start, stop", [(-1, 3), (4, 2), (0, 7)])
def test_retention_rejects_bad_ranges(start, stop):
    with pytest.raises(ValueError, match="start <= stop"):
        retention(traced(), start, stop)


@pytest.mark.parametrize("index", [dict(layer=1), dict(direction=1), dict(direction=-1), dict(batch=3)])
def test_indices_are_checked(index):
    tr = traced()
    with pytest.raises(IndexError):
        memory_ledger(tr, **index)
    with pytest.raises(IndexError):
        retention(tr, 0, 1, **index)
