"""Export a Trace, a module's weights or a figure to files other tools read.

The .npz layout written by `save_npz` (format version 1), one array per entry, all in the trace's dtype:

    "f", "i", "g", "o", "c"          (num_layers, num_directions, seq_len, batch, hidden_size)
    "h"                              (num_layers, num_directions, seq_len, batch, proj_size or hidden_size)
    "output", "h_n", "c_n"           as the forward returned them (unbatched input: no batch axis)
    "h0", "c0"                       (num_layers, num_directions, batch, ·)
    "layer_input_<k>"                (seq_len, batch, input size of layer k), for k = 0 .. num_layers - 1
    "weight/<name>"                  each parameter under its nn.LSTM name, e.g. "weight/weight_ih_l0"
    "meta"                           a 0-d str array holding JSON: {"format": "lstm_viz.trace", "version": 1,
                                     "config": LSTMConfig.to_dict(), "batched", "engine", "dtype" (e.g. "float32"),
                                     "weights": the weight names in order, "trace_meta": Trace.meta, "packed"}

A trace of a PackedSequence ("packed": true) also has "lengths" (batch,), "batch_sizes" (seq_len,), "sorted_indices"
and "unsorted_indices" (batch,), all int64; its "output" is the packed data (sum of lengths, ·), and the other
arrays hold NaN past each sequence's length.

numpy has no bfloat16: a bfloat16 trace stores the raw bits of every array as int16 (meta "dtype" says so).
Nothing is pickled, so a file loads with np.load(..., allow_pickle=False).
"""

from __future__ import annotations

import io
import json
import os
import zipfile

import numpy as np
import plotly.io as pio
import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from .config import LSTMConfig
from .trace import Trace

FORMAT = "lstm_viz.trace"
VERSION = 1
QUANTITIES = ("f", "i", "g", "o", "c", "h")
STATE_ARRAYS = QUANTITIES + ("output", "h_n", "c_n", "h0", "c0")
PACKING_ARRAYS = ("lengths", "batch_sizes", "sorted_indices", "unsorted_indices")  # a packed trace's, int64
# A trace file is refused before any array is read when its arrays would take more than this in memory.
LOAD_MAX_BYTES = 4 * 2**30
META_MAX_BYTES = 2**20
# The long CSV spends ~40 bytes of text per value: above this many it is refused (the .npz holds them all).
LONG_CSV_MAX_VALUES = 2_000_000
CSV_BYTES_PER_VALUE = 100
# A figure's HTML: plotly.js (~4.6 MB) plus base64 arrays (~5.4 bytes a value in the spec, again in the page).
FIGURE_MAX_VALUES = 2_000_000
FIGURE_BYTES_PER_VALUE = 24
FIGURE_BASE_BYTES = 16_000_000  # while it is written: the text, its buffer and the copy handed to the download
# Significant digits that make each float format round-trip exactly (max_digits10).
DIGITS = {torch.float16: 5, torch.bfloat16: 4, torch.float32: 9, torch.float64: 17}


def _to_numpy(t: Tensor) -> np.ndarray:
    """A tensor as a contiguous CPU array; bfloat16 as its int16 bits."""
    t = t.detach().cpu().contiguous()  # i, f, g, o are strided views into one gates buffer
    return t.view(torch.int16).numpy() if t.dtype == torch.bfloat16 else t.numpy()


def _to_tensor(a: np.ndarray, dtype: str) -> Tensor:
    """The inverse of `_to_numpy`: a fresh contiguous CPU tensor."""
    t = torch.tensor(a)  # a copy: never aliases the archive's buffer
    return t.view(torch.bfloat16) if dtype == "bfloat16" else t


def save_npz(trace: Trace, path_or_file) -> None:
    """Write `trace` to a path or binary file as one compressed .npz (layout in the module docstring)."""
    meta = {"format": FORMAT, "version": VERSION, "config": trace.config.to_dict(), "batched": trace.batched,
            "engine": trace.engine, "dtype": str(trace.f.dtype).removeprefix("torch."),
            "weights": list(trace.weights), "trace_meta": trace.meta}
    meta["packed"] = trace.packed
    arrays = {name: _to_numpy(getattr(trace, name)) for name in STATE_ARRAYS if name != "output"}
    arrays["output"] = _to_numpy(trace.output.data if trace.packed else trace.output)
    if trace.packed:
        out = trace.output
        sorted_indices = torch.arange(trace.batch_size) if out.sorted_indices is None else out.sorted_indices
        unsorted_indices = torch.arange(trace.batch_size) if out.unsorted_indices is None else out.unsorted_indices
        arrays |= {name: value.cpu().to(torch.int64).numpy() for name, value in (
            ("lengths", trace.lengths), ("batch_sizes", out.batch_sizes), ("sorted_indices", sorted_indices),
            ("unsorted_indices", unsorted_indices))}
    arrays |= {f"layer_input_{k}": _to_numpy(x) for k, x in enumerate(trace.layer_inputs)}
    arrays |= {f"weight/{name}": _to_numpy(w) for name, w in trace.weights.items()}
    arrays["meta"] = np.array(json.dumps(meta))
    if isinstance(path_or_file, (str, os.PathLike)):
        # np.savez_compressed would append ".npz" to a path without it; write exactly where asked.
        with open(path_or_file, "wb") as fh:
            np.savez_compressed(fh, allow_pickle=False, **arrays)
    else:
        np.savez_compressed(path_or_file, allow_pickle=False, **arrays)


def load_npz(path_or_file, max_bytes: int = LOAD_MAX_BYTES) -> Trace:
    """Read a Trace written by `save_npz`; ValueError if the file is not in that layout.

    Every array's shape and dtype are read from its header and checked against the trace's config before any
    data is: a file whose arrays would not fit `max_bytes`, or that declares other shapes (a deflate bomb among
    them), is refused without inflating it. Any failure of reading is a ValueError.
    """
    try:
        return _load_npz(path_or_file, max_bytes)
    except ValueError:
        raise
    except Exception as e:  # zip, npy, JSON (RecursionError) and allocation failures alike: the documented error
        raise ValueError(f"not a readable lstm_viz trace .npz ({type(e).__name__}: {e})") from e


def _load_npz(path_or_file, max_bytes: int) -> Trace:
    try:
        archive = np.load(path_or_file, allow_pickle=False)
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"not an lstm_viz trace .npz (unreadable as .npz: {e})") from e
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError("not an lstm_viz trace .npz (a single .npy array, not an .npz archive)")
    with archive:
        declared = _declared_arrays(archive)
        meta_size = declared.get("meta", ((), np.dtype("U1")))
        if _nbytes(*meta_size) > META_MAX_BYTES:
            raise ValueError("not an lstm_viz trace .npz ('meta' is larger than any trace's)")
        meta = _read_meta(archive)
        dtype = meta["dtype"]
        num_layers = meta["config"]["num_layers"]
        names = [*STATE_ARRAYS, *(f"layer_input_{k}" for k in range(num_layers)),
                 *(f"weight/{w}" for w in meta["weights"])]
        missing = [n for n in names if n not in archive.files]
        if missing:
            raise ValueError(f"lstm_viz trace .npz is missing arrays: {', '.join(missing)}")
        packed = meta.get("packed") is True
        if packed and any(n not in archive.files for n in PACKING_ARRAYS):
            raise ValueError(f"lstm_viz trace .npz of a packed input lacks {', '.join(PACKING_ARRAYS)}")
        _check_declared(declared, names, meta, max_bytes)
        try:
            arrays = {n: _to_tensor(archive[n], dtype) for n in names}
            packing = _read_packing(archive, declared) if packed else None
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise ValueError(f"lstm_viz trace .npz has an unreadable array: {e}") from e
    output = arrays["output"]
    if packing is not None:
        if output.shape[0] != int(packing["lengths"].sum()):
            raise ValueError(f"lstm_viz trace .npz: packed 'output' has {output.shape[0]} rows for "
                             f"{int(packing['lengths'].sum())} steps")
        output = PackedSequence(output, packing["batch_sizes"], packing["sorted_indices"], packing["unsorted_indices"])
    return Trace(
        config=LSTMConfig(**meta["config"]),
        **{n: arrays[n] for n in STATE_ARRAYS if n != "output"}, output=output,
        layer_inputs=[arrays[f"layer_input_{k}"] for k in range(num_layers)],
        weights={w: arrays[f"weight/{w}"] for w in meta["weights"]},
        batched=meta["batched"], engine=meta["engine"], meta=meta.get("trace_meta", {}),
        lengths=None if packing is None else packing["lengths"],
    )



def _read_packing(archive: np.lib.npyio.NpzFile, declared: dict) -> dict[str, Tensor]:
    """A packed trace's lengths and packing, checked to describe one packed batch of its shape."""
    T, B = declared["f"][0][2:4]
    want = {"lengths": (B,), "batch_sizes": (T,), "sorted_indices": (B,), "unsorted_indices": (B,)}
    for name, shape in want.items():
        if declared[name] != (shape, np.dtype("int64")):
            raise ValueError(f"lstm_viz trace .npz: {name!r} is {declared[name]}, expected int64 of shape {shape}")
    packing = {name: torch.tensor(archive[name]) for name in PACKING_ARRAYS}
    lengths, order = packing["lengths"], packing["sorted_indices"]
    if (not ((lengths >= 1) & (lengths <= T)).all() or not torch.equal(order.sort().values, torch.arange(B))
            or (lengths[order].diff() > 0).any()):  # sorted_indices: a permutation taking the longest first
        raise ValueError("lstm_viz trace .npz: its lengths or sequence order do not describe a packed batch")
    if not torch.equal(packing["batch_sizes"], (lengths[None, :] > torch.arange(T)[:, None]).sum(1)):
        raise ValueError("lstm_viz trace .npz: its batch_sizes do not follow from its lengths")
    if not torch.equal(packing["unsorted_indices"], order.argsort()):
        raise ValueError("lstm_viz trace .npz: its unsorted_indices do not invert its sorted_indices")
    return packing


def _declared_arrays(archive: np.lib.npyio.NpzFile) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each member's shape and dtype, from its .npy header alone (no data read)."""
    declared = {}
    for info in archive.zip.infolist():
        with archive.zip.open(info) as member:
            version = np.lib.format.read_magic(member)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(member)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(member)
            else:
                raise ValueError(f"lstm_viz trace .npz member {info.filename!r} has .npy version {version}")
        declared[info.filename.removesuffix(".npy")] = (tuple(shape), dtype)
    return declared


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return int(np.prod(shape, dtype=np.int64)) * dtype.itemsize if shape else dtype.itemsize


def _check_declared(declared: dict, names: list[str], meta: dict, max_bytes: int) -> None:
    """The arrays' declared shapes and dtypes are those of a trace of meta's config, and fit `max_bytes`."""
    cfg = LSTMConfig(**meta["config"])
    want_dtype = np.dtype("int16") if meta["dtype"] == "bfloat16" else np.dtype(meta["dtype"])
    f_shape = declared["f"][0]
    if len(f_shape) != 5 or f_shape[:2] != (cfg.num_layers, cfg.num_directions) or f_shape[4] != cfg.hidden_size:
        raise ValueError(f"lstm_viz trace .npz: 'f' has shape {f_shape}, not (num_layers, num_directions, seq_len, "
                         f"batch, hidden_size) of {cfg.num_layers}, {cfg.num_directions}, ·, ·, {cfg.hidden_size}")
    L, D, T, B, H = f_shape
    Hr = cfg.real_hidden_size
    shapes = {q: (L, D, T, B, H) for q in "figoc"} | {"h": (L, D, T, B, Hr), "h0": (L, D, B, Hr), "c0": (L, D, B, H)}
    shapes |= {f"layer_input_{k}": (T, B, cfg.layer_input_size(k)) for k in range(L)}
    for layer in range(L):
        kinds = cfg.param_shapes(layer)
        for direction in range(D):
            for name in cfg.param_names(layer, direction):
                shapes[f"weight/{name}"] = kinds[name.split("_l")[0]]
    sizes = {"h_n": L * D * B * Hr, "c_n": L * D * B * H}  # their layout varies
    if meta.get("packed") is True:  # the real steps only (their number is checked against the lengths on reading)
        shape = declared["output"][0]
        if len(shape) != 2 or shape[1] != D * Hr or shape[0] > T * B:
            raise ValueError(f"lstm_viz trace .npz: packed 'output' has shape {shape}, expected (≤ {T * B}, {D * Hr})")
    else:
        sizes["output"] = T * B * D * Hr
    total = 0
    for name in names:
        shape, dtype = declared[name]
        if dtype != want_dtype:
            raise ValueError(f"lstm_viz trace .npz: {name!r} is {dtype}, the trace is {meta['dtype']}")
        if name in shapes and shape != shapes[name]:
            raise ValueError(f"lstm_viz trace .npz: {name!r} has shape {shape}, expected {shapes[name]}")
        if name in sizes and int(np.prod(shape, dtype=np.int64)) != sizes[name]:
            raise ValueError(f"lstm_viz trace .npz: {name!r} has shape {shape}: {sizes[name]} values expected")
        total += _nbytes(shape, dtype)
    if total > max_bytes:
        raise ValueError(f"lstm_viz trace .npz holds {total / 2**20:,.0f} MB of arrays, above the "
                         f"{max_bytes / 2**20:,.0f} MB this reads")


def _read_meta(archive: np.lib.npyio.NpzFile) -> dict:
    """The archive's parsed "meta" entry, checked to be ours and of a version we read."""
    if "meta" not in archive.files:
        raise ValueError("not an lstm_viz trace .npz (no 'meta' entry)")
    try:
        meta = json.loads(str(archive["meta"][()]))
    except (ValueError, TypeError, RecursionError) as e:  # also an object array, which allow_pickle refuses
        raise ValueError(f"not an lstm_viz trace .npz ('meta' is not a JSON string: {e})") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ValueError(f"not an lstm_viz trace .npz ('meta' lacks format {FORMAT!r})")
    if meta.get("version") != VERSION:
        raise ValueError(f"unsupported lstm_viz trace .npz version {meta.get('version')!r}; this reads {VERSION}")
    keys = {"config", "batched", "engine", "dtype", "weights"}
    if not keys <= meta.keys():
        raise ValueError(f"lstm_viz trace .npz 'meta' is missing {', '.join(sorted(keys - meta.keys()))}")
    if not isinstance(meta["weights"], list) or not all(isinstance(w, str) for w in meta["weights"]):
        raise ValueError("lstm_viz trace .npz 'meta' weights is not a list of names")
    try:
        LSTMConfig(**meta["config"])
    except (TypeError, ValueError) as e:
        raise ValueError(f"lstm_viz trace .npz has an invalid config: {e}") from e
    return meta


def long_csv_values(trace: Trace) -> int:
    """Rows `to_long_csv` would write: every value of f, i, g, o, c and h."""
    return sum(trace.get(q).numel() for q in QUANTITIES)


def check_long_csv(trace: Trace, max_values: int = LONG_CSV_MAX_VALUES) -> None:
    """ValueError, offering the .npz, when the long CSV of `trace` would be too big to build on a shared server."""
    rows = long_csv_values(trace)
    if rows > max_values:
        raise ValueError(f"the long CSV of this trace would have {rows:,} rows (about {rows * 40 / 1e6:,.0f} MB); "
                         f"the limit here is {max_values:,}: download the .npz instead (every value, exact, smaller), "
                         "or lower seq_len or batch_size")


def to_long_csv(trace: Trace, max_values: int = LONG_CSV_MAX_VALUES) -> bytes:
    """Every value of f, i, g, o, c, h as CSV rows `layer,direction,t,batch,unit,quantity,value` (UTF-8), written
    one step at a time into one buffer; refused (ValueError) above `max_values` rows."""
    check_long_csv(trace, max_values)
    digits = DIGITS.get(trace.f.dtype, 17)
    out = io.BytesIO()
    out.write(b"layer,direction,t,batch,unit,quantity,value\n")
    for q in QUANTITIES:
        values = trace.get(q).detach().cpu()
        for index in np.ndindex(*values.shape[:3]):  # (layer, direction, t): one block of batch × units
            prefix = ",".join(map(str, index))
            # tolist() gives exact Python floats (also for bfloat16), in C order over (batch, unit).
            block = values[index].tolist()
            out.write("".join(f"{prefix},{b},{u},{q},{v:.{digits}g}\n" for b, row in enumerate(block)
                              for u, v in enumerate(row)).encode())
    return out.getvalue()


def state_dict_bytes(module: nn.Module) -> bytes:
    """`torch.save` of the module's state_dict, on the CPU: loads into a plain torch.nn.LSTM."""
    # clone: a view would save its whole underlying storage; cpu: loads without a GPU.
    state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def check_figure_values(values: int, max_values: int = FIGURE_MAX_VALUES) -> None:
    """ValueError when a figure of `values` numbers is too big to write as one HTML page here."""
    if values > max_values:
        raise ValueError(f"this figure would hold {values:,} values; the limit for an HTML figure here is "
                         f"{max_values:,}: lower batch_size or hidden_size, or download the .npz")


def figure_html_bytes(values: int) -> int:
    """Memory while `figure_html` writes a figure of `values` numbers: plotly.js and the arrays, twice."""
    return FIGURE_BASE_BYTES + FIGURE_BYTES_PER_VALUE * values


def figure_html(fig) -> str:
    """A Plotly figure (go.Figure or dict spec) as a standalone HTML page with plotly.js inlined."""
    return pio.to_html(fig, include_plotlyjs=True, full_html=True)
