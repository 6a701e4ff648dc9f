"""Crafted torch.save-like files whose pickle builds far more memory than its size: inputs for tests/test_loading.py.

Every pickle here uses only opcodes torch's weights-only unpickler runs, so torch.load(weights_only=True) really
builds what they describe (see `rss_growth`, which measures it in a fresh interpreter).
"""

from __future__ import annotations

import io
import json
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

# torch.save's legacy (non-zip) format: the pickles torch.load reads before the pickled object, then its storage keys.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_SYS_INFO = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
ROOT = Path(__file__).resolve().parents[1]

# Units repeated to build a bomb, each after a list on the stack; one unit leaves the stack as it found it.
UNITS = {
    "dicts": b"}a",  # EMPTY_DICT APPEND: a 64-byte dict per 2 bytes
    "sets": b"\x8fa",  # EMPTY_SET APPEND: a 216-byte set per 2 bytes
    "tuples": b"(}]tq\x00a",  # MARK EMPTY_DICT EMPTY_LIST TUPLE BINPUT APPEND: three objects per 7 bytes
    "ints": b"J%sa",  # BININT APPEND: a fresh int per 6 bytes (formatted with 4 bytes)
    "strings": b"X\x02\x00\x00\x00%sa",  # BINUNICODE of 2 letters APPEND (formatted with the letters)
}


def unit_bytes(kind: str, i: int) -> bytes:
    """The i-th unit of a bomb of `kind` (ints and strings vary, so none is shared)."""
    unit = UNITS[kind]
    if kind == "ints":
        return unit % struct.pack("<i", 1000 + i)
    if kind == "strings":
        return unit % bytes([65 + i % 26, 65 + i // 26 % 26])
    return unit


def object_bomb(kind: str, size: int) -> bytes:
    """A protocol-2 pickle of about `size` bytes: a list filled with fresh objects, one unit of `kind` at a time."""
    count = size // len(unit_bytes(kind, 0))
    if kind in ("ints", "strings"):  # every unit differs
        return b"\x80\x02]" + b"".join(unit_bytes(kind, i) for i in range(count)) + b"."
    return b"\x80\x02]" + UNITS[kind] * count + b"."


def memo_bomb(size: int, objects: bool = True) -> bytes:
    """A list of dicts, each also kept in its own memo entry (LONG_BINPUT with a fresh index); or just the entries."""
    if not objects:  # the list itself, memoized again and again: nothing but memo entries
        return b"\x80\x02]" + b"".join(b"r" + struct.pack("<I", i) for i in range(size // 5)) + b"."
    units = b"".join(b"}r" + struct.pack("<I", i) + b"a" for i in range(size // 7))
    return b"\x80\x02]" + units + b"."


def mark_bomb(size: int) -> bytes:
    """MARK after MARK, never closed: each saves torch's unpickler's stack and starts a new list (64 bytes a byte)."""
    return b"\x80\x02" + b"(" * size + b"N."


def copy_bomb(size: int, keys: int = 2000) -> bytes:
    """One dict of `keys` entries kept in the memo, then copied again and again: OrderedDict(that dict), appended."""
    items = b"".join(b"X" + struct.pack("<I", 8) + f"k{i:07d}".encode() + b"N" for i in range(keys))
    # OrderedDict(d), with OrderedDict and d built in place (torch runs no POP) and kept as memo 0 and 1
    first = b"ccollections\nOrderedDict\nq\x00}q\x01(" + items + b"u\x85Ra"
    again = b"h\x00h\x01\x85Ra"  # BINGET OrderedDict, BINGET d, TUPLE1, REDUCE, APPEND: a copy of d per 8 bytes
    start = b"\x80\x02]" + first
    return start + again * max(0, (size - len(start)) // len(again)) + b"."


def hex_chain(depth: int) -> bytes:
    """{'a': _codecs.encode(...(_codecs.encode('ab', 'latin1'), 'hex')..., 'hex')}: 2**(depth+1) bytes, ~14 a level."""
    inner = b"h\x00X\x02\x00\x00\x00abX\x06\x00\x00\x00latin1\x86R"
    for _ in range(depth - 1):
        inner = b"h\x00" + inner + b"X\x03\x00\x00\x00hex\x86R"
    body = b"c_codecs\nencode\nq\x00" + inner + b"X\x03\x00\x00\x00hex\x86R"
    return b"\x80\x02}X\x01\x00\x00\x00a" + body + b"s."


def bytearray_call(n: int) -> bytes:
    """{'a': bytearray(n)}: n zeroed bytes from a 41-byte pickle."""
    return b"\x80\x02}X\x01\x00\x00\x00ac__builtin__\nbytearray\nJ" + struct.pack("<i", n) + b"\x85Rs."


def persistent_storage(numel: int, key: str = "0", dtype: str = "FloatStorage", legacy: bool = False) -> bytes:
    """BINPERSID of a storage as torch.save writes it ('storage', torch.<dtype>, key, 'cpu', numel[, None])."""
    tail = b"N" if legacy else b""
    return (b"(X\x07\x00\x00\x00storagectorch\n" + dtype.encode() + b"\n"
            + _unicode(key) + b"X\x03\x00\x00\x00cpu"
            + b"\x8a" + _long1(numel) + tail + b"tQ")


def tensor_dict(name: str, numel: int, size: int, stride: int = 1, legacy: bool = False) -> bytes:
    """{name: _rebuild_tensor_v2(storage of `numel` floats, 0, (size,), (stride,), False, OrderedDict())}."""
    return (b"\x80\x02}" + _unicode(name) + b"ctorch._utils\n_rebuild_tensor_v2\n("
            + persistent_storage(numel, legacy=legacy) + b"K\x00"
            + b"\x8a" + _long1(size) + b"\x85\x8a" + _long1(stride) + b"\x85\x89"
            + b"ccollections\nOrderedDict\n)RtRs.")


def expanded_to_double(numel: int) -> bytes:
    """{'x': _rebuild_device_tensor_from_cpu_tensor(a stride-0 view of `numel` over one float, float64, 'cpu')}."""
    view = tensor_dict("x", 1, numel, stride=0)[len(b"\x80\x02}X\x01\x00\x00\x00x"):-2]
    return (b"\x80\x02}X\x01\x00\x00\x00xctorch._utils\n_rebuild_device_tensor_from_cpu_tensor\n("
            + view + b"ctorch\nfloat64\nX\x03\x00\x00\x00cpu\x89tRs.")


def split_tensor(func: str, numel: int, how: str = "arg") -> bytes:
    """{'x': func(view)} for a stride-0 view of `numel` over one float (a 4-byte data/0), which func iterates.

    how: "arg" func(view); "in_list" func([view]); "star" func(*view); "build" func() with view as its BUILD state.
    """
    view = tensor_dict("x", 1, numel, stride=0)[len(b"\x80\x02}X\x01\x00\x00\x00x"):-2]
    module, name = func.rsplit(".", 1)
    call = {"arg": view + b"\x85R", "in_list": b"]" + view + b"a\x85R", "star": view + b"R",
            "build": b")R" + view + b"b"}
    return b"\x80\x02}X\x01\x00\x00\x00xc" + f"{module}\n{name}\n".encode() + call[how] + b"s."


def _unicode(text: str) -> bytes:
    """BINUNICODE of `text` (without the BINPUT that pickle.dumps adds)."""
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


def _long1(n: int) -> bytes:
    """LONG1's argument: a length byte, then n in little-endian two's complement."""
    raw = n.to_bytes((n.bit_length() + 8) // 8 or 1, "little", signed=True)
    return bytes([len(raw)]) + raw


def stored_archive(data_pkl: bytes, records: dict[str, bytes] | None = None) -> bytes:
    """A zip laid out like torch.save's (archive/data.pkl, data/<key>, version...), every entry stored uncompressed."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", data_pkl)
        z.writestr("archive/.format_version", "1")
        z.writestr("archive/.storage_alignment", "64")
        z.writestr("archive/byteorder", "little")
        for key, payload in (records or {}).items():
            z.writestr(f"archive/data/{key}", payload)
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


def legacy_file(main_pkl: bytes, keys: tuple[str, ...] = (), storages: bytes = b"", keys_pkl: bytes = b"") -> bytes:
    """torch.save's legacy format: magic, protocol version and sys info pickles, `main_pkl`, the storage keys (or
    `keys_pkl` in their place), storages."""
    head = b"".join(pickle.dumps(x, protocol=2) for x in (LEGACY_MAGIC, 1001, LEGACY_SYS_INFO))
    return head + main_pkl + (keys_pkl or pickle.dumps(list(keys), protocol=2)) + storages


# Growth = peak RSS during the call minus RSS before it. Resetting the peak first (clear_refs "5") keeps an earlier
# peak from hiding the call's; where that is not allowed the earlier peak counts, which can only overstate growth.
MEASURE = """
import io, json, sys
sys.path.insert(0, {root!r})
import torch
import lstm_viz.loading as loading
def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field))
with open({path!r}, "rb") as f:
    data = f.read()
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
before = status("VmRSS:")
try:
    {call}
    outcome = "loaded"
except Exception as e:
    outcome = type(e).__name__ + ": " + str(e)
print(json.dumps([status("VmHWM:") - before, outcome]))
"""
LIST_LSTMS = "loading.list_lstms(data)"
UNGUARDED = "torch.load(io.BytesIO(data), weights_only=True)"


def rss_growth(runs: dict[str, tuple[str, bytes]], tmp_path: Path) -> dict[str, tuple[int, str]]:
    """Name -> (peak RSS growth in bytes, outcome) of each run's call on its `data`, each in a fresh interpreter that
    has imported torch and lstm_viz.loading, all side by side. Linux only: it reads /proc/self/status."""
    procs = {}
    for i, (name, (call, data)) in enumerate(runs.items()):
        path = tmp_path / f"upload{i}.pt"
        path.write_bytes(data)
        code = MEASURE.format(root=str(ROOT), path=str(path), call=call)
        procs[name] = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    results = {}
    for name, proc in procs.items():
        out, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, out
        growth, outcome = json.loads(out.strip().splitlines()[-1])
        results[name] = growth, outcome
    return results
