"""Command line: start the app, or trace a saved nn.LSTM on an input file.

    lstm-viz app [streamlit run's options, e.g. --server.port 8600]
    lstm-viz trace --weights model.pt --input x.npy --out trace.npz [--html report.html]

`python -m lstm_viz ...` is the same command. trace --input: .npy of shape (T, F), (T, B, F) or (T,), or a .csv with
a row per step; time-major, as nn.LSTM takes it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from . import export
from .engines import ENGINES
from .explorer import to_html
from .inputs import InputError, load_file
from .loading import WeightsError, describe, load_lstm

MAX_INPUT_BYTES = 2 * 2**30  # weights or an input file larger than this are refused before reading


class UsageError(Exception):
    """A bad path or option, reported in one line before any work is done."""


def readable(path: Path, what: str) -> Path:
    """`path` if it is a regular file of at most MAX_INPUT_BYTES (not a device or a pipe: /dev/zero never ends)."""
    if not path.exists():
        raise UsageError(f"{what} {path}: no such file")
    if not path.is_file():
        raise UsageError(f"{what} {path}: not a regular file")
    if path.stat().st_size > MAX_INPUT_BYTES:
        raise UsageError(f"{what} {path}: {path.stat().st_size / 2**30:.1f} GB, above the "
                         f"{MAX_INPUT_BYTES / 2**30:.0f} GB this reads")
    return path


def writable(path: Path, what: str, inputs: list[Path], force: bool) -> Path:
    """`path` if writing it destroys none of the inputs, and overwrites an existing file only with --force."""
    if any(path.resolve() == source.resolve() for source in inputs):
        raise UsageError(f"{what} {path} is one of the inputs: it would be overwritten")
    if not path.parent.is_dir():
        raise UsageError(f"{what} {path}: no directory {path.parent}")
    if path.exists() and (not path.is_file() or not force):
        raise UsageError(f"{what} {path} exists: pass --force to overwrite it" if path.is_file()
                         else f"{what} {path}: not a regular file")
    return path


def check_paths(args) -> None:
    inputs = [readable(args.weights, "--weights"), readable(args.input, "--input")]
    writable(args.out, "--out", inputs, args.force)
    if args.html is not None:
        writable(args.html, "--html", inputs, args.force)
        if args.html.resolve() == args.out.resolve():
            raise UsageError("--html and --out name the same file")


def trace_command(args) -> int:
    started = time.perf_counter()

    def say(message: str) -> None:
        print(f"[{time.perf_counter() - started:6.1f} s] {message}", file=sys.stderr, flush=True)

    try:
        check_paths(args)
        model = load_lstm(args.weights, prefix=args.prefix)
        seq = load_file(args.input.name, args.input.read_bytes())
    except (UsageError, WeightsError, InputError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # any other kind from a parser or loader: still one line, never a traceback
        print(f"error: could not read the inputs ({type(err).__name__}: {err})", file=sys.stderr)
        return 2
    say(f"{describe(model.config)} on {seq.source}: {seq.seq_len} steps × batch {seq.batch_size}")
    if seq.input_size != model.input_size:
        print(f"error: the input has {seq.input_size} features per step, the LSTM expects input_size "
              f"{model.input_size}", file=sys.stderr)
        return 2
    try:
        trace = model.trace(seq.x.to(model.weight_ih_l0.dtype), engine=args.engine)
    except (RuntimeError, MemoryError) as err:  # e.g. out of memory for a long input
        print(f"error: the trace failed ({type(err).__name__}: {err})", file=sys.stderr)
        return 2
    say(f"traced with the {trace.engine} engine")
    try:
        export.save_npz(trace, args.out)
        say(f"wrote {args.out}")
        if args.html:
            to_html(trace, args.html, labels=seq.labels, vocab=seq.vocab,
                    title=f"lstm-viz: {args.weights.name} on {args.input.name}")  # escaped there
            say(f"wrote {args.html}")
    except OSError as err:
        print(f"error: could not write: {err}", file=sys.stderr)
        return 2
    return 0


def app_command(extra: list[str]) -> int:
    """Becomes `streamlit run` on the installed page (os.execv: one process, so stopping it stops the server)."""
    from . import serve

    print(f"lstm-viz: open http://localhost:{serve.port(extra)} in a browser once the server is up (the URL Streamlit "
          "prints below is the one in use; the server is headless: it opens no browser itself). Ctrl+C stops it.",
          flush=True)
    command = serve.command(extra)
    os.execv(command[0], command)
    return 1  # not reached: execv returns only by raising


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lstm-viz", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("app", help="start the Streamlit app (headless: open the URL it prints); further options go "
                        "to `streamlit run`, e.g. --server.port 8600",
                        description="Start the app: `streamlit run` on the installed page, with the server options of "
                        "lstm_viz/serve/config.toml wherever it is started. Further options go to `streamlit run` and "
                        "win over those, e.g. lstm-viz app --server.port 8600.")
    cmd = commands.add_parser("trace", help="trace a saved LSTM on an input file and write the trace as .npz")
    cmd.add_argument("--weights", type=Path, required=True, help="torch.save(lstm.state_dict()) file")
    cmd.add_argument("--prefix", default=None, help="which LSTM, when the file holds several (e.g. encoder.rnn.)")
    cmd.add_argument("--input", type=Path, required=True, help=".npy (T, F) / (T, B, F), or .csv")
    cmd.add_argument("--out", type=Path, required=True, help="the trace, .npz (lstm_viz.export.load_npz reads it)")
    cmd.add_argument("--html", type=Path, default=None, help="also the explorer (layer 0) as an offline HTML file")
    cmd.add_argument("--engine", default="auto", choices=["auto", *ENGINES])
    cmd.add_argument("--force", action="store_true", help="overwrite --out and --html if they exist")
    args, extra = parser.parse_known_args(argv)  # app passes what it does not know on to Streamlit
    if args.command == "app":
        return app_command(extra)
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return trace_command(args)


if __name__ == "__main__":
    sys.exit(main())
