"""Every benchmark in one run: trace ratios (target 1), stepping latency (target 2), a very long sequence (target 3).

    python bench/run_all.py [--device cuda]     # on a GPU, also the trace ratios against cuDNN

Prints each benchmark's table in turn; results are recorded in docs/benchmarks.md. Never part of the tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    extra = sys.argv[1:]
    runs = [["bench_trace.py", *extra], ["bench_trace.py", "--engine", "stepwise", "--repeats", "3", *extra],
            ["bench_cost.py", *extra]]  # the time estimate against the measured run
    if "cuda" not in extra:  # the app benchmarks are about the CPU server and the browser
        runs += [["bench_app.py"], ["bench_explorer.py"]]  # the explorer's steps, with the old slider's as baseline
    for script, *args in runs:
        print(f"\n$ python bench/{script} {' '.join(args)}", flush=True)
        subprocess.run([sys.executable, str(HERE / script), *args], check=True)


if __name__ == "__main__":
    main()
