"""Load an LSTM's weights from a torch.save file, safely, into an InstrumentedLSTM.

Files are read with torch.load(weights_only=True) only: a file that needs arbitrary unpickling is refused, never run.
"""

from __future__ import annotations

import io
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import fields
from pathlib import Path

import torch
from torch import Tensor

from .config import LSTMConfig
from .model import InstrumentedLSTM

__all__ = ["WeightsError", "describe", "find_lstms", "list_lstms", "load_lstm"]

# Optional module prefix ending in "." (e.g. "encoder.rnn."), then nn.LSTM's own parameter name.
LSTM_KEY = re.compile(r"(?P<prefix>(?:.*\.)?)(?P<kind>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)"
                      r"_l(?P<layer>\d+)(?P<reverse>_reverse)?")
# Where training scripts usually put the state_dict inside a checkpoint dict.
CHECKPOINT_KEYS = ("state_dict", "model_state_dict", "model")
# torch.save's legacy (non-zip) format starts by pickling this magic number, as a LONG1 opcode.
LEGACY_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
SAVE_HINT = "save the state_dict instead: torch.save(lstm.state_dict(), path)"
# torch.save stores its zip entries uncompressed, but torch.load also inflates deflated ones: a small upload could
# unpack to gigabytes (a zip bomb). The sizes an archive declares are what torch.load allocates, so check them first.
MAX_UNPACKED_BYTES = 1 << 30
MAX_PACKING_RATIO = 20  # float weights hardly compress (≈ 1.1×); only zeros or repeats pack tighter than this


class WeightsError(ValueError):
    """A weights file we cannot use; the message says why and what was expected."""


def find_lstms(state_dict) -> dict[str, LSTMConfig]:
    """Prefix ("" when bare) -> inferred config of every LSTM in a state_dict or checkpoint; WeightsError if none."""
    groups = _lstm_groups(_unwrap(state_dict))
    return {prefix: _infer(prefix, params) for prefix, params in groups.items()}


def list_lstms(source, *, map_location="cpu") -> dict[str, LSTMConfig]:
    """Prefix -> inferred config for every LSTM in a file (path, bytes or binary file), read as load_lstm reads it."""
    return find_lstms(_unwrap(_torch_load(_read_bytes(source), map_location)))


def load_lstm(source, prefix: str | None = None, *, map_location="cpu") -> InstrumentedLSTM:
    """An InstrumentedLSTM (eval mode) with the LSTM weights from a path, bytes or binary file of torch.save output."""
    state_dict = _unwrap(_torch_load(_read_bytes(source), map_location))
    groups = _lstm_groups(state_dict)
    if prefix is None:
        if len(groups) > 1:
            listed = ", ".join(repr(p) for p in groups)
            raise WeightsError(f"found {len(groups)} LSTMs; choose one with prefix=: {listed}")
        prefix = next(iter(groups))
    elif prefix and not prefix.endswith("."):
        prefix += "."  # accept "encoder.rnn" for "encoder.rnn."
    if prefix not in groups:
        raise WeightsError(f"no LSTM at prefix {prefix!r}; found: {', '.join(repr(p) for p in groups)}")
    params = groups[prefix]
    config = _infer(prefix, params)
    dtype = _check(prefix, params, config)
    device = params["weight_ih_l0"].device
    model = InstrumentedLSTM(**config.to_dict(), device=device, dtype=dtype)
    model.load_state_dict({name: t.to(device=device, dtype=dtype) for name, t in params.items()})
    return model.eval()


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
    try:
        return torch.load(io.BytesIO(data), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        needs = re.search(r"GLOBAL (\S+) was not an allowed global", str(e))
        if needs:  # the weights-only unpickler stopped before calling anything
            raise WeightsError(f"refused: this file needs arbitrary code to load (it calls {needs[1]}), which could "
                               f"run anything; {SAVE_HINT}") from None
        detail = str(e).split("WeightsUnpickler error:")[-1].split("Check the documentation")[0]
        raise WeightsError(f"cannot read this torch file safely (weights_only=True): {' '.join(detail.split())}; "
                           f"{SAVE_HINT}") from None
    except Exception as e:  # zip, storage and pickle errors of every kind: the file is damaged
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise WeightsError(f"truncated or corrupt torch file ({len(data)} bytes): {first}") from e


# --- finding and checking the LSTM ---------------------------------------------------------


def _unwrap(obj) -> Mapping:
    """The state_dict itself, also when saved inside a checkpoint dict like {"state_dict": sd, "epoch": 3}."""
    if not isinstance(obj, Mapping):
        raise WeightsError(f"expected a state_dict (a dict of tensors), found a {type(obj).__name__}; {SAVE_HINT}")
    if not _lstm_groups(obj, strict=False):
        for key in CHECKPOINT_KEYS:
            if isinstance(obj.get(key), Mapping):
                return obj[key]
    return obj


def _lstm_groups(state_dict: Mapping, strict: bool = True) -> dict[str, dict[str, Tensor]]:
    """Prefix -> {nn.LSTM parameter name: value} for each LSTM; GRUs and RNNs, which share the names, are left out."""
    groups: dict[str, dict] = {}
    for key, value in state_dict.items():
        m = LSTM_KEY.fullmatch(key) if isinstance(key, str) else None
        if m:
            groups.setdefault(m["prefix"], {})[key[len(m["prefix"]):]] = value
    others = {p: kind for p, params in groups.items() if (kind := _other_rnn(params))}
    lstms = {p: params for p, params in groups.items() if p not in others}
    if strict and not lstms:
        keys = [k for k in state_dict if isinstance(k, str)]
        found = ", ".join(repr(k) for k in keys[:5]) + (f" … ({len(keys)} keys)" if len(keys) > 5 else "")
        also = "".join(f"; {repr(p) if p else 'the top level'} holds an nn.{kind}, not an LSTM"
                       for p, kind in others.items())
        raise WeightsError("no LSTM weights found: expected keys like weight_ih_l0, weight_hh_l0, bias_ih_l0 "
                           f"(bare or under a prefix like 'lstm.'), found e.g. {found or 'no keys'}{also}")
    return lstms


def _other_rnn(params: dict) -> str | None:
    """The other kind, GRU or RNN, when weight_hh has 3H or H rows and there is no projection; else None."""
    w = params.get("weight_hh_l0")
    if not isinstance(w, Tensor) or w.dim() != 2 or "weight_hr_l0" in params:
        return None
    rows, cols = w.shape
    return None if rows == 4 * cols else {3 * cols: "GRU", cols: "RNN"}.get(rows)


def _infer(prefix: str, params: dict) -> LSTMConfig:
    """The config these parameter shapes imply; batch_first and dropout are not in the weights: defaults."""
    for name, value in params.items():
        if not isinstance(value, Tensor):
            raise WeightsError(f"{prefix}{name} is a {type(value).__name__}, expected a tensor")
    for name in ("weight_ih_l0", "weight_hh_l0"):
        if name not in params:
            raise WeightsError(f"missing key {prefix}{name}: it fixes the LSTM's sizes")
        if params[name].dim() != 2:
            raise WeightsError(f"{prefix}{name} should be 2-D (4*hidden_size, ·), found shape "
                               f"{tuple(params[name].shape)}")
    gate_rows = params["weight_hh_l0"].shape[0]
    if gate_rows % 4:
        raise WeightsError(f"{prefix}weight_hh_l0 has {gate_rows} rows, expected 4*hidden_size (gates i, f, g, o)")
    layers = sorted({int(LSTM_KEY.fullmatch(name)["layer"]) for name in params})
    if layers != list(range(len(layers))):  # also stops a forged l999999999 from sizing a huge model
        found = ", ".join(f"l{k}" for k in layers[:6])
        raise WeightsError(f"inconsistent layers under {prefix!r}: found {found}, expected l0 … l{{n-1}} without gaps")
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
        raise WeightsError(f"the weights under {prefix!r} do not make a valid LSTM: {e}") from None


def _check(prefix: str, params: dict[str, Tensor], config: LSTMConfig) -> torch.dtype:
    """Raise WeightsError unless `params` are exactly `config`'s finite float parameters; returns their dtype."""
    inferred = f" (inferred {describe(config)} from {prefix}weight_ih_l0 and {prefix}weight_hh_l0)"
    expected = {}
    for layer in range(config.num_layers):
        shapes = config.param_shapes(layer)
        for direction in range(config.num_directions):
            for name in config.param_names(layer, direction):
                expected[name] = shapes[name.split("_l")[0]]
    missing = [f"{prefix}{n} {expected[n]}" for n in expected if n not in params]
    if missing:
        raise WeightsError(f"missing key{'s' * (len(missing) > 1)} {', '.join(missing)}{inferred}")
    extra = sorted(set(params) - set(expected))
    if extra:
        raise WeightsError(f"unexpected LSTM key{'s' * (len(extra) > 1)} "
                           f"{', '.join(prefix + n for n in extra)}{inferred}")
    for name, shape in expected.items():
        t = params[name]
        if tuple(t.shape) != shape:
            raise WeightsError(f"wrong shape for {prefix}{name}: expected {shape}, found {tuple(t.shape)}{inferred}")
        if not t.is_floating_point() or t.layout != torch.strided:
            raise WeightsError(f"{prefix}{name} is a {t.dtype} {t.layout} tensor, expected dense floating point")
        if t.untyped_storage().nbytes() < t.numel() * t.element_size():  # stride-0 views: a tiny file, a huge model
            raise WeightsError(f"{prefix}{name} claims shape {shape} but holds only "
                               f"{t.untyped_storage().nbytes()} bytes of data (an expanded or forged tensor)")
        if not torch.isfinite(t).all():
            bad = (~torch.isfinite(t)).sum().item()
            raise WeightsError(f"{prefix}{name} has {bad} NaN/Inf value{'s' * (bad > 1)} of {t.numel()}")
    # float64 stays float64; float32 and the half types run as float32 (upcasting is exact).
    return torch.float64 if any(t.dtype == torch.float64 for t in params.values()) else torch.float32
