"""How long one run of the app takes here (`InstrumentedLSTM.trace`, then `parity.check_trace`), and a trace's
progress and deadline while it runs (`Clock`, `TooSlow`).

A run's time is the sum of what dominates it, per layer and direction (T steps, batch B, hidden H, h of size H_r):

    T × step overhead        Python and dispatch per stepwise step, the C++ loop of the compiled cell and of torch.lstm
    T × W_hh·h_{t−1}         bytes of W_hh / bandwidth (small B: memory-bound) + flops / GEMM rate (large B)
    T × B·H elementwise      the gates' activations, c and h
    GEMMs over all steps     the input parts, the fused engine's gate rebuild: flops / GEMM rate + one write a value
    the parity check         nn.LSTM's forward (torch.lstm, every layer) + the cell at ≤ 64 sampled steps + diffs

The constants are fitted to those building blocks timed here (`calibrate`: ~0.2 s on 2 CPU cores, once per process,
device and dtype), so the estimate follows the machine it runs on: at batch 1 a step is a matrix-vector product
that streams W_hh from the cache or from memory, at a speed that depends on the machine and on W_hh's size.
It cannot foresee a busy machine: a neighbour process on 2 cores can slow 2-thread kernels 5–30× (each parallel
region waits for a core), which is what the deadline is for.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch

from . import compiled
from .config import LSTMConfig
from .engines import (
    PACKED_MIN_VALUES,
    DirectionWeights,
    packed_kernels_available,
    packed_product,
    run_direction,
    scan_by_passes,
)
from .shapes import parameter_count

ENGINE_NAMES = ("fused", "stepwise", "compiled")  # as engines.ENGINES; the first wins a tie
REPORT_EVERY = 0.1  # s between progress reports: a bar that moves, for a negligible cost
CHUNK_SECONDS = 0.1  # s of work per chunk of the fused engine, so that its clock is read about that often
MAX_CHUNK_SECONDS = 0.25  # ... or up to this, to keep a chunk's fixed cost ≤ 10% (torch.lstm repacks big weights)
DIFF_PASSES = 8  # elementwise passes of parity._abs_diff and its max: sub, abs, eq, isnan ×2, or, masked_fill, max
INIT_PASSES = 8  # parity builds an nn.LSTM, which draws its own init (~8 copies' time a value), then loads ours
PREV_OPS = 6  # small ops per sampled step to pick the parity cell's h_{t−1} and c_{t−1}
CELL_OPS = 100  # small ops per layer-direction of the parity cell: its weights, the cell, 6 diffs and their maxima
TRACE_OPS, LAYER_OPS = 60, 15  # small ops of a trace, whatever its size: checks, buffers, the Trace; per layer
PARITY_OPS = 150  # small ops of a parity check, whatever its size: nn.LSTM built and loaded, 4 diffs
SCAN_STEP_OPS = 4  # small ops per step of linear_scan's loop: two index views, the view it writes, addcmul_
DEFAULT_CACHE = 32 << 20  # bytes of last-level cache where the system does not say
CACHED_BYTES = 4 << 20  # a weight that stays in any server's last-level cache between steps
BIG_BATCH = 64  # a batch at which a step's product is compute-bound
FRESH_BYTES = 64 << 20  # memory timed fresh: past glibc's largest reused block, so mapped anew each time


# --- progress and deadline ------------------------------------------------------------------


class TooSlow(TimeoutError, ValueError):
    """A trace stopped at its deadline; the message says how far it got and what to lower."""

    def __init__(self, message: str, step: int, seq_len: int, elapsed: float, limit: float):
        super().__init__(message)
        self.step, self.seq_len, self.elapsed, self.limit = step, seq_len, elapsed, limit


class Clock:
    """Progress reports and a deadline for one trace. The engines `tick` it between steps (stepwise) or chunks of
    steps (fused); a tick reads the clock and returns unless a report or the deadline is due."""

    def __init__(self, seq_len: int, num_layers: int, num_directions: int,
                 progress: Callable[[float], object] | None = None, deadline: float | None = None):
        self.seq_len, self.num_layers, self.num_directions = seq_len, num_layers, num_directions
        self.progress, self.deadline = progress, deadline
        self.layer = 0  # set by the model before each layer
        self.last_chunk: tuple[int, float] | None = None  # (steps, seconds) of the fused engine's last chunk
        self.start = time.monotonic()
        self.next_report = self.start if progress is not None else math.inf  # the first tick reports 0
        self.due = min(self.next_report, math.inf if deadline is None else deadline)

    def tick(self, direction: int, step: int) -> None:
        """`step` of this layer-direction's steps are done: report progress when due; past the deadline, stop."""
        now = time.monotonic()
        if now < self.due:
            return
        if self.deadline is not None and now >= self.deadline:
            raise self._too_slow(direction, step, now)
        if now >= self.next_report:
            self.next_report = now + REPORT_EVERY
            self.progress(self.fraction(direction, step))  # may raise: the caller's way to cancel
        self.due = min(self.next_report, math.inf if self.deadline is None else self.deadline)

    def finish(self) -> None:
        if self.progress is not None:
            self.progress(1.0)

    def fraction(self, direction: int, step: int) -> float:
        """Of all layer-direction-steps, those done: layers in order, each direction's steps in its own order."""
        unit = self.layer * self.num_directions + direction
        return min((unit * self.seq_len + step) / (self.num_layers * self.num_directions * self.seq_len), 1.0)

    def next_chunk(self, steps: int, seconds: float) -> int:
        """Steps for the next chunk, from the `seconds` the last `steps` took, growing at most 4× a chunk: about
        CHUNK_SECONDS of work, or 10× a chunk's fixed cost where that is more. The fixed cost (torch.lstm repacks
        the weights every call: ~25 ms at H = 2048 here) is fitted to this chunk and the one before, when sizes
        differ."""
        fixed = 0.0
        if self.last_chunk is not None and self.last_chunk[0] != steps:
            (n1, t1), (n2, t2) = self.last_chunk, (steps, seconds)
            per_step = (t2 - t1) / (n2 - n1)
            if per_step > 0:
                fixed = min(max(t2 - n2 * per_step, 0.0), t2)
        self.last_chunk = (steps, seconds)
        per_step = (seconds - fixed) / steps
        if per_step <= 0:
            return 4 * steps
        target = max(min(max(CHUNK_SECONDS, 10 * fixed), MAX_CHUNK_SECONDS), 2 * fixed)
        return max(1, min(4 * steps, int((target - fixed) / per_step)))

    def _too_slow(self, direction: int, step: int, now: float) -> TooSlow:
        elapsed, limit = now - self.start, max(self.deadline - self.start, 0.0)
        where = ""
        if self.num_layers * self.num_directions > 1:
            where = f" of layer {self.layer + 1} of {self.num_layers}"
            if self.num_directions == 2:
                where += ", reverse direction" if direction else ", forward direction"
        return TooSlow(f"the trace stopped at step {step:,} of {self.seq_len:,}{where} after {_secs(elapsed)}: the "
                       f"limit here is {_secs(limit)}; lower seq_len, batch_size, hidden_size or num_layers",
                       step, self.seq_len, elapsed, limit)


def _secs(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:,.0f} s"


# --- the model's constants ------------------------------------------------------------------


@dataclass(frozen=True)
class Product:
    """h ↦ h Wᵀ by one kernel, for W read once per call: call + bytes of W / bandwidth + flops / flop rate."""

    call: float  # s per call, whatever the size
    cached: float  # bytes/s reading a W that stays in the last-level cache between calls
    memory: float  # bytes/s reading a W from memory
    flops: float  # flop/s, which the product runs at once the batch is large

    def bandwidth(self, nbytes: float, cache: float) -> float:
        """Cached up to half the cache (the rest holds everything else), memory from the whole cache on, and
        geometric in between."""
        x = min(max(math.log2(max(nbytes, 1) / (cache / 2)), 0.0), 1.0)
        return self.cached ** (1 - x) * self.memory ** x


@dataclass(frozen=True)
class Kernel:
    """torch.lstm's kernel of one kind: per step, its overhead, its product and its elementwise work."""

    product: str  # the Product its W_hh·h runs like: "packed" for oneDNN's, "plain" for ATen's or cuBLAS
    step: float  # s per step beyond its products
    value: float  # s per B·H value per step: the gates' activations, c and h
    pack: float  # s per byte of weights per call: oneDNN reorders them, cuDNN flattens them, every call


@dataclass(frozen=True, eq=False)  # hashed by identity: `_faster` caches its answers per Rates
class Rates:
    """The fitted constants of one device and dtype."""

    device: str  # "cpu" or "cuda"
    itemsize: int  # bytes per value
    cache: float  # bytes of last-level cache: the CPU's L3, the GPU's L2
    gemm: float  # flop/s of a big GEMM: the input parts, the fused engine's gate rebuild, the parity cell
    value: float  # s per value of one elementwise pass: a copy, an activation, a comparison
    op: float  # s per small torch op: Python and dispatch, or a kernel launch
    products: dict[str, Product] = field(default_factory=dict)  # "plain" (a matmul), "packed" (oneDNN's, CPU fp32)
    stepwise_step: float = 0.0  # s per stepwise step beyond its products: lstm_cell's Python and dispatch
    stepwise_value: float = 0.0  # s per B·H value of a stepwise step's elementwise work
    kernels: dict[str, Kernel] = field(default_factory=dict)  # torch.lstm's: "fast" (oneDNN, cuDNN), "native" (ATen)
    compiled_step: float | None = None  # s per compiled step beyond its GEMMs' flops and bytes; None: no compiled cell
    compiled_value: float = 0.0  # s per B·H value of a compiled step's fused loop
    fresh: float = 0.0  # s per byte of memory new to the process (a big trace's record): mapping and zeroing pages


# --- the model ------------------------------------------------------------------------------


def estimate_seconds(cfg: LSTMConfig, seq_len: int, batch: int, engine: str = "auto",
                     device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> float:
    """Seconds one app run takes here: InstrumentedLSTM.trace with `engine` ("auto": the faster), then
    parity.check_trace. Calibrates on first use for this device and dtype (`rates`)."""
    return run_seconds(cfg, seq_len, batch, engine, rates(device, dtype))


def faster_engine(cfg: LSTMConfig, seq_len: int, batch: int, device: str | torch.device = "cpu",
                  dtype: torch.dtype = torch.float32) -> str:
    """The engine whose trace the model says is faster here: "fused" or "stepwise"."""
    return _faster(cfg, seq_len, batch, rates(device, dtype))


@functools.lru_cache(maxsize=4096)  # auto asks before every trace; the model takes ~20 µs a layer
def _faster(cfg: LSTMConfig, seq_len: int, batch: int, r: Rates) -> str:
    return min(engines_here(r), key=lambda engine: trace_seconds(cfg, seq_len, batch, engine, r))


def engines_here(r: Rates) -> tuple[str, ...]:
    """The engines `auto` chooses among: compiled only where its cell was built and calibrated."""
    return tuple(name for name in ENGINE_NAMES if name != "compiled" or r.compiled_step is not None)


def run_seconds(cfg: LSTMConfig, seq_len: int, batch: int, engine: str, r: Rates) -> float:
    """`estimate_seconds` with given constants."""
    engine = _faster(cfg, seq_len, batch, r) if engine == "auto" else engine
    return trace_seconds(cfg, seq_len, batch, engine, r) + parity_seconds(cfg, seq_len, batch, r)


def trace_seconds(cfg: LSTMConfig, seq_len: int, batch: int, engine: str, r: Rates) -> float:
    """InstrumentedLSTM.trace with `engine`, layer by layer, and the copy of the weights the trace keeps."""
    if engine == "compiled" and r.compiled_step is None:
        engine = "stepwise"  # what engine="compiled" runs where its cell cannot
    layer_seconds = {"stepwise": stepwise_layer_seconds, "fused": fused_layer_seconds,
                     "compiled": compiled_layer_seconds}[engine]
    layers = sum(layer_seconds(cfg, layer, seq_len, batch, r) for layer in range(cfg.num_layers))
    D, H = cfg.num_directions, cfg.hidden_size
    record = cfg.num_layers * D * seq_len * batch * (5 * H + cfg.real_hidden_size) * r.itemsize  # gates, c, h
    return (layers + record * r.fresh  # the record's pages, new to the process: the kernel maps and zeroes them
            + parameter_count(cfg) * r.value + (TRACE_OPS + LAYER_OPS * cfg.num_layers) * r.op)


def stepwise_layer_seconds(cfg: LSTMConfig, layer: int, T: int, B: int, r: Rates) -> float:
    """One layer, every direction: run_direction's steps, then its input GEMM and the stacking of the record."""
    I, H, H_r, P = _sizes(cfg, layer)
    kind = "packed" if "packed" in r.products and 4 * H * H_r >= PACKED_MIN_VALUES else "plain"  # as step_product
    step = (r.stepwise_step  # lstm_cell's Python and dispatch
            + product_seconds(r, kind, 4 * H, H_r, B)  # W_hh h_{t−1}
            + (product_seconds(r, "plain", P, H, B) if P else 0.0)  # W_hr h_t
            + B * H * r.stepwise_value)  # activations, c and h
    once = (gemm_seconds(r, T * B, I, 4 * H)  # W_ih x_t + b for every t, in one GEMM
            + T * B * (4 * H + H + H_r) * r.value  # stacking the recorded steps
            + (4 * H * H_r * r.value if kind == "packed" else 0.0))  # packing W_hh for the batch
    return cfg.num_directions * (T * step + once)


def compiled_layer_seconds(cfg: LSTMConfig, layer: int, T: int, B: int, r: Rates) -> float:
    """One layer, every direction: the compiled cell's input GEMM straight into the gate buffer, then per step one
    GEMM called from C++ (no Python) and one loop over (B, H)."""
    I, H, H_r, P = _sizes(cfg, layer)
    if "brgemm" in r.products and B * 4 * H * H_r > compiled.SMALL_PRODUCT:  # as compiled.prepare picks it
        kind = "brgemm"
    else:
        kind = "packed" if "packed" in r.products and 4 * H * H_r >= compiled.PACKED_MIN_VALUES else "plain"
    step = (r.compiled_step  # the C++ loop and its GEMMs' dispatch
            + product_seconds(r, kind, 4 * H, H_r, B, call=False)  # W_hh h_{t−1}
            + (product_seconds(r, "plain", P, H, B, call=False) if P else 0.0)  # W_hr h_t
            + B * H * r.compiled_value)  # activations, c and h, in one loop
    if kind == "brgemm":
        # W_ih x_t for every t in tiles straight into the gate buffer; both weights laid out in panels first
        once = (2 * T * B * I * 4 * H / r.products["brgemm"].flops + T * B * 4 * H * r.value
                + 4 * H * (I + H_r) * r.value)
    elif "packed" in r.products and 4 * H * I >= compiled.PACKED_MIN_VALUES and T * B >= compiled.INPUT_ROWS_MIN:
        # W_ih x_t + b by oneDNN's GEMM in blocks (compiled.input_part_into), each copied into the gate buffer
        once = 2 * T * B * I * 4 * H / r.products["packed"].flops + T * B * 4 * H * 2 * r.value + 4 * H * I * r.value
    else:
        once = gemm_seconds(r, T * B, I, 4 * H)  # W_ih x_t + b for every t, in one GEMM
    once += 4 * H * H_r * r.value if kind == "packed" else 0.0  # packing W_hh for the batch
    concat = (cfg.num_directions - 1) * T * B * 2 * H_r * r.value  # [forward, reverse] output
    return cfg.num_directions * (T * step + once) + concat


def fused_layer_seconds(cfg: LSTMConfig, layer: int, T: int, B: int, r: Rates) -> float:
    """One layer, every direction: torch.lstm, then the gates rebuilt in one GEMM, activations, the c scan."""
    I, H, H_r, _ = _sizes(cfg, layer)
    D = cfg.num_directions
    rebuild = (gemm_seconds(r, T * B, I + H_r, 4 * H)  # z_t from [x_t, h_{t−1}], every t at once
               + T * B * (I + 3 * H_r + 6 * H) * r.value  # concatenations, activations in place, i ⊙ g, copies
               + scan_seconds(r, T, B * H))  # c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t
    flips = (D - 1) * T * B * 3 * H * r.value  # the reverse direction scans flipped copies
    return lstm_layer_seconds(cfg, layer, T, B, r) + D * rebuild + flips


def lstm_layer_seconds(cfg: LSTMConfig, layer: int, T: int, B: int, r: Rates) -> float:
    """torch.lstm over one layer, every direction: what the fused engine and nn.LSTM's forward run."""
    I, H, H_r, P = _sizes(cfg, layer)
    k = r.kernels[_kernel(cfg, r)]
    step = (k.step  # the kernel's loop, its products' calls included: C++, no Python between them
            + product_seconds(r, k.product, 4 * H, H_r, B, call=False)  # W_hh h_{t−1}
            + (product_seconds(r, k.product, P, H, B, call=False) if P else 0.0)  # W_hr h_t
            + B * H * k.value)  # activations, c and h
    weight_bytes = (4 * H * (I + H_r) + P * H) * r.itemsize
    once = gemm_seconds(r, T * B, I, 4 * H) + weight_bytes * k.pack  # input part; reordered weights
    return cfg.num_directions * (T * step + once)


def parity_seconds(cfg: LSTMConfig, seq_len: int, batch: int, r: Rates) -> float:
    """parity.check_trace: nn.LSTM built and run on the whole input, the cell at the sampled steps, the diffs."""
    from .parity import SAMPLE_STEPS  # parity imports the model, which imports this module

    T, B, L, D = seq_len, batch, cfg.num_layers, cfg.num_directions
    reference = parameter_count(cfg) * INIT_PASSES * r.value  # model.to_torch()
    forward = sum(lstm_layer_seconds(cfg, layer, T, B, r) for layer in range(L))
    S = min(T, SAMPLE_STEPS)
    cell = 0.0
    for layer in range(L):
        I, H, H_r, P = _sizes(cfg, layer)
        cell += D * (S * PREV_OPS * r.op  # h_{t−1}, c_{t−1} of each sampled step
                     + gemm_seconds(r, S * B, I, 4 * H) + gemm_seconds(r, S * B, H_r, 4 * H)  # every step at once
                     + (gemm_seconds(r, S * B, H, P) if P else 0.0)
                     + S * B * H * r.stepwise_value  # the cell's activations
                     + S * B * (5 * H + H_r) * (DIFF_PASSES + 1) * r.value  # gather and compare i, f, g, o, c, h
                     + CELL_OPS * r.op)
    outputs = T * B * D * cfg.real_hidden_size  # values of the output, and of each layer's h
    diffs = outputs * ((3 + L - 1) * DIFF_PASSES + L) * r.value  # output, last h, layer inputs; relayouts
    return reference + forward + cell + diffs + PARITY_OPS * r.op


def product_seconds(r: Rates, kind: str, rows: int, cols: int, batch: int, call: bool = True) -> float:
    """One h ↦ h Wᵀ for W (rows, cols) and h (batch, cols): its call from Python, W streamed once, its flops."""
    p = r.products[kind]
    nbytes = rows * cols * r.itemsize
    return p.call * call + nbytes / p.bandwidth(nbytes, r.cache) + 2 * batch * rows * cols / p.flops


def gemm_seconds(r: Rates, m: int, k: int, n: int) -> float:
    """(m, k) × (k, n) over many rows: its flops, and writing its m·n values (which dominates when k is small)."""
    return 2 * m * k * n / r.gemm + m * n * r.value


def scan_seconds(r: Rates, T: int, units: int) -> float:
    """engines.linear_scan over T steps of `units` values, by the scheme it picks."""
    if T == 0:
        return 0.0
    if scan_by_passes(T, units):  # log-depth: every pass reads and writes the whole sequence a few times
        return math.ceil(math.log2(max(T, 2))) * (4 * r.op + 4 * T * units * r.value)
    return T * (SCAN_STEP_OPS * r.op + 2 * units * r.value)  # a loop: one multiply-add per step


def _sizes(cfg: LSTMConfig, layer: int) -> tuple[int, int, int, int]:
    """I_k, H, H_r, P of a layer."""
    return cfg.layer_input_size(layer), cfg.hidden_size, cfg.real_hidden_size, cfg.proj_size


def _kernel(cfg: LSTMConfig, r: Rates) -> str:
    """The torch.lstm kernel this config runs on: oneDNN cannot project (nor does float64), ATen's own then."""
    if "fast" in r.kernels and not (r.device == "cpu" and cfg.proj_size):
        return "fast"
    return "native"


# --- calibration ----------------------------------------------------------------------------

_calibrated: dict[tuple[str, torch.dtype], Rates] = {}
_lock = threading.Lock()


def rates(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32, refresh: bool = False) -> Rates:
    """This process's constants for `device` and `dtype`: calibrated on first use (or with `refresh`), then cached.
    Sessions are threads of one server: the first to ask calibrates, the others wait for it."""
    dev = _usable(torch.device(device))
    key = (str(dev), dtype)
    with _lock:
        if refresh or key not in _calibrated:
            _calibrated[key] = calibrate(dev, dtype)
        return _calibrated[key]


def _usable(dev: torch.device) -> torch.device:
    """`dev`, with its index; a GPU that cannot be used is estimated as the CPU, where the app then runs."""
    if dev.type != "cuda":
        return dev
    try:
        current = torch.cuda.current_device()  # raises where torch has no usable CUDA
    except (AssertionError, RuntimeError):
        return torch.device("cpu")
    return torch.device("cuda", current if dev.index is None else dev.index)


@torch.no_grad()
def calibrate(device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32) -> Rates:
    """Time the building blocks here and fit the model's constants: ~0.2 s on 2 CPU cores. Each constant comes from
    a block where it dominates, less what the constants fitted before it account for."""
    dev = torch.device(device)

    def full(*shape: int) -> torch.Tensor:  # not random: as fast to compute on, quicker to make, no RNG drawn
        return torch.full(shape, 0.01, device=dev, dtype=dtype)

    def timed(fn: Callable[[], object], calls: int = 1) -> float:
        return _least_seconds(fn, dev) / calls

    n = 1 << 20 if dev.type == "cpu" else 1 << 24
    x, y = full(n), full(n)
    # One elementwise pass: the mix the engines run, two plain ops and two activations.
    value = timed(lambda: (torch.mul(x, x, out=y), y.copy_(x), torch.tanh(x, out=y), torch.sigmoid(x, out=y)), 4 * n)
    tiny = full(8)
    op = timed(lambda: [tiny.mul_(1.0) for _ in range(32)], 32)
    a, w, bias, out = full(1024, 256), full(1024, 256), full(1024), full(1024, 1024)
    gemm = 2 * 1024 * 256 * 1024 / _rest(timed(lambda: torch.addmm(bias, a, w.T, out=out)), 1024 * 1024 * value)
    r = Rates(dev.type, dtype.itemsize, cache_bytes(dev), gemm, value, op, fresh=_fresh_seconds(dev))

    kinds = ["plain"] + (["packed"] if dev.type == "cpu" and dtype == torch.float32 and packed_kernels_available()
                         else [])
    r = replace(r, products={kind: _calibrate_product(kind, r, full, timed) for kind in kinds})
    r = _calibrate_stepwise(r, full, timed)
    if dev.type == "cpu" and compiled.runs_on(full(1)) is None:  # builds the compiled cell on first use
        r = _calibrate_compiled(r, full, timed)
    fast = dev.type == "cuda" or (dtype == torch.float32 and torch.backends.mkldnn.is_available()
                                  and torch.backends.mkldnn.enabled)
    kernels = {}
    for kind in (["fast"] if fast else []) + (["native"] if dev.type == "cpu" else []):
        kernels[kind] = _calibrate_kernel(kind, fast, r, full, timed)
    return replace(r, kernels=kernels)


def _calibrate_product(kind: str, r: Rates, full, timed) -> Product:
    """Call overhead from a tiny W; flops from batch 1 against a big batch, and the cached bandwidth, on a W that
    stays in the cache; the memory bandwidth on a W several times the cache."""
    make = packed_product if kind == "packed" else (lambda w, batch: lambda h: h @ w.T)

    def per_call(w: torch.Tensor, batch: int, calls: int) -> float:
        fn, h = make(w, batch), full(batch, w.shape[1])
        return timed(lambda: [fn(h) for _ in range(calls)], calls)

    call = per_call(full(64, 16), 1, 32)
    side = _side(CACHED_BYTES, r.itemsize)
    w = full(4 * side, side)
    one, many = per_call(w, 1, 8), per_call(w, BIG_BATCH, 1)
    flops = 2 * (BIG_BATCH - 1) * w.numel() / _rest(many, one)
    cached = w.numel() * r.itemsize / _rest(one, call + 2 * w.numel() / flops)
    side = _side(min(max(64 << 20, 2 * r.cache), 256 << 20), r.itemsize)
    w = full(4 * side, side)
    memory = w.numel() * r.itemsize / _rest(per_call(w, 1, 2), call + 2 * w.numel() / flops)
    return Product(call, cached, memory, flops)


def _calibrate_stepwise(r: Rates, full, timed) -> Rates:
    """run_direction, recording: a tiny layer for the per-step overhead, a wide batch for the elementwise work."""

    def run(T: int, B: int, H: int) -> float:
        w = DirectionWeights(full(4 * H, 8), full(4 * H, H), full(4 * H), full(4 * H), None)
        x, h0, c0 = full(T, B, 8), full(B, H), full(B, H)
        record = {"gates": full(T, B, 4 * H), "c": full(T, B, H), "h": full(T, B, H)}
        return timed(lambda: run_direction(x, h0, c0, w, reverse=False, record=record))

    T = 64
    r = replace(r, stepwise_step=_rest(run(T, 1, 8) / T, product_seconds(r, "plain", 32, 8, 1)))
    T, B, H = 8, 256, 64
    cfg = LSTMConfig(8, H)
    known = stepwise_layer_seconds(cfg, 0, T, B, r)  # all but the elementwise work, which is 0 so far
    return replace(r, stepwise_value=_rest(run(T, B, H), known) / (T * B * H))


def _calibrate_compiled(r: Rates, full, timed) -> Rates:
    """The compiled cell, as `_calibrate_stepwise` times the stepwise one: a tiny layer for the per-step overhead,
    a batch wide enough to run the fused loop on every thread for the elementwise work."""

    def run(T: int, B: int, H: int) -> float:
        x, h0, c0 = full(T, B, 8), full(B, H), full(B, H)
        w_ih, w_hh, bias = full(4 * H, 8), full(4 * H, H), full(4 * H)
        gates, c, h = full(T, B, 4 * H), full(T, B, H), full(T, B, H)
        return timed(lambda: compiled.trace_steps(x, h0, c0, w_ih, w_hh, bias, None, False, gates, c, h))

    cfg = LSTMConfig(8, 8)
    r = replace(r, compiled_step=0.0, compiled_value=0.0)
    T = 64
    r = replace(r, compiled_step=_rest(run(T, 1, 8), compiled_layer_seconds(cfg, 0, T, 1, r)) / T)
    T, B, H = 8, 512, 64
    known = compiled_layer_seconds(LSTMConfig(8, H), 0, T, B, r)  # all but the elementwise work, 0 so far
    r = replace(r, compiled_value=_rest(run(T, B, H), known) / (T * B * H))
    if not compiled.uses_brgemm(full(1)):
        return r
    # brgemm's flop rate, from a layer whose products dominate, by the route compiled.prepare picks for it
    T, B, H = 32, 16, 256
    x, h0, c0 = full(T, B, H), full(B, H), full(B, H)
    w_ih, w_hh, bias = full(4 * H, H), full(4 * H, H), full(4 * H)
    gates, c, h = full(T, B, 4 * H), full(T, B, H), full(T, B, H)
    prepared = compiled.prepare(w_ih, w_hh, B)
    took = timed(lambda: compiled.trace_steps(x, h0, c0, w_ih, w_hh, bias, None, False, gates, c, h, prepared))
    like = r.products.get("packed", r.products["plain"])  # its bandwidths: W streamed once a step, as theirs
    free = replace(r, products={**r.products, "brgemm": replace(like, call=0.0, flops=math.inf)})
    flops = 2 * T * B * 4 * H * 2 * H / _rest(took, compiled_layer_seconds(LSTMConfig(H, H), 0, T, B, free))
    return replace(r, products={**r.products, "brgemm": replace(like, call=0.0, flops=flops)})


def _calibrate_kernel(kind: str, fast: bool, r: Rates, full, timed) -> Kernel:
    """torch.lstm: a tiny layer for the per-step overhead, a wide batch for the elementwise work, a cached-size W
    over two steps for the per-call cost. Where a fast kernel exists, the native one is reached by projecting."""
    product = "packed" if kind == "fast" and "packed" in r.products else "plain"

    def run(T: int, B: int, H: int) -> float:
        P = H // 2 if kind == "native" and fast else 0
        params = [full(4 * H, 8), full(4 * H, P or H), full(4 * H), full(4 * H)] + ([full(P, H)] if P else [])
        x, h0, c0 = full(T, B, 8), full(1, B, P or H), full(1, B, H)
        return timed(lambda: torch.lstm(x, (h0, c0), params, True, 1, 0.0, False, False, False))

    def model(T: int, B: int, H: int, k: Kernel) -> float:
        cfg = LSTMConfig(8, H, proj_size=H // 2 if kind == "native" and fast else 0)
        return lstm_layer_seconds(cfg, 0, T, B, replace(r, kernels={"fast": k, "native": k}))

    k = Kernel(product, 0.0, 0.0, 0.0)
    T = 64
    k = replace(k, step=_rest(run(T, 1, 8), model(T, 1, 8, k)) / T)
    T, B, H = 8, 256, 64
    k = replace(k, value=_rest(run(T, B, H), model(T, B, H, k)) / (T * B * H))
    if kind == "fast":
        H = _side(CACHED_BYTES, r.itemsize)
        weight_bytes = 4 * H * (8 + H) * r.itemsize
        k = replace(k, pack=max(run(2, 1, H) - model(2, 1, H, k), 0.0) / weight_bytes)
    return k


def _fresh_seconds(dev: torch.device) -> float:
    """s per byte of writing memory new to the process, less writing it again: on the CPU the kernel maps and zeroes
    each page on first touch (~0.3 ms per MB here: a trace's record of 48 MB costs 15 ms before any math). Past
    glibc's largest reusable block (32 MB), so that the allocation is new every time."""
    if dev.type != "cpu":
        return 0.0
    n = FRESH_BYTES // 4
    fresh = _least_seconds(lambda: torch.empty(n).fill_(1.0), dev)
    again = torch.empty(n)
    return _rest(fresh, _least_seconds(lambda: again.fill_(1.0), dev)) / FRESH_BYTES


def _rest(measured: float, known: float) -> float:
    """What a timing leaves once the parts already modelled are taken out; at least a fifth of it, so that noise in
    those parts cannot make it vanish."""
    return max(measured - known, 0.2 * measured)


def _side(nbytes: float, itemsize: int) -> int:
    """H of a (4H, H) weight of about `nbytes`."""
    return max(int(math.sqrt(nbytes / (4 * itemsize))), 1)


def _least_seconds(fn: Callable[[], object], dev: torch.device, repeats: int = 3) -> float:
    """The least wall time of fn() in a few calls after a warm-up: the machine's own speed. A neighbour's burst can
    slow a 2-thread kernel 10× for a moment; the estimate should not keep that."""
    return min(timed_calls(fn, dev, repeats))


def timed_calls(fn: Callable[[], object], dev: torch.device | str = "cpu", repeats: int = 3) -> list[float]:
    """Wall seconds of `repeats` calls of fn() after one warm-up call, synchronising a GPU after each (also what
    bench/bench_cost.py and the estimate's test measure a run with)."""
    sync = torch.cuda.synchronize if torch.device(dev).type == "cuda" else (lambda: None)
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def cache_bytes(dev: torch.device) -> float:
    """The last-level cache a weight can stay in between steps: the CPU's largest (L3), or the GPU's L2."""
    if dev.type == "cuda":
        return float(getattr(torch.cuda.get_device_properties(dev), "L2_cache_size", 0) or DEFAULT_CACHE)
    sizes = []
    for level in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*"):
        try:
            text = (level / "size").read_text().strip()  # e.g. "32768K"
            sizes.append(int(text[:-1]) << {"K": 10, "M": 20, "G": 30}[text[-1]] if text[-1] in "KMG" else int(text))
        except (OSError, ValueError, IndexError):
            continue
    return float(max(sizes, default=DEFAULT_CACHE))
