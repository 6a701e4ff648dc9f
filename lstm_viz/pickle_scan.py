"""Bounding what a torch.save file's pickle builds, before torch.load runs it: check_pickles(data).

The pickle's opcodes are walked the way torch's weights-only unpickler runs them, building nothing but an estimate of
each value's bytes; a file whose estimate passes MAX_PICKLE_BYTES, that names a global in REFUSED_GLOBALS, or that would
take a tensor apart element by element is refused with a WeightsError.
"""

from __future__ import annotations

import io
import pickle
from array import array

import torch

from .weights_error import SAVE_HINT, WeightsError

# torch.load runs the pickle in torch's pure-Python unpickler, where a 1–6-byte opcode can make a 30–240-byte object
# and a call on memoized arguments copies them again: an 8 MB stored archive built 0.3–1 GB, a 1 MB one 21 GB. So the
# opcodes are walked first, building nothing, and a file whose estimated objects pass this bound is refused. A
# state_dict estimates at ~4 KB a tensor (~2.3 KB measured), a list of floats at 80 bytes an item (~40 measured);
# see _Walk for the cost model.
MAX_PICKLE_BYTES = 64 << 20

# The cost model, in estimated bytes. Measured with torch.load on CPython 3.11 / torch 2.13, per repeated unit of an
# 8 MB pickle: EMPTY_DICT APPEND 76, EMPTY_SET APPEND 239, BININT APPEND 51, a tensor from memoized arguments 581.
PUSH_BYTES = 16  # a value's slot, on the unpickler's stack and then in its container (8 bytes each)
OBJECT_BYTES = 64  # a new int, float, str or bytes (plus its payload), empty list or dict, tuple (plus its items)
SET_BYTES = 240  # an empty set is 216 bytes
ITEM_BYTES = 64  # a dict entry, table growth included
MEMO_BYTES = 128  # a memo entry: its dict entry and int key, ~75 bytes (the scan's own memo costs as much)
MARK_BYTES = 80  # MARK starts a new stack list (56 bytes)
CALL_BYTES = 640  # what REDUCE, NEWOBJ or BUILD makes, besides what it copies: a tensor is ~580 bytes
STORAGE_BYTES = 256  # BINPERSID's storage wrapper; its data is the archive's, bounded by the zip-bomb check
# A call may copy its arguments (OrderedDict(d), set(items), torch.Size(t), a tensor's sizes): it is charged their
# estimate again, times this factor where the copy can be larger (_codecs.encode(text, "latin1", "namereplace") writes
# up to 40 bytes per byte of text, and may be nested; _rebuild_from_type_v2 calls any of them).
COPY_FACTORS = {"_codecs.encode": 48, "torch._tensor._rebuild_from_type_v2": 48}
# Allowed by torch's weights-only unpickler, never written by torch.save for a state_dict of CPU or CUDA tensors, and
# each allocates memory that the file only states the size of (measured: 1.5 GB from files of 41 and 709 bytes).
_DEVICE_COPY = ("it copies a tensor view of any stated size into new memory; torch.save writes it for XLA, MTIA or "
                "MAIA tensors only: move them to the CPU before saving")
REFUSED_GLOBALS = {
    "builtins.bytearray": "bytearray(n) fills n bytes; a state_dict holds no bytearray",
    "torch._utils._rebuild_device_tensor_from_cpu_tensor": _DEVICE_COPY,
    "torch._utils._rebuild_device_tensor_from_numpy": _DEVICE_COPY,
}
# Calls that take tensors (or storages) as arguments and keep each one whole, with the argument positions where one may
# be: _WHOLE the argument itself, _TUPLE a tuple of them, _ANY anything (only set as an attribute), _CALL the arguments
# of the call that _rebuild_from_type_v2 makes (item 0 calls them, so they are checked against item 0). Any other call
# on a tensor may iterate it, one Python object per element: set(view) of a 1M-element stride-0 view took +692 MB.
# Left off: _rebuild_nested_tensor (+646 MB measured from a 1M-element sizes view), _rebuild_qtensor's quantizer
# tensors, and the rebuilds that torch.save never passes a tensor (_rebuild_wrapper_subclass, _rebuild_meta_…).
_WHOLE, _TUPLE, _ANY, _CALL = "whole", "tuple", "any", "call"
REBUILD_FROM_TYPE = "torch._tensor._rebuild_from_type_v2"
KEEPS_WHOLE = {
    "torch._utils._rebuild_tensor": {0: _WHOLE},  # the storage
    "torch._utils._rebuild_tensor_v2": {0: _WHOLE},
    "torch._utils._rebuild_tensor_v3": {0: _WHOLE},
    "torch._utils._rebuild_qtensor": {0: _WHOLE},
    "torch._utils._rebuild_parameter": {0: _WHOLE},  # the data
    "torch._utils._rebuild_parameter_with_state": {0: _WHOLE, 3: _ANY},
    "torch.nn.parameter.Parameter": {0: _WHOLE},
    "torch._utils._rebuild_sparse_tensor": {1: _TUPLE},  # (indices, values, size, …)
    REBUILD_FROM_TYPE: {2: _CALL, 3: _ANY},
}
# What a call of these returns is a tensor: the tensor classes (torch.FloatTensor(n) and the like) and rebuilds.
_TENSOR_CLASSES = frozenset({f"{c.__module__}.{c.__name__}" for c in torch._tensor_classes}
                            | {"torch.Tensor", "torch.nn.parameter.Parameter"})
_REBUILDS = ("torch._utils._rebuild_", "torch._tensor._rebuild_")
# The _Walk method that runs each opcode of torch's weights-only unpickler (its whole set; STOP ends the walk).
_STEPS = {
    "NONE": "push_existing", "NEWTRUE": "push_existing", "NEWFALSE": "push_existing", "EMPTY_TUPLE": "push_existing",
    "BININT": "push_new", "BININT1": "push_new", "BININT2": "push_new", "BINFLOAT": "push_new",
    "EMPTY_LIST": "push_new", "EMPTY_DICT": "push_new", "EMPTY_SET": "push_set",
    "BINUNICODE": "push_payload", "SHORT_BINSTRING": "push_payload", "LONG1": "push_payload",
    "GLOBAL": "push_global", "MARK": "mark", "TUPLE": "tuple_mark", "TUPLE1": "tuple1", "TUPLE2": "tuple2",
    "TUPLE3": "tuple3", "APPEND": "append", "APPENDS": "appends", "SETITEM": "setitem", "SETITEMS": "setitems",
    "BINGET": "get", "LONG_BINGET": "get", "BINPUT": "put", "LONG_BINPUT": "put", "BINPERSID": "persistent_id",
    "REDUCE": "reduce", "NEWOBJ": "newobj", "BUILD": "build", "PROTO": "proto",
}
_OP = {name: getattr(pickle, name)[0] for name in (*_STEPS, "STOP")}
# Argument layout of the opcodes torch's weights-only unpickler runs (its whole set): fixed size, or a length prefix.
_FIXED_ARG = {_OP["BININT"]: 4, _OP["BININT1"]: 1, _OP["BININT2"]: 2, _OP["BINFLOAT"]: 8, _OP["BINGET"]: 1,
              _OP["LONG_BINGET"]: 4, _OP["BINPUT"]: 1, _OP["LONG_BINPUT"]: 4, _OP["PROTO"]: 1}
_COUNTED_ARG = {_OP["BINUNICODE"]: 4, _OP["SHORT_BINSTRING"]: 1, _OP["LONG1"]: 1}
# torch.load's own zip reader, bound at import: a torch without it fails here rather than skip the scan.
_ZIP_READER = torch._C.PyTorchFileReader
# The globals torch's weights-only unpickler resolves (any other stops it at the GLOBAL, before any call), and how it
# renames Python 2 names first; bound at import for the same reason.
_TORCH_GLOBALS = (torch._weights_only_unpickler._get_allowed_globals,
                  torch._weights_only_unpickler._get_user_allowed_globals)
_NAME_MAPPING, _IMPORT_MAPPING = torch._utils.NAME_MAPPING, torch._utils.IMPORT_MAPPING


class _Broken(Exception):
    """The pickle breaks at this opcode, so torch.load fails here or earlier: stop walking and let it report."""


class _Truncated(_Broken):
    """The pickle ends inside an opcode's argument: the file was cut short (torch may read a cut GLOBAL as a name)."""


class _Tensors(int):
    """A value's estimate, for a value that is a tensor (or storage) or holds one; a tuple also keeps its items."""

    is_tensor = False
    items: tuple | None = None


def _holding(nbytes: int, is_tensor: bool = False, items: tuple | None = None) -> _Tensors:
    """An estimate marked as a tensor (is_tensor) or as holding one."""
    value = _Tensors(nbytes)
    value.is_tensor, value.items = is_tensor, items
    return value


def _holds(value) -> bool:
    """Whether a stack value is a tensor or holds one."""
    return isinstance(value, _Tensors)


def _makes_tensor(func) -> bool:
    """Whether calling this global returns a tensor."""
    return isinstance(func, str) and (func in _TENSOR_CLASSES or func.startswith(_REBUILDS))


def _fits(item, kind: str | None) -> bool:
    """Whether a tensor-holding argument has the shape that its position in a KEEPS_WHOLE call keeps whole."""
    if kind == _WHOLE:
        return item.is_tensor
    if kind == _TUPLE:
        return item.items is not None and all(x.is_tensor for x in item.items if _holds(x))
    return kind in (_ANY, _CALL)


def _splitter(func, args) -> str | None:
    """The name of the call that would take a tensor in `args` apart, or None when every tensor stays whole."""
    while _holds(args):
        spec = KEEPS_WHOLE.get(func) if isinstance(func, str) else None
        # args.items is None when *args is not a tuple: a tensor there is unpacked element by element
        if spec is None or args.items is None or not all(
                _fits(item, spec.get(i)) for i, item in enumerate(args.items) if _holds(item)):
            return func if isinstance(func, str) else "an object the file built"
        if func != REBUILD_FROM_TYPE or len(args.items) < 3:
            return None
        func, args = args.items[0], args.items[2]  # _rebuild_from_type_v2 calls item 0 on item 2
    return None


def _refuse_split(what: str) -> WeightsError:
    """The error for a file that would take a tensor apart into one Python object per element."""
    return WeightsError(f"refused: this file {what}, which would expand it element by element (one Python object "
                        f"per element, any number of them); a state_dict never does that; {SAVE_HINT}")


def check_pickles(data: bytes) -> None:
    """WeightsError if the pickles torch.load would run build over MAX_PICKLE_BYTES or name a refused global."""
    walk = _Walk()
    try:
        if data.startswith(b"PK\x03\x04"):
            walk.run(_data_pkl(data), 0)
        else:
            pos = 0
            for _ in range(5):  # the legacy format's magic, protocol version, sys info, the object, its storage keys
                pos = walk.run(data, pos)
    except _Truncated:
        raise WeightsError(f"truncated or corrupt torch file ({len(data)} bytes): its pickle ends in the middle of "
                           "an instruction") from None
    except _Broken:
        pass


def _data_pkl(data: bytes) -> bytes:
    """data.pkl as torch.load reads it: with its own zip reader, as Python's may see another file in a crafted zip."""
    try:
        return _ZIP_READER(io.BytesIO(data)).get_record("data.pkl")
    except Exception as e:  # torch.load opens the same bytes the same way, and reports it as corrupt
        raise _Broken from e


def _size(value) -> int:
    """A stack value's estimated bytes: an int already; a global (its dotted name) is a reference to an existing one."""
    return value if isinstance(value, int) else PUSH_BYTES


def _capped(nbytes: int) -> int:
    """An estimate kept just past the bound: enough to refuse, and arithmetic on it stays cheap."""
    return min(nbytes, MAX_PICKLE_BYTES + 1)


def _argument(pkl: bytes, pos: int, op: int) -> tuple[int, int | str | None]:
    """(Position after the argument of `op`, which starts at `pos`; the argument: an int, a global's name or None)."""
    if op in _FIXED_ARG:
        end = pos + _FIXED_ARG[op]
        if end > len(pkl):
            raise _Truncated
        return end, int.from_bytes(pkl[pos:end], "little")  # the memo index for GET and PUT; others are unused
    if op in _COUNTED_ARG:
        start = pos + _COUNTED_ARG[op]
        end = start + int.from_bytes(pkl[pos:start], "little")
        if start > len(pkl) or end > len(pkl):
            raise _Truncated
        return end, end - start  # the payload's length
    if op == _OP["GLOBAL"]:
        mid = pkl.find(b"\n", pos)
        end = pkl.find(b"\n", mid + 1) if mid >= 0 else -1
        if end < 0:  # torch would read the cut name as a global: "collecti" from "collections"
            raise _Truncated
        module, name = pkl[pos:mid].decode("utf-8", "replace"), pkl[mid + 1:end].decode("utf-8", "replace")
        if (module, name) in _NAME_MAPPING:  # Python 2 names, renamed as torch's unpickler does
            module, name = _NAME_MAPPING[module, name]
        else:
            module = _IMPORT_MAPPING.get(module, module)
        return end + 1, f"{module}.{name}"
    return pos, None


class _Walk:
    """Runs pickles the way torch's weights-only unpickler does, but each stack and memo value is only an estimate.

    A value is the estimated bytes of what it holds, items included (so that a copy of it can be charged), or the
    dotted name of a global. `spent` adds up what each opcode would allocate: PUSH_BYTES per value pushed, OBJECT_BYTES
    (or SET_BYTES) plus payload per new object, ITEM_BYTES per dict entry, MEMO_BYTES per memo entry, MARK_BYTES per
    MARK, CALL_BYTES plus the arguments' estimate (times COPY_FACTORS) per call, STORAGE_BYTES per persistent id.
    """

    def __init__(self):
        self.spent = self.objects = 0
        self.stack: list = []  # every frame in one list: MARK only notes where its frame starts (8 bytes, not a list)
        self.marks = array("q")
        self.memo: dict[int, int | str] = {}
        self.steps = {_OP[name]: getattr(self, method) for name, method in _STEPS.items()}

    def run(self, pkl: bytes, pos: int) -> int:
        """Walk one pickle from `pos` through its STOP (WeightsError past the bound); the position after STOP."""
        self.stack, self.marks, self.memo = [], array("q"), {}  # a new unpickler each time, as torch.load makes
        steps, stop = self.steps, _OP["STOP"]
        while pos < len(pkl):
            op = pkl[pos]
            step = steps.get(op)
            if step is None and op != stop:
                raise WeightsError("cannot read this torch file safely (weights_only=True): Unsupported operand "
                                   f"{op}; {SAVE_HINT}")  # torch's own words for it
            pos, arg = _argument(pkl, pos + 1, op)
            if op == stop:
                self.pop()
                return pos
            step(arg)
            if self.spent > MAX_PICKLE_BYTES:
                raise WeightsError(f"refused: this file's pickle would build at least {self.objects:,} Python objects "
                                   f"taking ~{self.spent / 2**20:.0f} MB (estimated from its first {pos:,} of "
                                   f"{len(pkl):,} bytes), far more than a state_dict needs; the limit is "
                                   f"{MAX_PICKLE_BYTES >> 20} MB; {SAVE_HINT}")
        raise _Broken  # no STOP: torch.load reads past the end and fails

    def charge(self, nbytes: int, objects: int = 0) -> None:
        """Count what an opcode would allocate."""
        self.spent += nbytes
        self.objects += objects

    def depth(self) -> int:
        """How many values the current frame (since the last MARK) holds; torch's unpickler sees no others."""
        return len(self.stack) - (self.marks[-1] if self.marks else 0)

    def pop(self):
        """The top value, removed."""
        if self.depth() < 1:
            raise _Broken
        return self.stack.pop()

    def top(self):
        """The top value."""
        if self.depth() < 1:
            raise _Broken
        return self.stack[-1]

    def pop_mark(self) -> list:
        """The values pushed since the last MARK, removed with it."""
        if not self.marks:
            raise _Broken
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def grow(self, nbytes: int, holds: bool = False) -> None:
        """Add items' estimate to the container on top; `holds`: one of them is or holds a tensor."""
        top = self.top()
        nbytes = _capped(_size(top) + nbytes)
        self.stack[-1] = _holding(nbytes, _holds(top) and top.is_tensor) if holds or _holds(top) else nbytes

    def push_existing(self, arg) -> None:
        """None, True, False, (): shared objects, only a slot."""
        self.charge(PUSH_BYTES)
        self.stack.append(0)

    def push_new(self, arg) -> None:
        """An int, a float, an empty list or dict."""
        self.charge(OBJECT_BYTES + PUSH_BYTES, 1)
        self.stack.append(OBJECT_BYTES)

    def push_payload(self, length: int) -> None:
        """A str, bytes or long int: its payload on top of the object."""
        self.charge(OBJECT_BYTES + length + PUSH_BYTES, 1)
        self.stack.append(OBJECT_BYTES + length)

    def push_set(self, arg) -> None:
        """An empty set, far bigger than an empty dict."""
        self.charge(SET_BYTES + PUSH_BYTES, 1)
        self.stack.append(SET_BYTES)

    def push_global(self, name: str) -> None:
        """A module attribute (torch's unpickler refuses all but its allowlist): a slot, and its name for calls."""
        if name in REFUSED_GLOBALS:
            raise WeightsError(f"refused: this file calls {name}, which can take any amount of memory "
                               f"({REFUSED_GLOBALS[name]}); {SAVE_HINT}")
        if not any(name in allowed() for allowed in _TORCH_GLOBALS):
            raise _Broken  # torch.load stops here and names the global (a whole pickled model, os.system, …)
        self.charge(PUSH_BYTES)
        self.stack.append(name)

    def mark(self, arg) -> None:
        """MARK: torch's unpickler saves its stack and starts a new list."""
        self.charge(MARK_BYTES, 1)
        self.marks.append(len(self.stack))

    def tuple_mark(self, arg) -> None:
        """A tuple of everything since MARK (their slots were charged as they were pushed)."""
        self.make_tuple(self.pop_mark())

    def tuple1(self, arg) -> None:
        """TUPLE1: a tuple of the top value."""
        self.make_tuple([self.pop()])

    def tuple2(self, arg) -> None:
        """TUPLE2: a tuple of the top two values."""
        self.make_tuple(self.pop_top(2))

    def tuple3(self, arg) -> None:
        """TUPLE3: a tuple of the top three values."""
        self.make_tuple(self.pop_top(3))

    def pop_top(self, count: int) -> list:
        """The top `count` values, in the order they were pushed, removed."""
        if self.depth() < count:
            raise _Broken
        items = self.stack[-count:]
        del self.stack[-count:]
        return items

    def make_tuple(self, items: list) -> None:
        """Push a tuple of `items` (kept, in order, when one holds a tensor: calls check where it sits)."""
        self.charge(OBJECT_BYTES + PUSH_BYTES, 1)
        nbytes = _capped(OBJECT_BYTES + sum(map(_size, items)))
        self.stack.append(_holding(nbytes, items=tuple(items)) if any(map(_holds, items)) else nbytes)

    def append(self, arg) -> None:
        """APPEND: the item moves into the list."""
        item = self.pop()
        self.grow(_size(item), _holds(item))

    def appends(self, arg) -> None:
        """APPENDS: everything since MARK moves into the list."""
        items = self.pop_mark()
        self.grow(sum(map(_size, items)), any(map(_holds, items)))

    def setitem(self, arg) -> None:
        """SETITEM: one dict entry."""
        value, key = self.pop(), self.pop()
        self.charge(ITEM_BYTES)
        self.grow(_size(key) + _size(value) + ITEM_BYTES, _holds(key) or _holds(value))

    def setitems(self, arg) -> None:
        """SETITEMS: a dict entry per pair since MARK."""
        items = self.pop_mark()
        self.charge(ITEM_BYTES * (len(items) // 2))
        self.grow(sum(map(_size, items)) + ITEM_BYTES * (len(items) // 2), any(map(_holds, items)))

    def get(self, index: int) -> None:
        """BINGET: another reference to a memoized value (a slot; copies of it are charged where they are made)."""
        if index not in self.memo:
            raise _Broken
        self.charge(PUSH_BYTES)
        self.stack.append(self.memo[index])

    def put(self, index: int) -> None:
        """BINPUT: remember the top value."""
        self.charge(MEMO_BYTES, 1)  # its int key is an object too
        self.memo[index] = self.top()

    def persistent_id(self, arg) -> None:
        """BINPERSID: a storage in place of its id tuple; what holds it holds a reference, never a copy."""
        if _holds(self.pop()):  # torch.save names storages by strings and ints; the loader may format or iterate it
            raise _refuse_split("names a storage by a tensor")
        self.charge(STORAGE_BYTES, 1)
        self.stack.append(_holding(PUSH_BYTES, is_tensor=True))  # iterating a storage makes an object per element

    def call(self, func, args) -> int:
        """Charge a call of `func` on `args`, which it may copy; the estimate of its result: what it copied."""
        splitter = _splitter(func, args)
        if splitter:
            raise _refuse_split(f"passes a tensor to {splitter}")
        copied = _capped(_size(args) * COPY_FACTORS.get(func if isinstance(func, str) else "", 1))
        self.charge(CALL_BYTES + copied, 1)
        return _holding(copied, is_tensor=True) if _makes_tensor(func) else copied

    def reduce(self, arg) -> None:
        """REDUCE: func(*args) in place of func."""
        args = self.pop()
        self.stack[-1] = self.call(self.top(), args)

    def newobj(self, arg) -> None:
        """NEWOBJ: cls.__new__(cls, *args) in place of both."""
        args = self.pop()
        self.stack.append(self.call(self.pop(), args))

    def proto(self, arg) -> None:
        """PROTO: nothing to build (torch's unpickler runs any version it meets, warning on all but 2)."""

    def build(self, arg) -> None:
        """BUILD: the object on top takes the state (an OrderedDict copies it into its __dict__)."""
        state = self.pop()
        inst = self.top()
        # A tensor takes its state as set_(*state) and anything else as attributes (dict.update): a tensor as the
        # state is unpacked, and so is one set on an object that is not a tensor (an OrderedDict's __dict__.update)
        if _holds(state) and (state.is_tensor or not (_holds(inst) and inst.is_tensor)):
            raise _refuse_split("sets a tensor as an object's state (BUILD)")
        self.charge(CALL_BYTES + _size(state))
        self.grow(_size(state), _holds(state))
