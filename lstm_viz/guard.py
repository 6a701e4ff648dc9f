"""Resource guard: estimate what a request will take before doing it, and refuse what a small server cannot hold,
with a message that says what to lower. Budgets come from the environment:

    LSTM_VIZ_MAX_TRACE_GB   memory one trace may take (default 2 GB, for a 2-core, few-GB server)
    LSTM_VIZ_MAX_TRACE_S    seconds one run may take (default 120 s): estimated before, enforced while it runs
    LSTM_VIZ_MAX_TOTAL_GB   memory the whole server may use (default 4 GB): its own baseline (imports, measured
                            once by `count_process_baseline`) plus everything the account below holds

One memory account per server (sessions are threads of one process). Everything a request allocates in proportion
to user data is charged to it: `charged` for work in progress (a trace being computed with its temporaries, an
upload being parsed, an export being written), `hold` for what a session keeps (its trace, its explorer windows),
counted exactly while the object is alive. Sizes and weak references only: the account keeps nothing alive.
"""

from __future__ import annotations

import ctypes
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch

from . import cost
from .config import LSTMConfig
from .shapes import parameter_count

# Peak memory of an app run (the trace, then its parity check) over the trace's own tensors, by engine: measured
# 1.56–1.76 for fused, 2.31–2.42 for stepwise, whose steps are stacked into the trace at the end, and 1.42–1.76 for
# compiled, which writes straight into the trace (docs/benchmarks.md, "Memory of a run"). Explorer windows are
# charged on their own.
PEAK_OVER_TENSORS = {"fused": 1.9, "stepwise": 2.6, "compiled": 1.9}


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


def budgets() -> tuple[float, float]:
    """(bytes, seconds) one trace may take here."""
    gigabytes = float(os.environ.get("LSTM_VIZ_MAX_TRACE_GB", "2"))
    seconds = float(os.environ.get("LSTM_VIZ_MAX_TRACE_S", "120"))
    return gigabytes * 1e9, seconds


def total_budget() -> float:
    """Bytes the whole server may use: its baseline plus everything the account holds."""
    return float(os.environ.get("LSTM_VIZ_MAX_TOTAL_GB", "4")) * 1e9


class _Ledger:
    """Bytes alive (by object id) and being worked on in this process, plus its baseline."""

    def __init__(self):
        self.lock = threading.Lock()
        self.alive: dict[int, int] = {}  # id(object) -> its bytes
        self.computing = 0
        self.baseline = 0  # the process's own memory, once measured (0: not counted, e.g. outside the app)

    def total(self) -> int:
        return sum(self.alive.values()) + self.computing

    def release(self, key: int) -> None:
        with self.lock:
            self.alive.pop(key, None)


_ledger = _Ledger()


def _trim() -> Callable[[], object]:
    """glibc's malloc_trim(0): hands freed heap memory back to the system (a run's many small per-step tensors
    leave it fragmented and resident otherwise); a no-op elsewhere."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        return lambda: libc.malloc_trim(0)
    except (OSError, AttributeError):
        return lambda: None


release_free_memory = _trim()


def process_rss() -> int:
    """Resident bytes of this process now (Linux; 0 where /proc is absent)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def count_process_baseline() -> None:
    """From now on, the server total also counts this process's memory as it is now (after its imports): the app
    calls this on its first run, so LSTM_VIZ_MAX_TOTAL_GB bounds the whole server's memory."""
    with _ledger.lock:
        if not _ledger.baseline:
            _ledger.baseline = process_rss()


def baseline_counted() -> bool:
    return bool(_ledger.baseline)


def held_bytes() -> int:
    """Bytes the account holds: objects alive plus work in progress (the baseline is not included)."""
    with _ledger.lock:
        return _ledger.total()


def server_bytes() -> int:
    """What the server total counts now: the baseline plus `held_bytes`."""
    with _ledger.lock:
        return _ledger.baseline + _ledger.total()


def hold(obj, nbytes: int) -> None:
    """Count `obj` (of `nbytes`) against the total until it is garbage collected."""
    with _ledger.lock:
        _ledger.alive[id(obj)] = nbytes
    weakref.finalize(obj, _ledger.release, id(obj))


@contextmanager
def charged(nbytes: int, what: str) -> Iterator[int]:
    """Count `nbytes` against the server total while the block runs; ResourceError, before the block starts,
    when the total cannot take them now. `what` names the work in the message ("this trace", "parsing the file")."""
    nbytes = int(nbytes)
    total = total_budget()
    with _ledger.lock:
        busy = _ledger.baseline + _ledger.total()
        if busy + nbytes > total:
            raise ResourceError(f"the server is busy: it holds {_size(busy)} of the {_size(total)} allowed and "
                                f"{what} needs {_size(nbytes)}. Lower seq_len, batch_size, hidden_size or "
                                "num_layers, or try again in a while.")
        _ledger.computing += nbytes
    try:
        yield nbytes
    finally:
        with _ledger.lock:
            _ledger.computing -= nbytes


@contextmanager
def admitted(cfg: LSTMConfig, seq_len: int, batch_size: int, dtype_bytes: int = 4,
             device: str = "cpu") -> Iterator[int]:
    """Check the trace (`check_trace`) and charge its peak (tensors and the engines' temporaries) to the server
    total while the block computes it. Yields that estimate."""
    check_trace(cfg, seq_len, batch_size, dtype_bytes, device)
    try:
        with charged(peak_bytes(cfg, seq_len, batch_size, dtype_bytes, device), "this trace") as need:
            yield need
    finally:
        release_free_memory()


def peak_bytes(cfg: LSTMConfig, seq_len: int, batch_size: int, dtype_bytes: int = 4, device: str = "cpu") -> int:
    """Peak memory of the app's run of this trace: its tensors times the peak factor of the engine `auto` picks."""
    dtype = torch.float64 if dtype_bytes == 8 else torch.float32
    engine = cost.faster_engine(cfg, seq_len, batch_size, device, dtype)
    return int(PEAK_OVER_TENSORS[engine] * trace_bytes(cfg, seq_len, batch_size, dtype_bytes))


def _size(nbytes: float) -> str:
    return f"{nbytes / 1e9:.2f} GB" if nbytes >= 1e8 else f"{nbytes / 1e6:.1f} MB"


def run_seconds(cfg: LSTMConfig, seq_len: int, batch_size: int, dtype_bytes: int = 4, device: str = "cpu") -> float:
    """Seconds the app's run (trace by the faster engine, then the parity check) takes here, by the cost model
    calibrated on this machine's own engines (lstm_viz.cost)."""
    dtype = torch.float64 if dtype_bytes == 8 else torch.float32
    return cost.estimate_seconds(cfg, seq_len, batch_size, "auto", device, dtype)


def check_trace(cfg: LSTMConfig, seq_len: int, batch_size: int, dtype_bytes: int = 4, device: str = "cpu") -> None:
    """Raise ResourceError, saying what to lower, when this trace would exceed the server's budgets."""
    max_bytes, max_seconds = budgets()
    need = peak_bytes(cfg, seq_len, batch_size, dtype_bytes, device)
    seconds = run_seconds(cfg, seq_len, batch_size, dtype_bytes, device)
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
