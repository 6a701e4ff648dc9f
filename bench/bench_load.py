"""Many users at once: N headless Chromium sessions stepping through the app, and what the server does.

    python bench/bench_load.py [--sessions 20] [--duration 60] [--budget 150] [--json report.json]

Starts `streamlit run app.py` on a free loopback port, opens N browser contexts (each its own Streamlit
session with its own config), steps each through time for the duration and prints sessions, steps, errors,
p50/p95 step latency (click on Next → the step figure shows the new t) and the server's memory. On one
2-core box the browsers, not the server, use most of the CPU: latencies are the box's, not the server's
alone. The same driver as tests/test_load.py (tests/load_support.py); never a test itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))
from load_support import OPEN_CONCURRENCY, run_load  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of stepping once all are drawn")
    parser.add_argument("--budget", type=float, default=None,
                        help="total seconds: shortens the step phase when the setup was slow")
    parser.add_argument("--min-steps", type=int, default=2, help="each session steps on until it has done these")
    parser.add_argument("--open-concurrency", type=int, default=OPEN_CONCURRENCY, help="pages loading at once")
    parser.add_argument("--json", type=Path, default=None, help="also write the full report (every sample) here")
    args = parser.parse_args()
    report = run_load(args.sessions, args.duration, budget_s=args.budget, min_steps=args.min_steps,
                      open_concurrency=args.open_concurrency)
    print(report.table())
    for error in report.errors:
        print("error:", error)
    if args.json:
        report.write(args.json)


if __name__ == "__main__":
    main()
