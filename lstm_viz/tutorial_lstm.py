"""Tutorial-style LSTMs: one nn.Linear per gate on torch.cat((x_t, h_{t−1}), 1), found in a state_dict and converted
exactly to nn.LSTM's layout. No streamlit.

Many tutorials write the cell by hand, e.g. with Linear layers fl, il, ol, Cl of shape (H, I + H):

    combined = torch.cat((x_t, h_{t−1}), 1)                         (B, I + H)
    f = σ(fl(combined)), i = σ(il(combined)), o = σ(ol(combined)), g = tanh(Cl(combined))
    c_t = f ⊙ c_{t−1} + i ⊙ g,   h_t = o ⊙ tanh(c_t)

Each weight W (H, I + H) splits by columns into its input part W[:, :I] and its recurrent part W[:, I:]; nn.LSTM
stacks the gates' parts by rows in the order i, f, g, o, and adds two biases where the tutorial has one:

    weight_ih_l0 = [W_i[:, :I]; W_f[:, :I]; W_g[:, :I]; W_o[:, :I]]      (4H, I)
    weight_hh_l0 = [W_i[:, I:]; W_f[:, I:]; W_g[:, I:]; W_o[:, I:]]      (4H, H)
    bias_ih_l0 = [b_i; b_f; b_g; b_o],  bias_hh_l0 = 0                  (4H,)

The columns are taken in the tutorial's order, x then h: a class that concatenates (h, x) has weights of the same
shapes, which cannot tell the two apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .config import GATE_ORDER, LSTMConfig
from .weights_error import WeightsError

TUTORIAL_ORDER = ("f", "i", "o", "g")  # the order tutorials define them in: fl, il, ol, Cl
TUTORIAL_NAMES = {"f": "fl", "i": "il", "o": "ol", "g": "Cl"}  # the names of the classic tutorial's class
GATE_WORDS = {"i": "input", "f": "forget", "g": "candidate", "o": "output"}

# How tutorials name each gate's Linear (compared case-insensitively): a token in one of these forms. The forms and
# token kinds make families (fl/il/ol/Cl; forget/input/output/cell; W_f/W_i/W_o/W_c; f_gate/…): an LSTM is the four
# gates of one family under one module prefix.
_TOKENS = {
    "letter": {"i": ("i",), "f": ("f",), "g": ("c", "g"), "o": ("o",)},
    "word": {"i": ("input", "in"), "f": ("forget",), "g": ("cell", "candidate", "cand"), "o": ("output", "out")},
}
_FORMS = ("{}", "{}l", "{}_gate", "{}gate", "gate_{}", "w_{}", "w{}", "{}_linear", "linear_{}", "{}_layer")
_SHORT_WORDS = {"in", "out"}  # too common alone ("out" is often a model's head): only as "in_gate", "outgate", …


def _spellings() -> dict[str, tuple[str, str]]:
    """Lower-case Linear name -> (family, gate)."""
    table: dict[str, tuple[str, str]] = {}
    for form in _FORMS:
        for kind, gates in _TOKENS.items():
            if kind == "word" and form in ("{}l", "w{}"):
                continue  # "forgetl", "wforget": no one writes these
            for gate, tokens in gates.items():
                for token in tokens:
                    if token in _SHORT_WORDS and "gate" not in form:
                        continue
                    name = form.format(token)
                    assert name not in table, name  # each spelling belongs to one family
                    table[name] = (f"{form}:{kind}", gate)
    return table


SPELLINGS = _spellings()
NEAR_MISS_GATES = 3  # a prefix holding this many of one family's four gates is named when no LSTM is found


@dataclass(frozen=True)
class TutorialGates:
    """The four gate Linears of a tutorial-style LSTM as found under one module prefix of a dict."""

    module: str  # the module prefix as in the keys: "" or ending in "." ("model.lstm.")
    names: dict[str, str]  # gate (i, f, g, o) -> its Linear's name as in the keys ("il", "fl", "Cl", "ol")
    weights: dict[str, object]  # gate -> the value under "<name>.weight" (checked by `infer`)
    biases: dict[str, object]  # gate -> the value under "<name>.bias", for the gates whose Linear has one
    clashes: tuple[str, ...] = ()  # names of one family found for the same gate (e.g. both c and g): ambiguous

    def tensors(self) -> dict[str, object]:
        """Every value by its key relative to the module prefix: "fl.weight", "fl.bias", …"""
        out = {f"{self.names[g]}.weight": self.weights[g] for g in GATE_ORDER}
        return out | {f"{self.names[g]}.bias": self.biases[g] for g in GATE_ORDER if g in self.biases}

    def origin(self, location: str) -> TutorialOrigin:
        return TutorialOrigin(location, tuple(self.names[g] for g in GATE_ORDER),
                              tuple(g for g in GATE_ORDER if g in self.biases))


@dataclass(frozen=True)
class TutorialOrigin:
    """Where a loaded model's weights came from: a tutorial-style module at `location`, its Linear names."""

    location: str
    names: tuple[str, str, str, str]  # in nn.LSTM's gate order i, f, g, o
    with_bias: tuple[str, ...]  # the gates whose Linear had a bias

    def name(self, gate: str) -> str:
        return self.names[GATE_ORDER.index(gate)]

    @property
    def caption(self) -> str:
        """Markdown for the app's "Loaded …" caption (the names are of SPELLINGS' characters: safe in code spans)."""
        names = ", ".join(f"`{self.name(g)}`" for g in TUTORIAL_ORDER)
        return f"tutorial-style module ({names}) converted to nn.LSTM's layout: "


def find_gates(items) -> tuple[dict[str, TutorialGates], dict[str, str]]:
    """The tutorial-style LSTMs among one dict's (key, value) items, by module prefix; and, by module prefix, a note
    on each that holds NEAR_MISS_GATES of the four gates but not all (for the message when no LSTM is found)."""
    found: dict[str, dict[str, dict[str, dict[str, dict[str, object]]]]] = {}  # module -> family -> gate -> name
    for key, value in items:
        if not isinstance(key, str) or not key.endswith((".weight", ".bias")):
            continue
        linear, _, part = key.rpartition(".")
        module, dot, name = linear.rpartition(".")
        spelled = name.isascii() and SPELLINGS.get(name.lower())  # ASCII: the names go into Markdown code spans
        if spelled:
            family, gate = spelled
            found.setdefault(module + dot, {}).setdefault(family, {}).setdefault(gate, {}) \
                .setdefault(name, {})[part] = value
    complete, partial = {}, {}
    for module, families in found.items():
        for family, gates in families.items():
            named = {gate: [n for n, parts in names.items() if "weight" in parts] for gate, names in gates.items()}
            named = {gate: names for gate, names in named.items() if names}
            if len(named) == 4:
                names = {g: named[g][0] for g in GATE_ORDER}
                clashes = tuple(n for g in GATE_ORDER for n in named[g] if len(named[g]) > 1)
                complete[module] = TutorialGates(module, names, {g: gates[g][names[g]]["weight"] for g in GATE_ORDER},
                                                 {g: gates[g][names[g]]["bias"] for g in GATE_ORDER
                                                  if "bias" in gates[g][names[g]]}, clashes)
                break  # the first complete family of a module prefix is its LSTM
            if len(named) >= NEAR_MISS_GATES and module not in partial:
                present = ", ".join(f"{named[g][0]}.weight" for g in TUTORIAL_ORDER if g in named)
                missing = "; ".join(f"the {GATE_WORDS[g]} gate's (looked for {_family_names(family, g)})"
                                    for g in TUTORIAL_ORDER if g not in named)
                partial[module] = f"{present} of a tutorial-style LSTM (one Linear per gate) but not {missing}"
    return complete, {module: note for module, note in partial.items() if module not in complete}


def _family_names(family: str, gate: str) -> str:
    """The spellings of `gate` in `family`: "cl.weight or gl.weight, in any letter case"."""
    names = [f"{name}.weight" for name, spelled in SPELLINGS.items() if spelled == (family, gate)]
    return " or ".join(names) + ", in any letter case"


def infer(location: str, gates: TutorialGates) -> LSTMConfig:
    """The nn.LSTM config of these gates, refusing with a WeightsError unless each is a Linear's weight (H, I + H)
    (and bias (H,)) of the same H and I."""
    if gates.clashes:
        raise WeightsError(f"ambiguous tutorial-style LSTM at {location or 'the top level'}: "
                           f"{', '.join(n + '.weight' for n in gates.clashes)} name the same gate")
    for key, value in gates.tensors().items():
        if not isinstance(value, Tensor):
            raise WeightsError(f"{location}{key} is a {type(value).__name__}, expected a tensor")
    first = gates.names[TUTORIAL_ORDER[0]]
    w = gates.weights[TUTORIAL_ORDER[0]]
    if w.dim() != 2 or w.shape[1] <= w.shape[0]:
        raise WeightsError(f"{location}{first}.weight has shape {tuple(w.shape)}: a tutorial-style gate's Linear "
                           "is (hidden_size, input_size + hidden_size), on torch.cat((x_t, h), 1)")
    H, I = w.shape[0], w.shape[1] - w.shape[0]
    for gate in TUTORIAL_ORDER[1:]:
        other = gates.weights[gate]
        if other.shape != w.shape:
            raise WeightsError(f"inconsistent shapes: {location}{gates.names[gate]}.weight is {tuple(other.shape)} "
                               f"but {location}{first}.weight is {tuple(w.shape)}; each gate's Linear should be "
                               f"(hidden_size, input_size + hidden_size) = ({H}, {I} + {H})")
    for gate, b in gates.biases.items():
        if tuple(b.shape) != (H,):
            raise WeightsError(f"wrong shape for {location}{gates.names[gate]}.bias: expected ({H},) "
                               f"(hidden_size), found {tuple(b.shape)}")
    try:
        return LSTMConfig(input_size=I, hidden_size=H, bias=bool(gates.biases))
    except (TypeError, ValueError) as e:
        raise WeightsError(f"the weights under {location!r} do not make a valid LSTM: {e}") from None


def lstm_state_dict(gates: TutorialGates, dtype: torch.dtype) -> dict[str, Tensor]:
    """nn.LSTM's parameters (one layer) equal to these checked gates, in `dtype`: rows i, f, g, o."""
    W = [gates.weights[g].detach().to(dtype) for g in GATE_ORDER]  # each (H, I + H): columns [x_t | h_{t−1}]
    H = W[0].shape[0]
    I = W[0].shape[1] - H  # noqa: E741 (the I of the equations)
    state = {"weight_ih_l0": torch.cat([w[:, :I] for w in W]),  # (4H, I): W x_t, gate by gate
             "weight_hh_l0": torch.cat([w[:, I:] for w in W])}  # (4H, H): W h_{t−1}
    if gates.biases:  # a Linear without a bias adds 0
        b = [gates.biases[g].detach().to(dtype) if g in gates.biases else W[0].new_zeros(H) for g in GATE_ORDER]
        state["bias_ih_l0"] = torch.cat(b)  # (4H,)
        state["bias_hh_l0"] = torch.zeros_like(state["bias_ih_l0"])  # one bias per gate: nn.LSTM's second adds 0
    return state


@dataclass(frozen=True)
class TensorMapping:
    """One tutorial tensor and the rows of nn.LSTM's (4H, ·) tensors it becomes."""

    name: str  # "fl.weight", "fl.bias"
    shape: tuple[int, ...]  # (H, I + H) or (H,); () for a bias the Linear does not have (it adds 0)
    gate: str  # i, f, g or o
    rows: tuple[int, int]  # [start, stop) in weight_ih_l0, weight_hh_l0, bias_ih_l0, bias_hh_l0
    input_columns: tuple[int, int] | None  # a weight's columns that go to weight_ih_l0 (x_t): (0, I)
    hidden_columns: tuple[int, int] | None  # a weight's columns that go to weight_hh_l0 (h_{t−1}): (I, I + H)


def tensor_map(input_size: int, hidden_size: int, origin: TutorialOrigin | None = None,
               bias: bool = True) -> list[TensorMapping]:
    """Where each tutorial tensor goes in nn.LSTM's layout, gate by gate in nn.LSTM's row order; names from `origin`
    (else the classic tutorial's fl, il, ol, Cl)."""
    I, H = input_size, hidden_size  # noqa: E741
    rows = []
    for k, gate in enumerate(GATE_ORDER):
        name = origin.name(gate) if origin else TUTORIAL_NAMES[gate]
        span = (k * H, (k + 1) * H)
        rows.append(TensorMapping(f"{name}.weight", (H, I + H), gate, span, (0, I), (I, I + H)))
        has_bias = gate in origin.with_bias if origin else bias
        if has_bias or (origin and origin.with_bias):  # a gate without one, beside gates with one: zeros
            rows.append(TensorMapping(f"{name}.bias", (H,) if has_bias else (), gate, span, None, None))
    return rows
