"""Resource guard: estimate a trace's memory and time before computing it, and refuse what a small server
cannot hold, with a message that says what to lower. Budgets come from the environment:

    LSTM_VIZ_MAX_TRACE_GB   memory one trace may take (default 2 GB, for a 2-core, few-GB server)
    LSTM_VIZ_MAX_TRACE_S    estimated seconds one trace may take (default 120 s)
    LSTM_VIZ_MAX_TOTAL_GB   memory the traces of all sessions may hold together (default 4 GB)

The total is kept by `admitted` (a trace being computed) and `hold` (a trace some session keeps): sizes only,
and weak references, so a trace is counted exactly while it is alive.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from .config import LSTMConfig
from .shapes import parameter_count

# Peak memory while tracing over the trace's own tensors (measured 1.32 at T=100,000, H=256: docs/benchmarks.md).
PEAK_OVER_TENSORS = 1.4
# Floating-point work a trace does per second on the slowest server we plan for (2 CPU cores; the fused engine
# does each GEMM twice): a deliberately low figure, so an estimate errs on the long side.
FLOPS_PER_SECOND = 20e9


class ResourceError(ValueError):
    """A trace too big or too slow for this server; the message says what to lower."""


def trace_bytes(cfg: LSTMConfig, seq_len: int, batch_size: int, dtype_bytes: int = 4) -> int:
    """Bytes of a trace's tensors: gates (4H), c (H) and h (H_r) per layer, direction, step and batch element,
    each layer's input, the output (D·H_r), and the weights (the model's, and the copy the trace keeps).

    Left out: h0, c0, h_n and c_n (L·D·B·(H + H_r) values each pair, however long the input). Where the stepwise
    engine's single-direction output and layer inputs are views of the h buffer it over-counts them instead.
    """
    L, D, H, H_r = cfg.num_layers, cfg.num_directions, cfg.hidden_size, cfg.real_hidden_size
    states = L * D * (4 * H + H + H_r)
    inputs = sum(cfg.layer_input_size(layer) for layer in range(L))
    output = D * H_r
    return (seq_len * batch_size * (states + inputs + output) + 2 * parameter_count(cfg)) * dtype_bytes


def trace_seconds(cfg: LSTMConfig, seq_len: int, batch_size: int) -> float:
    """A pessimistic estimate of tracing time: the LSTM's GEMMs, twice, at FLOPS_PER_SECOND."""
    L, D, H, H_r = cfg.num_layers, cfg.num_directions, cfg.hidden_size, cfg.real_hidden_size
    flops = sum(2 * 4 * H * (cfg.layer_input_size(layer) + H_r) for layer in range(L)) * D * seq_len * batch_size
    return 2 * flops / FLOPS_PER_SECOND


def budgets() -> tuple[float, float]:
    """(bytes, seconds) one trace may take here."""
    gigabytes = float(os.environ.get("LSTM_VIZ_MAX_TRACE_GB", "2"))
    seconds = float(os.environ.get("LSTM_VIZ_MAX_TRACE_S", "120"))
    return gigabytes * 1e9, seconds


def total_budget() -> float:
    """Bytes the traces of all sessions may hold together."""
    return float(os.environ.get("LSTM_VIZ_MAX_TOTAL_GB", "4")) * 1e9


class _Ledger:
    """Bytes of the traces alive in this process (sessions are threads of one server), and of those being
    computed. Sizes and weak references only: it keeps no trace alive and no session's data."""

    def __init__(self):
        self.lock = threading.Lock()
        self.alive: dict[int, int] = {}  # id(trace) -> its bytes
        self.computing = 0

    def total(self) -> int:
        return sum(self.alive.values()) + self.computing

    def release(self, key: int) -> None:
        with self.lock:
            self.alive.pop(key, None)


_ledger = _Ledger()


def held_bytes() -> int:
    """Bytes of the traces alive in this process, plus those being computed."""
    with _ledger.lock:
        return _ledger.total()


def hold(trace, nbytes: int) -> None:
    """Count `trace` (of `nbytes`) against the total until it is garbage collected."""
    with _ledger.lock:
        _ledger.alive[id(trace)] = nbytes
    weakref.finalize(trace, _ledger.release, id(trace))


@contextmanager
def admitted(cfg: LSTMConfig, seq_len: int, batch_size: int, dtype_bytes: int = 4) -> Iterator[int]:
    """Check the trace (`check_trace`) and that all sessions' traces fit the total with it; while the block
    computes it, its estimated bytes count as held. Yields that estimate."""
    check_trace(cfg, seq_len, batch_size, dtype_bytes)
    need = int(PEAK_OVER_TENSORS * trace_bytes(cfg, seq_len, batch_size, dtype_bytes))
    total = total_budget()
    with _ledger.lock:
        busy = _ledger.total()
        if busy + need > total:
            raise ResourceError(f"the server is busy: the traces of all sessions hold {_size(busy)} of the "
                                f"{_size(total)} allowed and this one needs {_size(need)}. Lower "
                                "seq_len, batch_size, hidden_size or num_layers, or try again in a while.")
        _ledger.computing += need
    try:
        yield need
    finally:
        with _ledger.lock:
            _ledger.computing -= need


def _size(nbytes: float) -> str:
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.1f} MB"


def check_trace(cfg: LSTMConfig, seq_len: int, batch_size: int, dtype_bytes: int = 4) -> None:
    """Raise ResourceError, saying what to lower, when this trace would exceed the server's budgets."""
    max_bytes, max_seconds = budgets()
    need = PEAK_OVER_TENSORS * trace_bytes(cfg, seq_len, batch_size, dtype_bytes)
    seconds = trace_seconds(cfg, seq_len, batch_size)
    problems = []
    if need > max_bytes:
        fit = int(seq_len * max_bytes / need)
        problems.append(f"needs about {need / 1e9:.1f} GB of memory, the limit here is {max_bytes / 1e9:.1f} GB "
                        f"(seq_len ≤ {max(fit, 1):,} would fit)")
    if seconds > max_seconds:
        fit = int(seq_len * max_seconds / seconds)
        problems.append(f"would take about {seconds:,.0f} s, the limit here is {max_seconds:,.0f} s "
                        f"(seq_len ≤ {max(fit, 1):,} would fit)")
    if problems:
        raise ResourceError(f"this trace ({seq_len:,} steps × batch {batch_size}, {cfg.num_layers} layer(s) of "
                            f"{cfg.hidden_size} units) " + " and ".join(problems)
                            + ": lower seq_len, batch_size, hidden_size or num_layers, or use float32.")
