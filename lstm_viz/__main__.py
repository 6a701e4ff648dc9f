"""Command line: trace a saved nn.LSTM on an input file.

    python -m lstm_viz trace --weights model.pt --input x.npy --out trace.npz [--html report.html]

--input: .npy of shape (T, F), (T, B, F) or (T,), or a .csv with a row per step; time-major, as nn.LSTM takes it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import export
from .explorer import to_html
from .inputs import InputError, load_file
from .loading import WeightsError, describe, load_lstm


def trace_command(args) -> int:
    started = time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    try:
        model = load_lstm(args.weights, prefix=args.prefix)
        seq = load_file(args.input.name, args.input.read_bytes())
    except (WeightsError, InputError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    say(f"{describe(model.config)} on {seq.source}: {seq.seq_len} steps × batch {seq.batch_size}")
    if seq.input_size != model.input_size:
        print(f"error: the input has {seq.input_size} features per step, the LSTM expects input_size "
              f"{model.input_size}", file=sys.stderr)
        return 2
    trace = model.trace(seq.x.to(model.weight_ih_l0.dtype), engine=args.engine)
    say(f"traced with the {trace.engine} engine")
    export.save_npz(trace, args.out)
    say(f"wrote {args.out}")
    if args.html:
        to_html(trace, args.html, labels=seq.labels, vocab=seq.vocab,
                title=f"lstm-viz: {args.weights.name} on {args.input.name}")  # escaped there
        say(f"wrote {args.html}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lstm_viz", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    cmd = commands.add_parser("trace", help="trace a saved LSTM on an input file and write the trace as .npz")
    cmd.add_argument("--weights", type=Path, required=True, help="torch.save(lstm.state_dict()) file")
    cmd.add_argument("--prefix", default=None, help="which LSTM, when the file holds several (e.g. encoder.rnn.)")
    cmd.add_argument("--input", type=Path, required=True, help=".npy (T, F) / (T, B, F), or .csv")
    cmd.add_argument("--out", type=Path, required=True, help="the trace, .npz (lstm_viz.export.load_npz reads it)")
    cmd.add_argument("--html", type=Path, default=None, help="also the explorer (layer 0) as an offline HTML file")
    cmd.add_argument("--engine", default="auto", choices=["auto", "stepwise", "fused"])
    args = parser.parse_args(argv)
    return trace_command(args)


if __name__ == "__main__":
    sys.exit(main())
