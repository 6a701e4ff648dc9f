"""Does the trace hold what an LSTM computes? Two cheap, independent checks of what the app shows.

1. The cell: at sampled steps of every layer and direction, `lstm_cell` recomputes i, f, g, o, c and h from the
   trace's own x_t, h_{t−1} and c_{t−1} (t+1 for the reverse direction); the recorded values must match. This
   catches a gate or state that is wrong even where the output is right.
2. torch: torch.nn.LSTM with the same weights, on the same input and initial state, must give the trace's
   output, h_n and c_n, and the last layer's recorded h.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .config import LSTMConfig
from .engines import QUANTITIES, DirectionWeights, input_part, lstm_cell
from .model import InstrumentedLSTM
from .trace import Trace

# One constant: the app's badge and the tests use it. float64 must agree to the last bits; float32 within what
# reordered sums can differ by.
TOLERANCE = {torch.float32: 1e-5, torch.float64: 1e-10}
SAMPLE_STEPS = 64  # steps recomputed per layer-direction; all of them for sequences up to this long


@dataclass(frozen=True)
class ParityReport:
    """Max absolute differences of a trace from the reference cell and from torch.nn.LSTM."""

    steps_checked: int  # per layer-direction
    seq_len: int
    cell_diff: float  # recorded i, f, g, o, c, h at the sampled steps vs lstm_cell on the trace's own inputs
    torch_diff: float  # output, h_n, c_n and the last layer's recorded h vs torch.nn.LSTM, whole input
    layer_input_diff: float  # layer l's recorded input vs layer l−1's recorded h (0 with one layer)
    tolerance: float
    cell_where: str = ""  # where cell_diff is largest, e.g. "f at layer 0, direction 1, step 3, batch 0, unit 2"
    torch_where: str = ""  # which of output, h_n, c_n, h (last layer) differs most

    @property
    def ok(self) -> bool:
        return all(d <= self.tolerance for d in self._diffs())  # False for NaN

    @property
    def max_diff(self) -> float:
        return max(self._diffs(), key=nan_first)

    def _diffs(self) -> tuple[float, float, float]:
        return self.cell_diff, self.torch_diff, self.layer_input_diff

    def summary(self) -> str:
        """In plain words: what was checked, and what does not match and by how much."""
        steps = f"{self.steps_checked:,} of {self.seq_len:,} steps"
        tol = self.tolerance
        if self.ok:
            return (f"gates and states at {steps} match the reference cell (the equations redone from each step's "
                    f"inputs) {_amount(self.cell_diff)}; output, h_n and c_n match torch.nn.LSTM (same weights and "
                    f"input) {_amount(self.torch_diff)}; tolerance {tol:.0e}")
        fails = []
        if self.cell_diff > tol:
            fails.append(f"the recorded gates and states (i, f, g, o, c, h) at {steps} differ from the reference "
                         f"cell by up to {self.cell_diff:.1e} (largest: {self.cell_where})")
        if self.torch_diff > tol:
            fails.append(f"the output, h_n and c_n differ from torch.nn.LSTM by up to {self.torch_diff:.1e} "
                         f"(largest: {self.torch_where})")
        if self.layer_input_diff > tol:
            fails.append(f"a layer's recorded input differs from the previous layer's h by up to "
                         f"{self.layer_input_diff:.1e}")
        return "parity fails: " + "; ".join(fails) + f" (tolerance {tol:.0e})"


def _amount(diff: float) -> str:
    """A max |difference| in a sentence: "exactly" when it is 0, else "to 3.0e-07"."""
    return "exactly" if diff == 0 else f"to {diff:.1e}"


def sampled_steps(seq_len: int, sample_steps: int = SAMPLE_STEPS) -> list[int]:
    """Every step if seq_len ≤ sample_steps, else sample_steps of them evenly spaced, first and last included."""
    if seq_len <= sample_steps:
        return list(range(seq_len))
    if sample_steps < 2:
        return [0][:sample_steps]
    # (seq_len − 1)/(sample_steps − 1) > 1 here, so the floors are distinct
    return [k * (seq_len - 1) // (sample_steps - 1) for k in range(sample_steps)]


@torch.no_grad()
def check_trace(model: InstrumentedLSTM, x: Tensor, trace: Trace, sample_steps: int = SAMPLE_STEPS) -> ParityReport:
    """Check `trace` (of `model` fed `x`, batched or not, batch_first or not) against the cell and nn.LSTM."""
    steps = sampled_steps(trace.seq_len, sample_steps)
    cell_diff, cell_where = _cell_diff(trace, steps)
    torch_diff, torch_where = _torch_diff(model, x, trace)
    return ParityReport(steps_checked=len(steps), seq_len=trace.seq_len, cell_diff=cell_diff, torch_diff=torch_diff,
                        layer_input_diff=_layer_input_diff(model, trace), tolerance=TOLERANCE[trace.f.dtype],
                        cell_where=cell_where, torch_where=torch_where)


def _cell_diff(trace: Trace, steps: list[int]) -> tuple[float, str]:
    """All sampled steps of a layer-direction in one lstm_cell call: each row of the batch is its own step."""
    worst, where = 0.0, "nowhere"
    for layer in range(trace.num_layers):
        x_t = trace.layer_inputs[layer][steps]  # (S, B, I_k)
        for d in range(trace.num_directions):
            w = DirectionWeights.from_state(trace.weights, LSTMConfig.suffix(layer, d))
            h_prev = torch.stack([trace.h_prev(layer, d, t) for t in steps])  # h_{t−1}, or h_{t+1} in reverse
            c_prev = torch.stack([trace.c_prev(layer, d, t) for t in steps])
            want = lstm_cell(input_part(x_t, w), h_prev, c_prev, w)
            for name, value in zip(QUANTITIES, want, strict=True):
                diff = _abs_diff(trace.get(name)[layer, d, steps], value)
                top = diff.max().item()
                if top > worst or top != top:  # NaN counts as the worst
                    s, b, u = (int(k) for k in torch.unravel_index(diff.argmax(), diff.shape))
                    worst, where = top, f"{name} at layer {layer}, direction {d}, step {steps[s]}, batch {b}, unit {u}"
    return worst, where


def _torch_diff(model: InstrumentedLSTM, x: Tensor, trace: Trace) -> tuple[float, str]:
    """torch.nn.LSTM from the same initial state; the last layer's h against its output, direction by direction."""
    L, D, B = trace.num_layers, trace.num_directions, trace.batch_size
    h0, c0 = trace.h0.reshape(L * D, B, -1), trace.c0.reshape(L * D, B, -1)
    if not trace.batched:
        h0, c0 = h0.squeeze(1), c0.squeeze(1)
    out, (h_n, c_n) = _reference(model, trace)(x, (h0, c0))
    # the output time-major and batched, (T, B, D·H_r), as the trace's h is laid out
    time_major = out.unsqueeze(1) if not trace.batched else out.transpose(0, 1) if model.batch_first else out
    last_h = _features(trace.h[-1])
    diffs = {"output": _max_diff(trace.output, out), "h_n": _max_diff(trace.h_n, h_n),
             "c_n": _max_diff(trace.c_n, c_n), "h (last layer)": _max_diff(last_h, time_major)}
    worst = max(diffs, key=lambda name: nan_first(diffs[name]))
    return diffs[worst], worst


def _reference(model: InstrumentedLSTM, trace: Trace):
    """nn.LSTM with the model's weights; with dropout in training, the same masks are not drawn again, so then
    each layer is run alone on the input the trace recorded for it (dropout included)."""
    if not (model.training and model.dropout > 0 and trace.num_layers > 1):
        return model.to_torch()

    def layer_by_layer(x: Tensor, hx: tuple[Tensor, Tensor]):
        cfg = model.config
        h_n, c_n, out = [], [], None
        for layer in range(cfg.num_layers):
            params = [p for d in range(cfg.num_directions) for p in model.direction_weights(layer, d).flat()]
            out, h, c = torch.lstm(trace.layer_inputs[layer], (trace.h0[layer], trace.c0[layer]), params,
                                   has_biases=cfg.bias, num_layers=1, dropout=0.0, train=False,
                                   bidirectional=cfg.bidirectional, batch_first=False)
            h_n.append(h)
            c_n.append(c)
        h_n, c_n = torch.cat(h_n), torch.cat(c_n)
        out = out.transpose(0, 1) if cfg.batch_first else out
        if not trace.batched:
            out, h_n, c_n = out.squeeze(0 if cfg.batch_first else 1), h_n.squeeze(1), c_n.squeeze(1)
        return out, (h_n, c_n)

    return layer_by_layer


def _layer_input_diff(model: InstrumentedLSTM, trace: Trace) -> float:
    if model.training and model.dropout > 0:
        return 0.0  # dropout between layers changed the input: nothing to compare it with
    diffs = [0.0]
    for layer in range(1, trace.num_layers):
        diffs.append(_max_diff(trace.layer_inputs[layer], _features(trace.h[layer - 1])))
    return max(diffs, key=nan_first)


def _features(h: Tensor) -> Tensor:
    """One layer's recorded h (D, T, B, H_r) as its output is laid out: (T, B, D·H_r), [forward, reverse]."""
    D, T, B, H_r = h.shape
    return h.permute(1, 2, 0, 3).reshape(T, B, D * H_r)


def nan_first(diff: float) -> tuple[bool, float]:
    """Sort key for differences: NaN above every number (a NaN must fail the check; plain max() may skip it)."""
    return diff != diff, diff


def _abs_diff(got: Tensor, want: Tensor) -> Tensor:
    """|got − want|, 0 where both are the same inf or both NaN: a model that overflows does so in both."""
    diff = (got - want).abs()
    return diff.masked_fill((got == want) | (got.isnan() & want.isnan()), 0.0)


def _max_diff(got: Tensor, want: Tensor) -> float:
    if got.shape != want.shape:
        return float("inf")
    return _abs_diff(got, want).max().item() if got.numel() else 0.0
