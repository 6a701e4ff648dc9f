"""Time InstrumentedLSTM.trace against torch.nn.LSTM forward on the same input, in the same run.

    python bench/bench_trace.py [--device cuda] [--repeats 5] [--engine compiled] [--dtypes float32,float64]

Prints one row per dtype and grid point (T, B, I, H, L): median seconds of each, their ratio, and the engine that ran
(what auto picked, or for --engine compiled where its cell is unavailable, the fallback and why). No grad; float32
and float64 by default.
Timings never decide a test; this is for humans and docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lstm_viz import InstrumentedLSTM  # noqa: E402

GRID = [(64, 1, 8, 32, 1), (256, 16, 64, 256, 2), (1024, 1, 8, 64, 2), (256, 64, 256, 1024, 2)]
GPU_EXTRA = [(4096, 8, 32, 256, 1)]


def median_seconds(fn, repeats: int, device: torch.device) -> float:
    """Median wall time of fn() after one warm-up call, synchronising CUDA around each call."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    fn()
    times = []
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_point(T, B, I, H, L, device, repeats, engine=None, dtype=torch.float32) -> tuple[float, float, str]:
    torch.manual_seed(0)
    ref = torch.nn.LSTM(I, H, num_layers=L, device=device, dtype=dtype).eval()
    ours = InstrumentedLSTM.from_torch(ref).eval()
    x = torch.randn(T, B, I, device=device, dtype=dtype)
    kwargs = {} if engine is None else {"engine": engine}
    with torch.no_grad():
        t_ref = median_seconds(lambda: ref(x), repeats, device)
        t_ours = median_seconds(lambda: ours.trace(x, **kwargs), repeats, device)
        ran = ours.trace(x[:1], **kwargs).engine if engine else ours.auto_engine(T, B)
    return t_ref, t_ours, ran


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--engine", default=None, help="trace engine (default: the module's auto choice)")
    parser.add_argument("--dtypes", default="float32,float64", help="comma-separated torch dtypes, one table each")
    args = parser.parse_args()
    dtypes = [getattr(torch, name.strip()) for name in args.dtypes.split(",")]
    device = torch.device(args.device)
    if device.type == "cuda":  # parity and timing in full fp32, as the tests check it
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    grid = GRID + (GPU_EXTRA if device.type == "cuda" else [])
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"# trace vs nn.LSTM forward, no grad, {name}, torch {torch.__version__}, "
          f"median of {args.repeats}, engine={args.engine or 'auto'}")
    print(f"{'dtype':>7} {'T':>6} {'B':>4} {'I':>5} {'H':>5} {'L':>2} | {'nn.LSTM ms':>11} {'trace ms':>10} "
          f"{'ratio':>7} engine")
    for dtype in dtypes:
        for T, B, I, H, L in grid:
            t_ref, t_ours, ran = bench_point(T, B, I, H, L, device, args.repeats, args.engine, dtype)
            print(f"{str(dtype).removeprefix('torch.'):>7} {T:>6} {B:>4} {I:>5} {H:>5} {L:>2} | "
                  f"{t_ref * 1e3:>11.2f} {t_ours * 1e3:>10.2f} {t_ours / t_ref:>6.2f}x {ran}", flush=True)


if __name__ == "__main__":
    main()
