"""Peak memory while tracing a long sequence: at most 1.1× the trace's own tensors (issue #15's test case,
T = 100,000, H = 256, L = 2, B = 1, float32), measured in a fresh process."""

from __future__ import annotations

import pytest
from memory_support import peak_growth

from lstm_viz import InstrumentedLSTM, compiled

T, I, H, L = 100_000, 8, 256, 2
# What the trace keeps: every gate, c and h of every layer at every step (the output is the top layer's h).
TRACE_BYTES = L * T * (4 * H + H + H) * 4

SETUP = f"""
import torch
from lstm_viz import InstrumentedLSTM
torch.manual_seed(0)
x = torch.randn({T}, 1, {I})
model = InstrumentedLSTM({I}, {H}, num_layers={L}).eval()
model.trace(x[:16], engine=ENGINE)  # builds or loads what the engine needs, and calibrates, before the peak counts
"""


@pytest.mark.parametrize("engine", ["auto", "compiled"])
def test_a_long_trace_peaks_within_1_1x_of_its_own_tensors(engine):
    """The compiled engine writes every step straight into the trace's buffers, its input part included, so the
    peak is the trace itself; auto picks it here. (The stepwise reference engine, which keeps each step's tensors
    and stacks them, peaks at about 2×: it is the fallback where nothing can be compiled.)"""
    if not compiled.available():
        pytest.skip(f"the compiled cell is unavailable here: {compiled.unavailable_reason()}")
    if engine == "auto":
        assert InstrumentedLSTM(I, H, num_layers=L).auto_engine(T, 1) == "compiled"
    growth, outcome = peak_growth(f"ENGINE = {engine!r}\n" + SETUP, "trace = model.trace(x, engine=ENGINE)")
    assert outcome == "ok"
    assert growth >= 0.9 * TRACE_BYTES  # the measurement sees the trace at all
    assert growth <= 1.1 * TRACE_BYTES, f"{engine}: peak grew {growth / 2**20:.0f} MiB for {TRACE_BYTES / 2**20:.0f}"
