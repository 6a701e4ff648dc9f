"""Load an LSTM's weights from a torch.save file, safely, into an InstrumentedLSTM.

Files are read with torch.load(weights_only=True) only: a file that needs arbitrary unpickling is refused, never run.
Before it, the archive's declared sizes and the pickle's opcodes are checked, so that a small upload cannot make it
allocate gigabytes.

What lives where: this module holds the public API (load_lstm, list_lstms, find_lstms, describe), reading the file
(with the zip-bomb check) and checking the chosen LSTM's parameters; pickle_scan bounds what the pickle builds, before
torch.load runs it; checkpoint_search finds the LSTMs in the loaded object and chooses one (its docstring describes
where they are looked for and the location format); weights_error holds WeightsError, the one error of all three;
tutorial_lstm recognises and converts a hand-written LSTM of one Linear per gate (fl, il, ol, Cl).
"""

from __future__ import annotations

import io
import os
import pickle
import re
import zipfile
from dataclasses import fields
from pathlib import Path

import torch
from torch import Tensor

from .checkpoint_search import LSTM_KEY, choose, lstm_groups, shown
from .checkpoint_search import MAX_SEARCH_CONTAINERS as MAX_SEARCH_CONTAINERS  # re-exported: callers import them here
from .checkpoint_search import MAX_SEARCH_DEPTH as MAX_SEARCH_DEPTH
from .config import LSTMConfig
from .model import InstrumentedLSTM
from .pickle_scan import check_pickles
from .tutorial_lstm import TutorialGates, TutorialOrigin, infer, lstm_state_dict
from .weights_error import SAVE_HINT, WeightsError

__all__ = ["WeightsError", "describe", "find_lstms", "list_lstms", "load_lstm", "tutorial_origin"]

# torch.save's legacy (non-zip) format starts by pickling this magic number, as a LONG1 opcode.
LEGACY_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
# torch.save stores its zip entries uncompressed, but torch.load also inflates deflated ones: a small upload could
# unpack to gigabytes (a zip bomb). The sizes an archive declares are what torch.load allocates, so check them first.
MAX_UNPACKED_BYTES = 1 << 30
MAX_PACKING_RATIO = 20  # float weights hardly compress (≈ 1.1×); only zeros or repeats pack tighter than this


def find_lstms(obj) -> dict[str, LSTMConfig]:
    """Location -> inferred config of every LSTM in a state_dict or a checkpoint holding any number of them (dicts,
    lists and tuples at any depth; see checkpoint_search's docstring for the location format); WeightsError if none."""
    return {location: _config(location, params) for location, params in lstm_groups(obj).groups.items()}


def list_lstms(source, *, map_location="cpu") -> dict[str, LSTMConfig]:
    """Location -> inferred config for every LSTM in a file (path, bytes or binary file), read as load_lstm reads it."""
    return find_lstms(_torch_load(_read_bytes(source), map_location))


def load_lstm(source, prefix: str | None = None, *, map_location="cpu") -> InstrumentedLSTM:
    """An InstrumentedLSTM (eval mode) with the LSTM weights from a path, bytes or binary file of torch.save output.

    `prefix` picks the LSTM when the file holds several: a location as list_lstms gives it ("net/encoder/rnn."), or
    for short a module prefix ("encoder.rnn", the trailing "." optional) or a container path ("net/encoder") that
    names exactly one of them.

    A tutorial-style LSTM (one nn.Linear per gate on torch.cat((x, h), 1), see tutorial_lstm) loads converted exactly
    to nn.LSTM's layout; `tutorial_origin(model)` then names its Linears."""
    data = _read_bytes(source)
    found = lstm_groups(_torch_load(data, map_location))
    location = choose(found, prefix)
    group = found.groups[location]
    config = _config(location, group)
    if isinstance(group, TutorialGates):
        _check_backed(location, group.tensors(), len(data))  # before the conversion reads them
        dtype = _check_values(location, group.tensors())
        params = lstm_state_dict(group, dtype)
    else:
        _check_backed(location, group, len(data))
        dtype, params = _check(location, group, config), group
    device = params["weight_ih_l0"].device
    model = InstrumentedLSTM(**config.to_dict(), device=device, dtype=dtype)
    model.load_state_dict({name: t.to(device=device, dtype=dtype) for name, t in params.items()})
    if isinstance(group, TutorialGates):
        model.tutorial_origin = group.origin(location)
    return model.eval()


def tutorial_origin(model) -> TutorialOrigin | None:
    """Where a model from load_lstm came from when it was a tutorial-style LSTM (its Linears' names); else None."""
    origin = getattr(model, "tutorial_origin", None)
    return origin if isinstance(origin, TutorialOrigin) else None


def describe(config) -> str:
    """Short constructor-style text, e.g. "nn.LSTM(10, 20, num_layers=2, bidirectional=True)"."""
    c = config if isinstance(config, LSTMConfig) else LSTMConfig.of(config)
    args = [str(c.input_size), str(c.hidden_size)]
    args += [f"{f.name}={getattr(c, f.name)}" for f in fields(c)[2:] if getattr(c, f.name) != f.default]
    return f"nn.LSTM({', '.join(args)})"


# --- reading the file ----------------------------------------------------------------------


def _read_bytes(source) -> bytes:
    """The whole file as bytes, from a path, bytes or a binary file-like object."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        return bytes(source)
    if isinstance(source, (str, os.PathLike)):
        try:
            return Path(source).read_bytes()
        except OSError as e:
            raise WeightsError(f"cannot read {os.fspath(source)!r}: {e.strerror or e}") from e
    if hasattr(source, "read"):
        data = source.read()
        if isinstance(data, str):
            raise WeightsError("the file was opened in text mode; open it in binary mode ('rb')")
        return bytes(data)
    raise TypeError(f"load_lstm expects a path, bytes or a binary file, got {type(source).__name__}")


def _not_torch(data: bytes) -> str | None:
    """Why these bytes cannot be a torch.save file, or None when they may be one."""
    if not data:
        return "the file is empty (0 bytes)"
    if data.startswith(b"PK\x03\x04"):
        entries = _zip_entries(data)
        if entries is None:
            return None  # a broken zip: torch.load reports it as truncated or corrupt
        names = [entry.filename for entry in entries]
        if any(n.endswith("/constants.pkl") for n in names):
            return "a TorchScript archive (torch.jit.save), which can hold code"
        if not any(n.endswith("data.pkl") for n in names):
            return f"a zip archive without data.pkl (holds {', '.join(names[:3]) or 'nothing'})"
        return None
    if LEGACY_MAGIC in data[:32]:
        return None
    if data.startswith(b"\x93NUMPY"):
        return "a NumPy .npy array"
    if data[8:10] == b'{"' and int.from_bytes(data[:8], "little") < len(data):  # u64 header size, JSON header
        return "a safetensors file (read it with safetensors.torch.load_file, then torch.save the state_dict)"
    head = data[:200]
    if head.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the weights themselves; fetch them with `git lfs pull`"
    text = head.decode("utf-8", "replace")
    # One replacement character is allowed: the 200-byte cut may split a multi-byte character.
    if text.count("\ufffd") <= 1 and all(c.isprintable() or c.isspace() for c in text.replace("\ufffd", "")):
        return f"a text file starting {text[:40]!r}"
    return f"unrecognised bytes starting {data[:8]!r}"


def _zip_entries(data: bytes) -> list[zipfile.ZipInfo] | None:
    """The entries of a zip archive (from its central directory, nothing unpacked); None if it is not one."""
    try:
        return zipfile.ZipFile(io.BytesIO(data)).infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return None


def _torch_load(data: bytes, map_location):
    """torch.load with weights_only=True, every failure turned into a WeightsError."""
    reason = _not_torch(data)
    if reason:
        raise WeightsError(f"not a torch file: {reason}; expected the output of torch.save(lstm.state_dict(), path)")
    unpacked = sum(entry.file_size for entry in _zip_entries(data) or [])
    if unpacked > min(MAX_UNPACKED_BYTES, MAX_PACKING_RATIO * len(data)):
        raise WeightsError(f"refused: this {len(data):,}-byte archive unpacks to {unpacked:,} bytes (a zip bomb?); "
                           f"the limits are {MAX_PACKING_RATIO}× the file's size and {MAX_UNPACKED_BYTES:,} bytes. "
                           "torch.save writes its archives uncompressed: re-save it with "
                           "torch.save(lstm.state_dict(), path)")
    check_pickles(data)
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        # torch words a refused global two ways: not on its allowlist, or in a blocked module (os, posix, sys, …)
        needs = re.search(r"GLOBAL (\S+) (?:was not an allowed global|whose module \S+ is blocked)", str(e))
        if needs:  # the weights-only unpickler stopped before calling anything
            raise WeightsError(f"refused: this file needs arbitrary code to load (it calls {needs[1]}), which could "
                               f"run anything; {SAVE_HINT}") from None
        detail = str(e).split("WeightsUnpickler error:")[-1].split("Check the documentation")[0]
        raise WeightsError(f"cannot read this torch file safely (weights_only=True): {' '.join(detail.split())}; "
                           f"{SAVE_HINT}") from None
    except Exception as e:  # zip, storage and pickle errors of every kind: the file is damaged
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"truncated or corrupt torch file ({len(data)} bytes): {first}") from e


def _config(location: str, group) -> LSTMConfig:
    """The config of a group the search found: nn.LSTM parameters or a tutorial-style LSTM's gates."""
    return infer(location, group) if isinstance(group, TutorialGates) else _infer(location, group)


def _infer(location: str, params: dict) -> LSTMConfig:
    """The config these parameter shapes imply; batch_first and dropout are not in the weights: defaults."""
    for name, value in params.items():
        if not isinstance(value, Tensor):
            raise WeightsError(f"{location}{name} is a {type(value).__name__}, expected a tensor")
    for name in ("weight_ih_l0", "weight_hh_l0"):
        if name not in params:
            raise WeightsError(f"missing key {location}{name}: it fixes the LSTM's sizes")
        if params[name].dim() != 2:
            raise WeightsError(f"{location}{name} should be 2-D (4*hidden_size, ·), found shape "
                               f"{tuple(params[name].shape)}")
    gate_rows = params["weight_hh_l0"].shape[0]
    if gate_rows % 4:
        raise WeightsError(f"{location}weight_hh_l0 has {gate_rows} rows, expected 4*hidden_size (gates i, f, g, o)")
    layers = sorted({int(LSTM_KEY.fullmatch(name)["layer"]) for name in params})
    if layers != list(range(len(layers))):  # also stops a forged l999999999 from sizing a huge model
        found = ", ".join(f"l{k}" for k in layers[:6])
        raise WeightsError(f"inconsistent layers under {shown(location)}: found {found}, expected l0 … l{{n-1}} "
                           "without gaps")
    projections = [t for name, t in params.items() if name.startswith("weight_hr") and t.dim() >= 1]
    try:
        return LSTMConfig(
            input_size=params["weight_ih_l0"].shape[1],
            hidden_size=gate_rows // 4,
            num_layers=len(layers),
            bias=any(name.startswith("bias_") for name in params),
            bidirectional=any(name.endswith("_reverse") for name in params),
            proj_size=projections[0].shape[0] if projections else 0,
        )
    except (TypeError, ValueError) as e:
        raise WeightsError(f"the weights under {shown(location)} do not make a valid LSTM: {e}") from None


def _check_backed(location: str, params: dict, file_bytes: int) -> None:
    """Every tensor's data came from the file: a pickle can also call a tensor constructor, e.g. FloatTensor(10**9),
    whose memory is reserved untouched until a check reads it. Then it would cost what its shape says."""
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in params.values()
                if isinstance(t, Tensor) and t.layout == torch.strided}  # _check refuses the other layouts
    if sum(storages.values()) > file_bytes:
        raise WeightsError(f"the tensors under {shown(location)} claim {sum(storages.values()):,} bytes of data but "
                           f"the file holds {file_bytes:,}: they were not saved with torch.save; {SAVE_HINT}")


def _check(location: str, params: dict[str, Tensor], config: LSTMConfig) -> torch.dtype:
    """Raise WeightsError unless `params` are exactly `config`'s finite float parameters; returns their dtype."""
    inferred = f" (inferred {describe(config)} from {location}weight_ih_l0 and {location}weight_hh_l0)"
    expected = {}
    for layer in range(config.num_layers):
        shapes = config.param_shapes(layer)
        for direction in range(config.num_directions):
            for name in config.param_names(layer, direction):
                expected[name] = shapes[name.split("_l")[0]]
    missing = [f"{location}{n} {expected[n]}" for n in expected if n not in params]
    if missing:
        raise WeightsError(f"missing key{'s' * (len(missing) > 1)} {', '.join(missing)}{inferred}")
    extra = sorted(set(params) - set(expected))
    if extra:
        raise WeightsError(f"unexpected LSTM key{'s' * (len(extra) > 1)} "
                           f"{', '.join(location + n for n in extra)}{inferred}")
    for name, shape in expected.items():
        t = params[name]
        if tuple(t.shape) != shape:
            raise WeightsError(f"wrong shape for {location}{name}: expected {shape}, found {tuple(t.shape)}{inferred}")
    return _check_values(location, params)


def _check_values(location: str, params: dict[str, Tensor]) -> torch.dtype:
    """Raise WeightsError unless each tensor (of a checked shape) is dense, finite floating point with all its data;
    returns the dtype they run in."""
    for name, t in params.items():
        if not t.is_floating_point() or t.layout != torch.strided:
            raise WeightsError(f"{location}{name} is a {t.dtype} {t.layout} tensor, expected dense floating point")
        if t.untyped_storage().nbytes() < t.numel() * t.element_size():  # stride-0 views: a tiny file, a huge model
            raise WeightsError(f"{location}{name} claims shape {tuple(t.shape)} but holds only "
                               f"{t.untyped_storage().nbytes()} bytes of data (an expanded or forged tensor)")
        if not torch.isfinite(t).all():
            bad = (~torch.isfinite(t)).sum().item()
            raise WeightsError(f"{location}{name} has {bad} NaN/Inf value{'s' * (bad > 1)} of {t.numel()}")
    # float64 stays float64; float32 and the half types run as float32 (upcasting is exact).
    return torch.float64 if any(t.dtype == torch.float64 for t in params.values()) else torch.float32
