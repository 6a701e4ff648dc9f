"""The compiled engine: the stepwise cell in C++ (compiled_cell.cpp), built with torch's extension mechanism at first
use, or the stepwise engine in Python where it cannot be built.

Per layer-direction the op `lstm_viz::trace_steps` runs, as the stepwise engine does (engines.run_direction):

    z_t = W_ih x_t + b_ih + b_hh + W_hh h_{t−1}       the input part for every t in one GEMM, then one GEMM a step
    i_t, f_t, o_t = σ(z_t rows i, f, o);  g_t = tanh(z_t rows g)
    c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t                  one loop over (B, H) a step, no FMA: rounded as torch rounds
    h_t = o_t ⊙ tanh(c_t)            then h_t = W_hr h_t when proj_size > 0

writing every gate and state straight into the trace's buffers, with no Python between steps. In float32, where
ATen's brgemm runs (oneDNN's micro-kernel; `prepare`), the op tiles the products itself as nn.LSTM's own CPU kernel
does: the input part in tiles of 64 rows by 128 columns straight into the gate buffer; then each step split by
blocks of 32 units over torch's threads, a thread computing every gate of its units in one brgemm call (W_hh laid out
in panels of their i, f, g, o columns) and their cell right after: one fork and join a step. Elsewhere a step's GEMM
is a loop of dot products for small weights, oneDNN's on W_hh prepacked for big float32 ones, ATen's in between.
CPU, float32 and float64; elsewhere (CUDA, half precision) it is the stepwise engine.

The build (~10 s on 2 quiet cores, ~30 s on busy ones; once per machine, in torch's extension cache:
TORCH_EXTENSIONS_DIR or ~/.cache/torch_extensions) runs in a child process, so a server's other sessions (threads)
keep running and a stuck build can be timed out. It is never fatal: without a compiler or ninja, or when the build
fails, `available()` is False, `unavailable_reason()` says why in one line, and the engine runs the stepwise one,
which says so (`label`). LSTM_VIZ_NO_COMPILE=1 forces that.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("compiled_cell.cpp")
# No fused multiply-add: c_t = f⊙c + i⊙g rounds as torch's two products. OpenMP, so that at::parallel_for in the
# op runs on torch's own thread pool (the library links libgomp.so.1, which the loaded torch already provides):
# without it the pragma is ignored and the cell's loop runs on one thread.
CFLAGS = ["-O3", "-ffp-contract=off", "-fopenmp"]
LDFLAGS = ["-fopenmp"]
# ATen's vectors at the width torch's own kernels use on this CPU (its Sleef exp and tanh, which libtorch exports):
# 16 floats a vector where torch runs AVX-512 (1.7× the cell's AVX2 speed here), 8 where AVX2, scalar elsewhere.
VECTOR_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c",
               "-DCPU_CAPABILITY=AVX512", "-DCPU_CAPABILITY_AVX512"],
    "AVX2": ["-mavx2", "-mfma", "-mf16c", "-DCPU_CAPABILITY=AVX2", "-DCPU_CAPABILITY_AVX2"],
}
BUILD_TIMEOUT_S = 600  # a cold build takes ~10–30 s on 2 cores; more means a stuck lock or a swamped machine
DTYPES = (torch.float32, torch.float64)
# From C++, with no Python call around it, oneDNN's prepacked product pays off from H = 256 (the stepwise engine:
# from H = 512, engines.PACKED_MIN_VALUES): 2.1× ATen's matmul at H = 256, batch 16 here; slower below H = 256.
PACKED_MIN_VALUES = 1 << 18
INPUT_ROWS_MIN = 256  # rows (T·B) from which the input part goes to oneDNN too: its packing pays off over many
INPUT_BLOCK_VALUES = 1 << 22  # values of the input part per oneDNN call: 16 MB of float32 output at a time
FALLBACK = "stepwise"
SMALL_PRODUCT = 16384  # B·4H·H_r up to which the op's own dot loop takes W_hh h (compiled_cell.cpp's kSmallProduct)

_lock = threading.Lock()  # sessions are threads: the first to ask builds, the others wait for it
_state: dict[str, object] = {}  # "reason": None once loaded, else why not; absent until first asked
build_seconds: float | None = None  # how long this process took to make the op usable (cold build or cached load)


def available() -> bool:
    """Whether the compiled cell can run here: builds it (or loads the cached build) on the first call."""
    return unavailable_reason() is None


def unavailable_reason() -> str | None:
    """None when the compiled cell is loaded, else why it cannot be, in one line. Builds on the first call."""
    if os.environ.get("LSTM_VIZ_NO_COMPILE", "") not in ("", "0"):  # read every time: tests and operators set it
        return "LSTM_VIZ_NO_COMPILE is set"
    with _lock:
        if "reason" not in _state:
            try:
                _state["reason"] = _load()
            except Exception as error:  # never fatal: whatever went wrong, the stepwise engine runs instead
                _state["reason"] = f"its build failed ({type(error).__name__}: {_one_line(str(error))})"
        return _state["reason"]  # type: ignore[return-value]


def runs_on(x: Tensor) -> str | None:
    """None where the compiled cell runs this input, else why the stepwise engine runs it instead."""
    if x.device.type != "cpu":
        return f"it runs on the CPU only, not {x.device.type}"
    if x.dtype not in DTYPES:
        return f"it runs float32 and float64 only, not {str(x.dtype).removeprefix('torch.')}"
    return unavailable_reason()


def label(x: Tensor) -> str:
    """What a trace of x by engine="compiled" reports as its engine."""
    reason = runs_on(x)
    return "compiled" if reason is None else f"{FALLBACK} (compiled cell unavailable: {reason}; slower)"


class Prepared(NamedTuple):
    """A layer-direction's weights as the op's faster products take them, made once per trace (`prepare`)."""

    packed_hh: Tensor | None = None  # W_hh prepacked by oneDNN for the batch: its GEMM a step (no brgemm here)
    ih_panels: Tensor | None = None  # W_ihᵀ, then W_hhᵀ, in brgemm's panels (float32 where brgemm runs)
    hh_panels: Tensor | None = None


def prepare(weight_ih: Tensor, weight_hh: Tensor, batch: int) -> Prepared:
    """The weights for the fastest products the op has here: brgemm's panels for float32 where it runs (each thread
    then computes every gate of its units in one call, and their cell right after), else oneDNN's prepacked W_hh
    where that pays off (`packs`), else nothing (ATen's GEMM)."""
    if uses_brgemm(weight_hh) and batch * weight_hh.numel() > SMALL_PRODUCT:
        ih_panels, hh_panels = torch.ops.lstm_viz.brgemm_weights(weight_ih, weight_hh)
        return Prepared(ih_panels=ih_panels, hh_panels=hh_panels)
    return Prepared(packed_hh=packed_weight(weight_hh, batch))


def trace_steps(x: Tensor, h0: Tensor, c0: Tensor, weight_ih: Tensor, weight_hh: Tensor, bias: Tensor | None,
                weight_hr: Tensor | None, reverse: bool, gates: Tensor, c: Tensor, h: Tensor,
                prepared: Prepared | None = None) -> None:
    """The op: steps of x (T, B, I) from h0, c0 into the contiguous buffers gates (T, B, 4H), c (T, B, H) and
    h (T, B, H_r), indexed by input position (reverse: t = T−1 … 0). bias is b_ih + b_hh; `prepared` (by `prepare`,
    for this batch) picks the faster products."""
    prepared = prepared or Prepared()
    has_input_part = prepared.ih_panels is None and input_part_into(x, weight_ih, bias, gates)
    torch.ops.lstm_viz.trace_steps(x, h0, c0, weight_ih, weight_hh, bias, weight_hr, *prepared, reverse,
                                   has_input_part, gates, c, h)


def input_part_into(x: Tensor, weight_ih: Tensor, bias: Tensor | None, gates: Tensor) -> bool:
    """W_ih x_t + b_ih + b_hh for every t into gates (T, B, 4H) by oneDNN's GEMM on W_ih prepacked, a block of rows
    at a time (so that its output, a new tensor, stays small), where that pays off: ~2× ATen's addmm for big float32
    weights here (where brgemm does not run). False where it does not, and the op computes it itself."""
    if not packs(weight_ih) or x.shape[0] * x.shape[1] < INPUT_ROWS_MIN:
        return False
    rows = max(1, INPUT_BLOCK_VALUES // gates.shape[-1])
    flat_x, flat_gates = x.reshape(-1, x.shape[-1]), gates.view(-1, gates.shape[-1])
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(weight_ih, min(rows, flat_x.shape[0]))
        for start in range(0, flat_x.shape[0], rows):
            block = torch.ops.mkldnn._linear_pointwise(flat_x[start:start + rows], packed, bias, "none", [], "")
            flat_gates[start:start + rows].copy_(block)
    except RuntimeError:  # a build without these kernels: ATen's GEMM in the op is as exact
        return False
    return True


def uses_brgemm(weight_hh: Tensor) -> bool:
    """Whether the op's products for these float32 weights are ATen's brgemm (oneDNN's micro-kernel, which the op
    tiles itself). LSTM_VIZ_NO_BRGEMM=1 turns it off (the tests run both routes)."""
    return (weight_hh.dtype == torch.float32 and weight_hh.device.type == "cpu"
            and os.environ.get("LSTM_VIZ_NO_BRGEMM", "") in ("", "0") and brgemm_runs())


def brgemm_runs() -> bool:
    """Whether ATen's float32 brgemm runs in this build of torch on this CPU (the op tries it once)."""
    return bool(torch.ops.lstm_viz.brgemm_runs())


def packs(weight: Tensor) -> bool:
    """Whether the op takes oneDNN's prepacked product for this weight where brgemm does not run (CPU, float32,
    big, kernels present)."""
    from .engines import packed_kernels_available

    return (weight.numel() >= PACKED_MIN_VALUES and weight.dtype == torch.float32 and weight.device.type == "cpu"
            and packed_kernels_available() and not uses_brgemm(weight))


def packed_weight(weight_hh: Tensor, batch: int) -> Tensor | None:
    """W_hh prepacked by oneDNN for this batch where that pays off (`packs`)."""
    if not packs(weight_hh):
        return None
    try:
        return torch.ops.mkldnn._reorder_linear_weight(weight_hh, batch)
    except RuntimeError:  # a build without these kernels: ATen's matmul is as exact
        return None


# --- the build ------------------------------------------------------------------------------


def cflags() -> list[str]:
    """The compiler's flags here: vector instructions only where torch runs them (else the build would crash)."""
    return CFLAGS + VECTOR_FLAGS.get(torch.backends.cpu.get_cpu_capability(), [])


def extension_name(source: str, flags: list[str]) -> str:
    """Named by what it is built from, so that a changed source, flag or torch never loads a stale build."""
    key = "\0".join([source, *flags, *LDFLAGS, torch.__version__, sys.version])
    return "lstm_viz_cell_" + hashlib.sha256(key.encode()).hexdigest()[:16]


def build_directory(name: str) -> Path:
    """torch's extension cache, where load_inline would put it."""
    from torch.utils.cpp_extension import get_default_build_root

    return Path(os.environ.get("TORCH_EXTENSIONS_DIR") or get_default_build_root()) / name


def _load() -> str | None:
    """Load the cached build, or build it first in a child process; the reason on failure, else None."""
    global build_seconds
    start = time.perf_counter()
    try:
        source = SOURCE.read_text()
    except OSError as error:
        return f"its source is missing ({error.strerror})"
    flags = cflags()
    name = extension_name(source, flags)
    where = build_directory(name)
    library, done = where / f"{name}.so", where / "built"  # "built": written once the build's own load succeeded
    if not done.exists():
        reason = _build(name, where, done, flags)
        if reason is not None:
            return reason
    try:
        torch.ops.load_library(str(library))
    except (OSError, RuntimeError) as error:
        return f"its build would not load ({_one_line(str(error))})"
    build_seconds = time.perf_counter() - start
    return None


def _build(name: str, where: Path, done: Path, flags: list[str]) -> str | None:
    """Build with load_inline in a child process (which also loads it, as a check); the reason on failure."""
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler ({compiler}) on PATH"
    env = dict(os.environ)
    if shutil.which("ninja") is None:  # load_inline needs ninja: the pip package's, where the system has none
        try:
            import ninja  # type: ignore[import-not-found]

            env["PATH"] = ninja.BIN_DIR + os.pathsep + env.get("PATH", "")
        except ImportError:
            return "ninja, which torch builds extensions with, is not installed"
    where.mkdir(parents=True, exist_ok=True)
    script = ("import sys, pathlib, torch.utils.cpp_extension as ext\n"
              "name, where, source, done = sys.argv[1:5]\n"
              "ext.load_inline(name, [pathlib.Path(source).read_text()], extra_cflags=sys.argv[5:],"
              f" extra_ldflags={LDFLAGS!r}, build_directory=where, is_python_module=False,"
              " no_implicit_headers=True)\n"
              "pathlib.Path(done).touch()\n")
    try:
        run = subprocess.run([sys.executable, "-c", script, name, str(where), str(SOURCE), str(done), *flags],
                             env=env, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"its build took over {BUILD_TIMEOUT_S} s (a stale lock in {where}?)"
    except OSError as error:
        return f"its build could not start ({error.strerror})"
    if run.returncode != 0:
        return f"its build failed ({_one_line(run.stderr or run.stdout)})"
    return None


def _one_line(text: str, limit: int = 200) -> str:
    """The last line that says something: an error's own words, short."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    line = (errors or lines or ["no output"])[-1]
    return line if len(line) <= limit else line[:limit - 1] + "…"
