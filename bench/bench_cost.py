"""The cost model's estimate of one app run (trace + parity check) against the run's measured time, in the same run.

    python bench/bench_cost.py [--device cuda] [--repeats 3] [--dtype float64]

Calibrates once (`cost.rates`, timed), then for each shape and engine prints the estimate, the median measured time
of trace + parity.check_trace, and measured / estimate (1.00 is exact; the tests allow 3× either way), and which
engine `auto` picks. Timings never decide a test but tests/test_cost.py's estimate check; this is for humans.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from lstm_viz import InstrumentedLSTM, cost  # noqa: E402
from lstm_viz.parity import check_trace  # noqa: E402

# (T, B, I, H, options): the review's case shortened, long thin inputs, big batches, every option
GRID = [
    (300, 1, 8, 1024, {}),
    (1000, 1, 4, 256, {}),
    (2000, 1, 4, 64, dict(num_layers=2)),
    (200, 64, 64, 256, dict(num_layers=2)),
    (300, 8, 16, 128, dict(num_layers=2, bidirectional=True)),
    (300, 8, 16, 512, dict(proj_size=128)),
    (3000, 4, 8, 32, {}),
    (60, 64, 32, 1024, {}),
]
GPU_EXTRA = [(2000, 1, 8, 2048, {}), (500, 256, 64, 1024, dict(num_layers=2))]


def measure(model: InstrumentedLSTM, x: torch.Tensor, engine: str, repeats: int) -> float:
    """Median seconds of trace + parity check after a warm-up, synchronising CUDA after each."""
    return statistics.median(cost.timed_calls(lambda: check_trace(model, x, model.trace(x, engine=engine)),
                                              x.device, repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if device.type == "cuda":  # as the app runs it: TF32 off
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    start = time.perf_counter()
    rates = cost.rates(device, dtype)
    print(f"# estimate vs measured: trace + parity check, {args.dtype}, {name}, torch {torch.__version__}, "
          f"median of {args.repeats}; calibration took {time.perf_counter() - start:.2f} s")
    print(f"{'T':>5} {'B':>4} {'I':>3} {'H':>5} {'options':<34} {'engine':<9}| {'estimate s':>10} {'measured s':>10} "
          f"{'ratio':>7}  auto")
    ratios = []
    for T, B, I, H, options in GRID + (GPU_EXTRA if device.type == "cuda" else []):
        torch.manual_seed(0)
        model = InstrumentedLSTM(I, H, **options, device=device, dtype=dtype).eval()
        x = torch.randn(T, B, I, device=device, dtype=dtype)
        auto = cost.faster_engine(model.config, T, B, device, dtype)
        for engine in cost.ENGINE_NAMES:
            estimate = cost.estimate_seconds(model.config, T, B, engine, device, dtype)
            measured = measure(model, x, engine, args.repeats)
            ratios.append(measured / estimate)
            opts = ", ".join(f"{k}={v}" for k, v in options.items())
            print(f"{T:>5} {B:>4} {I:>3} {H:>5} {opts:<34} {engine:<9}| {estimate:>10.3f} {measured:>10.3f} "
                  f"{measured / estimate:>6.2f}x  {'*' if engine == auto else ''}", flush=True)
    print(f"# measured / estimate: median {statistics.median(ratios):.2f}x, range {min(ratios):.2f}x to "
          f"{max(ratios):.2f}x; * marks auto's pick; rates: {rates}")


if __name__ == "__main__":
    main()
