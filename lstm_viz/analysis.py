"""Numbers that summarise what a trace's gates do: saturation, the memory ledger of c, retention."""

from __future__ import annotations

import numpy as np

from .trace import Trace

SATURATION_GATES = ("f", "i", "o")


def saturation(trace: Trace, low: float = 0.1, high: float = 0.9) -> dict[str, np.ndarray]:
    """Per gate f, i, o: (num_layers, num_directions, hidden_size, 2) fractions of (t, batch) < low and > high.

    The left/right-saturated fractions of Karpathy et al. 2015, "Visualizing and Understanding Recurrent Networks".
    """
    if not 0 <= low < high <= 1:  # also refuses NaN
        raise ValueError(f"saturation needs 0 <= low < high <= 1, got low={low!r}, high={high!r}")
    result = {}
    for gate in SATURATION_GATES:
        a = trace.array(gate)  # (L, D, T, B, H), NaN past each sequence's end when packed
        real = (~np.isnan(a)).sum(axis=(2, 3))
        with np.errstate(invalid="ignore"):  # a unit with no real step (an empty batch) has no fraction: NaN
            result[gate] = np.stack([(a < low).sum(axis=(2, 3)) / real, (a > high).sum(axis=(2, 3)) / real], axis=-1)
    return result


def memory_ledger(trace: Trace, layer: int = 0, direction: int = 0, batch: int = 0) -> dict[str, np.ndarray]:
    """Per unit over time: "kept" f_t c_{t-1} and "written" i_t g_t (T, H) summing to c_t; "time_constant" (H,).

    The time constant -1/ln(mean f) is the steps after which a unit keeps 1/e of its cell value: inf where
    mean f == 1, 0 where mean f == 0. c_{t-1} is c0 at the start, and for the reverse direction step t+1.
    """
    _check_indices(trace, layer, direction, batch)
    n = trace.steps(batch)  # a packed sequence's own steps: after them the trace holds NaN
    f, i, g, c = (trace.array(q)[layer, direction, :n, batch] for q in ("f", "i", "g", "c"))
    c0 = trace.array("c0")[layer, direction, batch][None]
    # Trace.c_prev for every t at once: the reverse direction runs from t = T-1 down to 0.
    c_prev = np.concatenate([c[1:], c0]) if direction == 1 else np.concatenate([c0, c[:-1]])
    mean_f = f.mean(axis=0, dtype=np.float64)  # float64: near 1, float32 rounding swamps ln(mean f)
    with np.errstate(divide="ignore"):  # ln(0) = -inf gives the wanted 0
        time_constant = np.where(mean_f >= 1, np.inf, -1 / np.log(mean_f))
    padding = np.full((trace.seq_len - n, f.shape[1]), np.nan, dtype=f.dtype)
    return {"kept": np.concatenate([f * c_prev, padding]), "written": np.concatenate([i * g, padding]),
            "time_constant": time_constant}


def retention(trace: Trace, start: int, stop: int, layer: int = 0, direction: int = 0,
              batch: int = 0) -> np.ndarray:
    """Per unit (H,), the product of f_t over t in [start, stop): the share of c that survives those steps.

    Either direction multiplies the same steps; only the order differs. Computed in float64.
    """
    _check_indices(trace, layer, direction, batch)
    if not 0 <= start <= stop <= trace.seq_len:
        raise ValueError(f"retention needs 0 <= start <= stop <= seq_len={trace.seq_len}, got [{start}, {stop})")
    f = trace.array("f")[layer, direction, start:min(stop, trace.steps(batch)), batch]  # the sequence's own steps
    return f.prod(axis=0, dtype=np.float64)


def _check_indices(trace: Trace, layer: int, direction: int, batch: int) -> None:
    """IndexError unless each index is in range; negatives are refused as direction -1 would read as forward."""
    for name, value, size in (("layer", layer, trace.num_layers), ("direction", direction, trace.num_directions),
                              ("batch", batch, trace.batch_size)):
        if not 0 <= value < size:
            raise IndexError(f"{name} {value} out of range [0, {size})")
