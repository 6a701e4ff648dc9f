"""Finding the LSTMs in a loaded torch.save object, and choosing one: lstm_groups(obj), choose(found, prefix).

Where an LSTM is found. The loaded object is searched for nn.LSTM parameter groups: in every dict at any depth, its
string keys like weight_ih_l0 (bare or under a module prefix like "encoder.rnn.") are grouped by module prefix, and
so are a tutorial-style LSTM's four gate Linears (fl.weight, il.weight, ol.weight, Cl.weight and the like: see
tutorial_lstm), an LSTM at their module prefix too. Dicts, lists and tuples are searched depth-first, each
container's own LSTMs before those of the containers it holds, in their order. The search looks into containers
nested up to MAX_SEARCH_DEPTH levels below the loaded object and stops after MAX_SEARCH_CONTAINERS containers (a
forged file cannot make it long; the message when nothing is found says so); a container reached twice (a shared
reference, or a cycle) is searched once, at its first path. GRUs and RNNs, whose parameters have the same names, are
left out (and named when nothing else is found, as are three of a tutorial-style LSTM's four gates).

load_lstm's prefix= takes a location, or for short a bare module prefix (the trailing "." optional) or a container
path (the trailing "/" optional) that names exactly one LSTM: prefix="lstm" finds "state_dict/lstm.".

Each LSTM is named by its *location*: the path of containers from the loaded object to the dict that holds it, each
key followed by "/", then the module prefix ("" or ending in "."):

    ""                          a bare state_dict (as before: a top-level location is just the module prefix)
    "lstm."                     {"lstm.weight_ih_l0": ...}
    "state_dict/lstm."          {"state_dict": {"lstm.weight_ih_l0": ...}}
    "net/encoder/rnn."          {"net": {"encoder": {"rnn.weight_ih_l0": ...}}}
    "0/"                        [lstm.state_dict(), ...]: a list's or tuple's items by index
    "model/module.lstm."        a DataParallel model's state_dict under "model"

In a dict key or module prefix, "~" is written "~0" and "/" is written "~1" (as in a JSON pointer, RFC 6901), so that
a location reads back one way. A dict key that is not a string is written as its repr when it is an int, float, bool
or None (Adam's state is keyed by ints: "optimizer/state/0/"), and as <TypeName> otherwise; where two keys of one
dict are written alike, the first one's location is kept.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor

from .tutorial_lstm import TutorialGates, find_gates
from .weights_error import SAVE_HINT, WeightsError

# Optional module prefix ending in "." (e.g. "encoder.rnn."), then nn.LSTM's own parameter name.
LSTM_KEY = re.compile(r"(?P<prefix>(?:.*\.)?)(?P<kind>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)"
                      r"_l(?P<layer>\d+)(?P<reverse>_reverse)?")
_PARAM_NAME = re.compile(LSTM_KEY.pattern[LSTM_KEY.pattern.index("(?P<kind>"):])  # LSTM_KEY without its prefix
# How far the search for LSTMs goes into the loaded object: containers (dicts, lists, tuples) nested this deep, and
# this many in all. A checkpoint nests its state_dict 1–4 deep; Adam's state holds a dict per parameter.
MAX_SEARCH_DEPTH = 16
MAX_SEARCH_CONTAINERS = 100_000


class _Found:
    """What the search for LSTMs saw: the groups it found, and what it looked at (for the message when none is)."""

    def __init__(self):
        # location -> {nn.LSTM parameter name: value}, or a tutorial-style LSTM's gates
        self.groups: dict[str, dict[str, object] | TutorialGates] = {}
        self.others: dict[str, str] = {}  # location -> what it holds: "an nn.GRU, not an LSTM", 3 of 4 gates, …
        self.paths: dict[str, str] = {}  # location (of both) -> its container path ("" or ending in "/")
        self.modules: dict[str, str] = {}  # location (of both) -> its module prefix as in the keys, unescaped
        self.dicts = self.lists = self.keys = self.too_deep = 0
        self.stopped = False  # MAX_SEARCH_CONTAINERS reached
        self.searched: list[str] = []  # the first few container paths
        self.examples: list[str] = []  # the first few keys, as paths

    @property
    def containers(self) -> int:
        return self.dicts + self.lists


_SHOWN = 6  # paths, keys or locations named in a message


def _escaped(key) -> str:
    """A dict key (or module prefix) as written in a location: see the module's docstring."""
    if isinstance(key, str):
        return key.replace("~", "~0").replace("/", "~1")
    if key is None or isinstance(key, (int, float)):
        return repr(key)
    return f"<{type(key).__name__}>"


_LEAVES = (Tensor, str, bytes, int, float, complex, type(None))  # what the search need not ask about Mapping (slow)


def _is_container(obj) -> bool:
    """Whether the search looks inside `obj`: a dict, list or tuple (torch.Size, a tuple of ints, is none)."""
    if isinstance(obj, (dict, list)):
        return True
    if isinstance(obj, tuple):
        return not isinstance(obj, torch.Size)
    return not isinstance(obj, _LEAVES) and isinstance(obj, Mapping)


def lstm_groups(obj) -> _Found:
    """Search `obj` for LSTMs, depth-first (see the module's docstring); WeightsError if there is none."""
    found, seen = _Found(), set()
    stack = [(obj, "", 0)] if _is_container(obj) else []
    while stack:
        container, path, depth = stack.pop()
        if id(container) in seen:
            continue
        if depth > MAX_SEARCH_DEPTH:
            found.too_deep += 1
            continue
        if found.containers >= MAX_SEARCH_CONTAINERS:
            found.stopped = True
            break
        seen.add(id(container))
        if len(found.searched) < _SHOWN:
            found.searched.append(path)
        is_dict = isinstance(container, (dict, Mapping))
        found.dicts += is_dict
        found.lists += not is_dict
        if not container:
            continue
        if is_dict:
            items = list(container.items())
            found.keys += len(items)
            _group(found, path, items)
        else:
            items = enumerate(container)
        children = [(value, f"{path}{_escaped(key)}/", depth + 1) for key, value in items
                    if not isinstance(value, _LEAVES) and _is_container(value)]
        stack.extend(reversed(children))
    if not found.groups:
        raise WeightsError(_none_found(obj, found))
    return found


def _group(found: _Found, path: str, items: list) -> None:
    """Add the LSTMs among one dict's items, which is at `path`, grouped by module prefix."""
    groups: dict[str, dict] = {}
    for key, value in items:
        # LSTM_KEY's prefix is all up to the last ".": a cheap look at the rest first spares it backtracking over
        # each "." of every other key
        m = isinstance(key, str) and _PARAM_NAME.fullmatch(key.rpartition(".")[2]) and LSTM_KEY.fullmatch(key)
        if m:
            groups.setdefault(m["prefix"], {})[key[len(m["prefix"]):]] = value
    for module, params in groups.items():
        location = path + _escaped(module)
        if location in found.paths:
            continue  # its path is another's too, where a dict has keys written alike (0 and "0"): the first is kept
        found.paths[location], found.modules[location] = path, module
        kind = _other_rnn(params)
        if kind:
            found.others[location] = f"an nn.{kind}, not an LSTM"
        else:
            found.groups[location] = params
    tutorials, near_misses = find_gates(items)
    for module, gates in tutorials.items():
        location = path + _escaped(module)
        if location not in found.paths:  # an nn.LSTM at the same location comes first
            found.paths[location], found.modules[location] = path, module
            found.groups[location] = gates
    for module, note in near_misses.items():
        location = path + _escaped(module)
        if location not in found.paths:
            found.paths[location], found.modules[location] = path, module
            found.others[location] = note
    if len(found.examples) < _SHOWN:
        found.examples += [path + _escaped(key) for key, _ in items[:_SHOWN]]
        del found.examples[_SHOWN:]


def shown(location: str, limit: int = 120) -> str:
    """A location for a message: quoted, and cut short when a (forged) key makes it long."""
    return repr(location if len(location) <= limit else location[:limit] + "…")


def _listed(locations, limit: int = 10) -> str:
    """Locations for a message, the first `limit` of them."""
    locations = list(locations)
    text = ", ".join(map(shown, locations[:limit]))
    return text + (f", … ({len(locations)} in all)" if len(locations) > limit else "")


def _place(path: str) -> str:
    """A container path for a message."""
    return shown(path) if path else "the top level"


def _none_found(obj, found: _Found) -> str:
    """The message when the search found no LSTM: what it looked at, and what it expected."""
    if not found.dicts:
        what = type(obj).__name__
        if found.lists:
            items = ", ".join(type(x).__name__ for x in obj[:3]) + (", …" if len(obj) > 3 else "")
            what = (f"{what} of {_count(len(obj), 'item')} ({items or 'empty'}) with no dict in it "
                    f"(searched {_count(found.lists, 'list')}"
                    f"{', the limit' if found.stopped else ''}{_deeper(found)})")
        article = "an" if what[0].lower() in "aeiou" else "a"
        return f"expected a state_dict (a dict of tensors), found {article} {what}; {SAVE_HINT}"
    places = ", ".join(map(_place, found.searched)) + (", …" if found.containers > len(found.searched) else "")
    counts = _count(found.dicts, "dict") + (f" and {_count(found.lists, 'list')}" if found.lists else "")
    if found.keys:
        examples = ", ".join(map(shown, found.examples)) + (" …" if found.keys > len(found.examples) else "")
        keys = f"{_count(found.keys, 'key')}, found e.g. {examples}"
    else:
        keys = "no keys"
    also = "".join(f"; {_place(location)} holds {what}" for location, what in list(found.others.items())[:_SHOWN])
    limits = _deeper(found)
    if found.stopped:
        limits += f"; the search stopped after {MAX_SEARCH_CONTAINERS:,} containers, its limit"
    return ("no LSTM weights found: expected keys like weight_ih_l0, weight_hh_l0, bias_ih_l0 (bare or under a "
            "prefix like 'lstm.', in a dict anywhere in the file), or a tutorial-style LSTM's four gate Linears "
            "(fl.weight, il.weight, ol.weight, Cl.weight); "
            f"searched {counts} ({places}) holding {keys}{also}{limits}")


def _deeper(found: _Found) -> str:
    """The note on containers left out for being too deep, if any."""
    if not found.too_deep:
        return ""
    return (f"; {_count(found.too_deep, 'container')} nested deeper than {MAX_SEARCH_DEPTH} levels "
            f"{'were' if found.too_deep > 1 else 'was'} not searched")


def _count(n: int, noun: str) -> str:
    """"1 dict", "2 dicts", "1,000 keys"."""
    return f"{n:,} {noun}{'s' * (n != 1)}"


def choose(found: _Found, prefix: str | None) -> str:
    """The location of the LSTM that `prefix` names (see load_lstm); WeightsError if it names none or several."""
    locations = list(found.groups)
    if prefix is None:
        if len(locations) > 1:
            raise WeightsError(f"found {len(locations)} LSTMs; choose one with prefix=: {_listed(locations)}")
        return locations[0]
    if prefix in found.groups:
        return prefix
    matches = _named(found, prefix, locations)
    if len(matches) > 1:
        raise WeightsError(f"prefix {shown(prefix)} matches {len(matches)} LSTMs; choose one by its location: "
                           f"{_listed(matches)}")
    if not matches:
        others = "".join(f"; {_place(location)} holds {found.others[location]}"
                         for location in _named(found, prefix, found.others)[:_SHOWN])
        more = "" if not found.stopped else (f" (the search stopped after {MAX_SEARCH_CONTAINERS:,} containers, "
                                             "its limit)")
        raise WeightsError(f"no LSTM at prefix {shown(prefix)}{others}; found: {_listed(locations)}{more}")
    return matches[0]


def _named(found: _Found, prefix: str, locations) -> list[str]:
    """The locations that `prefix` names: itself, or without its trailing ".", a module prefix (with or without its
    trailing "."), or a container path (with or without its trailing "/")."""
    dotted = prefix if not prefix or prefix.endswith(".") else prefix + "."  # "encoder.rnn" for "encoder.rnn."
    slashed = prefix if not prefix or prefix.endswith("/") else prefix + "/"  # "net/encoder" for "net/encoder/"
    return [location for location in locations
            if prefix == location or dotted in (location, found.modules[location]) or slashed == found.paths[location]]


def _other_rnn(params: dict) -> str | None:
    """The other kind, GRU or RNN, when weight_hh has 3H or H rows and there is no projection; else None."""
    w = params.get("weight_hh_l0")
    if not isinstance(w, Tensor) or w.dim() != 2 or "weight_hr_l0" in params:
        return None
    rows, cols = w.shape
    return None if rows == 4 * cols else {3 * cols: "GRU", cols: "RNN"}.get(rows)

