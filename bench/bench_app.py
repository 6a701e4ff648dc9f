"""App latency and size: server rerun time when the explorer reports a new t (AppTest), bytes sent per rerun,
and a very long sequence (T=100,000, H=256, L=2, B=1): trace time, peak memory, rerun time and bytes.

    python bench/bench_app.py [--steps 20] [--skip-long]

Medians. Timings never decide a test; results go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
APP = str(ROOT / "app.py")


def sent_bytes(at) -> int:
    """Bytes of every element the last run produced (the figures dominate)."""
    return sum(len(node.proto.SerializeToString()) for node in _walk(at._tree) if hasattr(node, "proto")
               and node.proto is not None)


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def rerun_latency(state: dict, steps: int) -> dict:
    """Median seconds of an AppTest rerun after the explorer reports a new t (the page steps by itself; Python
    hears of t when the user pauses or needs the next window), and bytes per rerun."""
    from dataclasses import replace

    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(APP, default_timeout=600)
    at.query_params.update({key: str(value) for key, value in state.items()})
    start = time.perf_counter()
    at.run()
    first = time.perf_counter() - start
    assert not at.exception, [e.value for e in at.exception]
    seq_len = state.get("seq_len", 12)
    times, sizes = [], []
    for k in range(steps):
        t = (k * 7 + 1) % seq_len
        start = time.perf_counter()
        at.session_state["state.view"] = replace(at.session_state["state.view"], timestep=t)  # the report
        at.run()
        times.append(time.perf_counter() - start)
        sizes.append(sent_bytes(at))
    assert not at.exception, [e.value for e in at.exception]
    return {"first run s": first, "rerun ms (median)": 1e3 * statistics.median(times),
            "rerun ms (p90)": 1e3 * sorted(times)[int(0.9 * len(times))], "bytes per rerun": max(sizes)}


def peak_rss() -> int:
    """This process's peak resident memory in bytes (VmHWM: unlike ru_maxrss, not inherited from a parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def long_trace_child() -> None:
    """In a fresh process: trace T=100,000, H=256, L=2, B=1; print time, peak RSS and the trace's bytes."""
    import torch

    from lstm_viz import InstrumentedLSTM

    torch.manual_seed(0)
    x = torch.randn(100_000, 1, 8)
    model = InstrumentedLSTM(8, 256, num_layers=2).eval()
    base = peak_rss()
    start = time.perf_counter()
    trace = model.trace(x)
    seconds = time.perf_counter() - start
    peak = peak_rss()
    tensors = [trace.get(q) for q in "figoch"] + trace.layer_inputs
    need = sum(t.numel() * t.element_size() for t in tensors)
    start = time.perf_counter()
    with torch.no_grad():
        model.to_torch()(x)
    reference = time.perf_counter() - start
    print(f"{seconds:.2f} {reference:.2f} {(peak - base) / 2**20:.0f} {need / 2**20:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--skip-long", action="store_true")
    parser.add_argument("--long-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.long_child:
        return long_trace_child()
    print("# rerun after an explorer report, through AppTest (whole script, as AppTest runs it)")
    points = {"default config": {},
              "T=256, B=8, H=256, L=2": dict(seq_len=256, batch_size=8, hidden_size=256, num_layers=2)}
    if not args.skip_long:
        points["T=100000, H=256, L=2, B=1"] = dict(seq_len=100_000, batch_size=1, hidden_size=256, num_layers=2)
    for name, state in points.items():
        result = rerun_latency(state, args.steps)
        print(f"{name:>28}: " + ", ".join(f"{k} {v:,.1f}" if isinstance(v, float) else f"{k} {v:,}"
                                           for k, v in result.items()), flush=True)
    if not args.skip_long:
        out = subprocess.run([sys.executable, __file__, "--long-child"], capture_output=True, text=True,
                             check=True).stdout.split()
        trace_s, ref_s, peak_mb, need_mb = out
        print(f"# T=100,000 H=256 L=2 B=1 fp32: trace {trace_s} s (nn.LSTM forward {ref_s} s), "
              f"peak RSS growth {peak_mb} MiB for {need_mb} MiB of trace tensors")


if __name__ == "__main__":
    main()
