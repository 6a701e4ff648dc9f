"""Turn what a user gives (sizes, typed numbers, a signal, text, a file) into an LSTM input + time labels."""

from __future__ import annotations

import csv
import dataclasses
import io
import math
import numbers
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.lib.format as npy_format
import torch

from . import seeding

MAX_STEPS = 100_000
MAX_BATCH = 1024
MAX_FEATURES = 4096
MAX_VALUES = 2**24  # steps × batch × features; 64 MiB of float32, so one input cannot exhaust memory
MAX_TYPED_CHARS = 1_000_000  # typing is for short sequences; a long one is a file
SIGNAL_KINDS = ("sine", "square", "sawtooth", "impulse", "step", "random_walk")

# ASCII only: float() would also accept "١٢" or "1_000", which a user never means as a number here.
_NUMBER = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NONFINITE = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)
_VALUE_SEP = re.compile(r"\s*,\s*|\s+")
_VISIBLE = {" ": "␣", "\n": "⏎", "\t": "⇥"}


class InputError(ValueError):
    """Bad user input; the message says where (line/column/row) and what was expected."""


@dataclass(frozen=True, eq=False)  # eq=False: comparing tensors field-wise has no single truth value
class SequenceInput:
    """An LSTM input, time-major (seq_len, batch, input_size), with one label per timestep."""

    x: torch.Tensor
    labels: list[str]
    source: str
    vocab: tuple[str, ...] | None = None

    def __post_init__(self):  # a mismatch fails here, where it is made, rather than later in a figure
        shape, n_vocab = tuple(self.x.shape), None if self.vocab is None else len(self.vocab)
        if len(shape) != 3 or len(self.labels) != shape[0] or n_vocab not in (None, shape[2]):
            raise InputError(f"inconsistent input: x {shape}, {len(self.labels)} labels, vocab of {n_vocab}")

    @property
    def seq_len(self) -> int:
        return self.x.shape[0]

    @property
    def batch_size(self) -> int:
        return self.x.shape[1]

    @property
    def input_size(self) -> int:
        return self.x.shape[2]


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _clip(token: str, width: int = 20) -> str:
    return token if len(token) <= width else token[:width] + "…"


def _time_labels(n: int) -> list[str]:
    return [f"t={t}" for t in range(n)]


def _check_dtype(dtype) -> None:
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise InputError(f"dtype must be a floating-point torch dtype, got {dtype}")


def _check_sizes(seq_len, batch_size, input_size) -> None:
    """Each size a whole number in 1..its limit, and their product within MAX_VALUES."""
    for name, n, limit, too in (
        ("seq_len", seq_len, MAX_STEPS, "too long: {} steps"),
        ("batch_size", batch_size, MAX_BATCH, "too many batch elements: {}"),
        ("input_size", input_size, MAX_FEATURES, "too many features: {}"),
    ):
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
            raise InputError(f"{name} must be a whole number ≥ 1, got {n!r}")
        if n > limit:
            raise InputError(f"{too.format(n)}, the limit is {limit}")
    if seq_len * batch_size * input_size > MAX_VALUES:
        raise InputError(f"too large: {seq_len}×{batch_size}×{input_size} values, the limit is {MAX_VALUES}")


def _check_real(name: str, value, *, minimum: float | None = None, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise InputError(f"{name} must be a finite number, got {value!r}")
    if minimum is not None and (value <= minimum if strict else value < minimum):
        raise InputError(f"{name} must be {'>' if strict else '≥'} {minimum:g}, got {value!r}")
    return float(value)


def _generator(seed) -> torch.Generator:
    """A private generator, so the same seed gives the same tensor and global RNG state is left alone."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise InputError(f"seed must be a whole number, got {seed!r}")
    try:
        return seeding.generator(seed)
    except (RuntimeError, ValueError) as e:
        raise InputError(f"seed {seed} is out of range: {e}") from e


def _number(token: str, limit: float, where: str, i: int) -> float:
    """Value i the user wrote; f"{where} {i}" (e.g. "line 2, value 1") starts any error message."""
    if _NUMBER.fullmatch(token):
        value = float(token)
        if abs(value) <= limit:  # float("1e999") is inf, and 1e39 overflows float32
            return value
        raise InputError(f'{where} {i}: "{_clip(token)}" is too large, the limit is {limit:.4g}')
    if not token:
        raise InputError(f"{where} {i}: empty value (two separators in a row?)")
    if _NONFINITE.fullmatch(token):
        raise InputError(f'{where} {i}: NaN/Inf is not allowed ("{_clip(token)}")')
    raise InputError(f'{where} {i}: "{_clip(token)}" is not a number')


def random_tensor(seq_len, batch_size, input_size, *, seed=0, distribution="normal",
                  dtype=torch.float32) -> SequenceInput:
    """Seeded random input: "normal" is N(0, 1), "uniform" is U(-1, 1)."""
    _check_sizes(seq_len, batch_size, input_size)
    _check_dtype(dtype)
    gen, shape = _generator(seed), (seq_len, batch_size, input_size)
    # Drawn in float64 and then cast, so a float32 and a float64 run with one seed see the same numbers.
    if distribution == "normal":
        x = torch.randn(shape, generator=gen, dtype=torch.float64)
    elif distribution == "uniform":
        x = torch.rand(shape, generator=gen, dtype=torch.float64) * 2 - 1
    else:
        raise InputError(f'unknown distribution "{distribution}": choose "normal" or "uniform"')
    return SequenceInput(x.to(dtype), _time_labels(seq_len), f"random {distribution}, seed {seed}")


def parse_typed(text: str, input_size: int | None = None, *, dtype=torch.float32) -> SequenceInput:
    """Typed numbers: a step per line or per ';', values split by commas/spaces, blank line: next batch."""
    _check_dtype(dtype)
    if input_size is not None:
        _check_sizes(1, 1, input_size)
    if len(text) > MAX_TYPED_CHARS:
        raise InputError(f"too long to type: {len(text):,} characters, the limit is {MAX_TYPED_CHARS:,}; "
                         "upload it as a .csv or .npy file instead")
    limit = torch.finfo(dtype).max
    blocks: list[list[tuple[int, str]]] = [[]]  # batch element -> its (line number, line) pairs
    for n, line in enumerate(text.replace("\u2212", "-").splitlines(), start=1):
        line = line.strip()
        if not line:
            if blocks[-1]:
                blocks.append([])
        elif not line.startswith("#"):  # a comment neither adds a step nor splits the batch
            blocks[-1].append((n, line))
    blocks = [b for b in blocks if b]
    if not blocks:
        raise InputError("empty input: type at least one timestep")
    width, why = input_size, f"input_size {input_size}"
    batch: list[list[list[float]]] = []
    for block in blocks:
        # With one feature, a lone line "1 2 3" is three timesteps rather than one step of three values.
        scalars = input_size == 1 and len(block) == 1 and ";" not in block[0][1]
        steps: list[list[float]] = []
        for n, line in block:
            parts = [p for p in line.split(";") if p.strip()]
            for s, part in enumerate(parts, 1):
                where = f"line {n}" if len(parts) == 1 else f"line {n}, step {s}"
                values = _VALUE_SEP.split(part.strip().rstrip(",").strip())  # "1, 2," has two values
                if width is None:
                    width, why = len(values), f"as in the first step, line {n}"
                if len(values) != width and not scalars:
                    expected = _plural(width, "value")
                    raise InputError(f"{where}: expected {expected} ({why}), found {len(values)}")
                label = f"{where}, value"
                row = [_number(v, limit, label, i) for i, v in enumerate(values, 1)]
                steps.extend([[v] for v in row] if scalars else [row])
        _check_sizes(len(steps), 1, 1)
        batch.append(steps)
    for b, steps in enumerate(batch[1:], start=2):
        if len(steps) != len(batch[0]):
            raise InputError(
                f"batch element {b} has {len(steps)} steps, element 1 has {len(batch[0])}"
                f" (element {b} starts on line {blocks[b - 1][0][0]}); every element needs the same length"
            )
    seq_len, n_batch = len(batch[0]), len(batch)
    _check_sizes(seq_len, n_batch, width)
    # (B, T, F) as typed -> time-major (T, B, F)
    x = torch.tensor(batch, dtype=torch.float64).transpose(0, 1).to(dtype).contiguous()
    source = f"typed, {_plural(seq_len, 'step')}" + (f" × {n_batch} batch elements" if n_batch > 1 else "")
    return SequenceInput(x, _time_labels(seq_len), source)


def signal(kind, seq_len, *, batch_size=1, input_size=1, period=16.0, amplitude=1.0, noise=0.0,
           phase=0.0, seed=0, dtype=torch.float32) -> SequenceInput:
    """A synthetic signal; batch row b, feature k is shifted by (b·input_size + k)/(batch·input_size) period.

    sine/square/sawtooth swing between ±amplitude; impulse is amplitude once per period (at t=0 for row 0);
    step is 0, then amplitude from t = period on (row 0, phase 0); random_walk sums N(0, amplitude²) steps.
    """
    if kind not in SIGNAL_KINDS:
        raise InputError(f'unknown signal kind "{kind}": choose one of {", ".join(SIGNAL_KINDS)}')
    _check_sizes(seq_len, batch_size, input_size)
    _check_dtype(dtype)
    period = _check_real("period", period, minimum=0, strict=True)
    amplitude, phase = _check_real("amplitude", amplitude), _check_real("phase", phase)
    noise = _check_real("noise", noise, minimum=0)
    gen, shape = _generator(seed), (seq_len, batch_size, input_size)
    row = torch.arange(batch_size * input_size, dtype=torch.float64).reshape(1, batch_size, input_size)
    shift = phase / (2 * math.pi) + row / (batch_size * input_size)  # (1, B, F), in periods
    t = torch.arange(seq_len, dtype=torch.float64)[:, None, None]  # (T, 1, 1)
    u = t / period + shift  # position in periods
    if kind == "sine":
        y = torch.sin(2 * math.pi * u)
    elif kind == "square":
        y = torch.where(u % 1 < 0.5, 1.0, -1.0)
    elif kind == "sawtooth":
        y = 2 * (u % 1) - 1
    elif kind == "impulse":  # a period boundary lies in (t-1, t]; u(t-1) computed alike, so no rounding drift
        y = (torch.floor(u) != torch.floor((t - 1) / period + shift)).double()
    elif kind == "step":
        y = (u >= 1).double()
    else:
        y = torch.randn(shape, generator=gen, dtype=torch.float64).cumsum(0)
    y = amplitude * y
    if noise:
        y = y + noise * torch.randn(shape, generator=gen, dtype=torch.float64)
    x = y.to(dtype)
    if not torch.isfinite(x).all():
        raise InputError(f"the signal overflows {dtype}: lower the amplitude or the noise")
    source = f"{kind}, period {period:g}" if kind != "random_walk" else f"random walk, seed {seed}"
    return SequenceInput(x, _time_labels(seq_len), source + (f", noise {noise:g}" if noise else ""))


def text_to_onehot(text: str, vocab: str | Sequence[str] | None = None, *,
                   dtype=torch.float32) -> SequenceInput:
    """Characters one-hot over `vocab` (default: the text's sorted characters); x is (T, 1, V)."""
    _check_dtype(dtype)
    if not text:
        raise InputError("empty input: type at least one character")
    chars = sorted(set(text)) if vocab is None else list(vocab)
    single = all(isinstance(c, str) and len(c) == 1 for c in chars)
    if not (chars and single and len(set(chars)) == len(chars)):
        raise InputError(f"vocab must be distinct single characters, got {_clip(repr(vocab), 60)}")
    _check_sizes(len(text), 1, len(chars))
    index = {ch: i for i, ch in enumerate(chars)}
    pos = next((p for p, ch in enumerate(text) if ch not in index), None)
    if pos is not None:
        line, column = text.count("\n", 0, pos) + 1, pos - text.rfind("\n", 0, pos)
        raise InputError(f"character {text[pos]!r} at position {pos + 1} (line {line}, column {column}) "
                         "is not in the vocabulary")
    ids = torch.tensor([index[ch] for ch in text])
    x = torch.nn.functional.one_hot(ids, len(chars)).to(dtype).unsqueeze(1)  # (T, 1, V)
    labels = [_VISIBLE.get(ch, ch if ch.isprintable() else repr(ch)[1:-1]) for ch in text]
    source = f"text, {_plural(len(text), 'character')}, vocabulary of {len(chars)}"
    return SequenceInput(x, labels, source, tuple(chars))


def _decode(data: bytes | str) -> str:
    try:
        text = data if isinstance(data, str) else bytes(data).decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"not a UTF-8 text file (undecodable byte at offset {e.start})") from e
    if "\x00" in text:
        raise InputError("binary data, not a text file")
    return text.removeprefix("\ufeff")  # Excel starts its UTF-8 CSVs with a byte-order mark


def _data_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) of each line holding data, one at a time (a list of a 50 MB file's lines would take
    hundreds of MB): blank lines and "# ..." comments (np.savetxt's header) are skipped."""
    start, number = 0, 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        line, start, number = text[start:end], end + 1, number + 1
        if line.strip() and not line.lstrip().startswith("#"):
            yield number, line


def from_csv(data: bytes | str, *, dtype=torch.float32) -> SequenceInput:
    """A table: rows are timesteps, columns features; a first row with no number in it is a header.

    Read line by line into one preallocated array: memory is the text and the values, whatever the number of lines.
    """
    _check_dtype(dtype)
    limit = torch.finfo(dtype).max
    text = _decode(data).replace("\r\n", "\n").replace("\r", "\n").replace("\u2212", "-")
    first_number, first = next(_data_lines(text), (0, ""))
    if not first:
        raise InputError("empty file: no rows of numbers found")
    sep = next((d for d in ",\t;" if d in first), None)  # None: columns split by whitespace

    def cells(line: str) -> list[str]:
        row = [c.strip() for c in (next(csv.reader([line], delimiter=sep)) if sep else line.split())]
        while row and not row[-1]:  # a trailing delimiter is not an extra column
            row.pop()
        return row

    header_cells = cells(first)
    header = not any(_NUMBER.fullmatch(c) or _NONFINITE.fullmatch(c) for c in header_cells)
    rows = sum(1 for _ in _data_lines(text)) - header
    if header and not rows:
        raise InputError("no data rows after the header")
    _check_sizes(rows, 1, len(header_cells))  # a row per line: refuse a huge file before parsing it
    width, why = (len(header_cells), f"as in the header, row {first_number}") if header else (None, "")
    values: np.ndarray | None = None
    lines = _data_lines(text)
    if header:
        next(lines)
    for k, (n, line) in enumerate(lines):
        row = cells(line)
        if width is None:
            width, why = len(row), f"as in row {n}"
            _check_sizes(rows, 1, width)
        if len(row) != width:
            raise InputError(f"row {n}: expected {_plural(width, 'column')} ({why}), found {len(row)}")
        if values is None:
            values = np.empty((rows, width))
        label = f"row {n}, column"
        values[k] = [_number(c, limit, label, j) for j, c in enumerate(row, start=1)]
    x = torch.from_numpy(values).to(dtype).unsqueeze(1)  # (T, 1, F)
    source = f"CSV, {rows} rows × {_plural(width, 'column')}" + (", header skipped" if header else "")
    return SequenceInput(x, _time_labels(rows), source)


def from_npy(data: bytes, *, dtype=torch.float32) -> SequenceInput:
    """A saved numpy array: (T,) -> (T, 1, 1), (T, F) -> (T, 1, F), (T, B, F) as it is."""
    _check_dtype(dtype)
    data = bytes(data)
    if not data.startswith(b"\x93NUMPY"):
        npz = " (this is an .npz archive: save one array with np.save)" if data.startswith(b"PK") else ""
        raise InputError(f"not a .npy file: it does not start with the \\x93NUMPY signature{npz}")
    # Read the header first: np.load would allocate whatever shape a truncated or forged header claims.
    fp = io.BytesIO(data)
    try:
        major, _ = npy_format.read_magic(fp)
        # Format 3.0 differs from 2.0 only in the header's text encoding.
        read = npy_format.read_array_header_1_0 if major == 1 else npy_format.read_array_header_2_0
        shape, _, np_dtype = read(fp)
    except Exception as e:  # numpy's header parser raises ValueError, SyntaxError, tokenize errors, ...
        raise InputError(f"broken .npy header: {e}") from e
    if np_dtype.hasobject:
        raise InputError("object arrays (pickled Python objects) are not supported: save a numeric array")
    if np_dtype.kind not in "biuf" or np_dtype.names:
        raise InputError(f"dtype {np_dtype} is not supported: save real numbers (float, int or bool)")
    if not 1 <= len(shape) <= 3:
        raise InputError(f"a {len(shape)}-D array (shape {shape}) is not a sequence: "
                         "save (T,), (T, features) or (T, batch, features)")
    if 0 in shape:
        raise InputError(f"empty array (shape {shape})")
    full = shape[:1] + (1,) * (3 - len(shape)) + shape[1:]  # (T, B, F) with B, F filled in as 1
    _check_sizes(*full)
    need, have = math.prod(shape) * np_dtype.itemsize, len(data) - fp.tell()
    if have < need:
        raise InputError(f"truncated .npy file: shape {shape} needs {need} bytes of data, found {have}")
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as e:  # the header was valid, so this is unexpected; still the user's file, not our bug
        raise InputError(f"could not read the .npy file: {e}") from e
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        where = tuple(int(i) for i in np.argwhere(~np.isfinite(arr))[0])
        raise InputError(f"NaN/Inf is not allowed (first at index {where}: {arr[where]})")
    x = torch.from_numpy(np.ascontiguousarray(arr, dtype=np.float64)).to(dtype).reshape(full)
    if not torch.isfinite(x).all():
        raise InputError(f"values too large for {dtype}: the largest magnitude is {np.abs(arr).max():.4g}")
    return SequenceInput(x, _time_labels(full[0]), f"npy, shape {shape}, {np_dtype.name}")


_LOADERS = {".csv": from_csv, ".txt": from_csv, ".npy": from_npy}


def parse_bytes(name: str, data: bytes) -> int:
    """A bound on the memory `load_file` takes for this file, to charge before reading it: the file, its text
    (two copies while line endings are normalised; 4 bytes a character once one is outside Latin-1) for a CSV,
    and the values as float64 and as the tensor (a value needs at least 2 bytes of CSV, 1 of .npy)."""
    if os.path.splitext(name)[1].lower() == ".npy":
        return len(data) + 12 * min(MAX_VALUES, len(data))
    text = 2 * len(data) * (1 if data.isascii() else 4)
    return len(data) + text + 12 * min(MAX_VALUES, len(data) // 2 + 1)


def load_file(name: str, data: bytes, *, dtype=torch.float32) -> SequenceInput:
    """Load an uploaded file by its extension."""
    ext = os.path.splitext(name)[1].lower()
    if ext not in _LOADERS:
        raise InputError(f'unsupported file type "{ext or name}": use one of {", ".join(_LOADERS)}')
    seq = _LOADERS[ext](data, dtype=dtype)
    return dataclasses.replace(seq, source=f"{name}: {seq.source}")


def check_input_size(seq: SequenceInput, input_size: int) -> None:
    """Raise InputError when the input's features per step differ from the model's input_size."""
    if seq.input_size != input_size:
        raise InputError(
            f"input has {_plural(seq.input_size, 'feature')} per step but input_size is {input_size}"
        )
