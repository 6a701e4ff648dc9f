"""Trace: everything an LSTM computed on one input, time-major and indexed by input position."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from .config import GATE_ORDER, LSTMConfig

GATES = ("f", "i", "o", "g")
STATES = ("c", "h")
MEMO_ENTRIES = 64  # derived values kept per trace: what a user revisits, bounded however long they browse


@dataclass
class Trace:
    """Gates and states of every layer, direction, step and batch element.

    f, i, g, o, c: (num_layers, num_directions, seq_len, batch, hidden_size)
    h:             (num_layers, num_directions, seq_len, batch, proj_size or hidden_size)
    The reverse direction's step for input t is stored at t. Unbatched input has batch 1. A PackedSequence is
    stored padded: sequence b's steps are 0 … lengths[b] − 1, NaN after, and `output` is packed.
    """

    config: LSTMConfig
    output: Tensor  # as the forward returns it
    h_n: Tensor
    c_n: Tensor
    i: Tensor
    f: Tensor
    g: Tensor
    o: Tensor
    c: Tensor
    h: Tensor
    h0: Tensor  # (L, D, B, H_r): initial states, to recompute step 0
    c0: Tensor  # (L, D, B, H)
    layer_inputs: list[Tensor]  # per layer, (T, B, I_k): what fed it (after inter-layer dropout)
    weights: dict[str, Tensor]  # the state_dict it ran with (nn.LSTM names)
    batched: bool = True
    engine: str = "stepwise"
    lengths: Tensor | None = None  # (B,) steps of each sequence of a packed input (NaN past them); None: all T
    meta: dict = field(default_factory=dict)
    _memo: OrderedDict = field(default_factory=OrderedDict, repr=False, compare=False)

    @property
    def num_layers(self) -> int:
        return self.config.num_layers

    @property
    def num_directions(self) -> int:
        return self.config.num_directions

    @property
    def seq_len(self) -> int:
        return self.f.shape[2]

    @property
    def batch_size(self) -> int:
        return self.f.shape[3]

    @property
    def device(self) -> torch.device:
        return self.f.device

    @property
    def packed(self) -> bool:
        """Whether this traced a PackedSequence (then `output` is one and `lengths` gives each sequence's steps)."""
        return self.lengths is not None

    def steps(self, batch: int) -> int:
        """How many real steps batch element `batch` has: its length when packed, else seq_len."""
        return self.seq_len if self.lengths is None else int(self.lengths[batch])

    def get(self, name: str) -> Tensor:
        """One of f, i, g, o, c, h by name."""
        if name not in GATES + STATES:
            raise KeyError(f"unknown quantity {name!r}; expected one of {GATES + STATES}")
        return getattr(self, name)

    def _previous(self, state: str, layer: int, direction: int, t: int) -> Tensor:
        """h or c as step t saw it: the previous step in this direction's order (t+1 for reverse), or the
        initial state at the sequence start."""
        prev = t + 1 if direction == 1 else t - 1
        if 0 <= prev < self.seq_len:
            return getattr(self, state)[layer, direction, prev]
        return getattr(self, state + "0")[layer, direction]

    def h_prev(self, layer: int, direction: int, t: int) -> Tensor:
        """h_{t−1} as seen by step t."""
        return self._previous("h", layer, direction, t)

    def c_prev(self, layer: int, direction: int, t: int) -> Tensor:
        """c_{t−1} as seen by step t."""
        return self._previous("c", layer, direction, t)

    def gate_parts(self, gate: str, layer: int, direction: int, t: int) -> dict[str, Tensor]:
        """A gate's pre-activation at step t split into W x_t, W h_{t−1} and bias; each (B, H)."""
        sfx = LSTMConfig.suffix(layer, direction)
        H = self.config.hidden_size
        rows = slice(GATE_ORDER.index(gate) * H, (GATE_ORDER.index(gate) + 1) * H)
        w = self.weights
        x_t = self.layer_inputs[layer][t]
        parts = {
            "input": x_t @ w["weight_ih" + sfx][rows].T,
            "recurrent": self.h_prev(layer, direction, t) @ w["weight_hh" + sfx][rows].T,
        }
        if self.config.bias:
            bias = w["bias_ih" + sfx][rows] + w["bias_hh" + sfx][rows]
        else:
            bias = torch.zeros(H, dtype=x_t.dtype, device=x_t.device)
        parts["bias"] = bias.expand_as(parts["input"])
        return parts

    def array(self, name: str) -> np.ndarray:
        """`name` as a CPU numpy array, converted once: figures slice it on every step."""
        return self.memo(name, lambda: getattr(self, name).detach().cpu().numpy())

    def layer_output(self, layer: int) -> np.ndarray:
        """What a layer hands on, (T, B, D·Hr), time-major: both directions' h side by side, as nn.LSTM's
        output holds them."""
        return self.memo(("layer output", layer), lambda: np.concatenate(list(self.array("h")[layer]), axis=-1))

    def memo(self, key, compute):
        """A derived value of this (immutable) trace, computed once while among the MEMO_ENTRIES most recently
        used: e.g. colour ranges and figures a user steps back to."""
        if key in self._memo:
            self._memo.move_to_end(key)
        else:
            self._memo[key] = compute()
            if len(self._memo) > MEMO_ENTRIES:
                self._memo.popitem(last=False)
        return self._memo[key]

    # --- notebook API: one call per figure (Plotly figures; the app uses lstm_viz.figures directly) ---

    def heatmap(self, name: str, t: int, layer: int = 0, direction: int = 0):
        """`name` (f, i, g, o, c or h) at step t: batch × units."""
        from .figures import step_heatmap

        return step_heatmap(self, name, t, layer, direction)

    def over_time(self, name: str | None = None, unit: int | None = None, layer: int = 0, direction: int = 0,
                  batch: int = 0, t: int = 0):
        """With `unit`: that unit's gates and states over time, every layer and direction. Without: all six
        quantities as units × time for one layer (`name` is accepted for symmetry; all six are drawn)."""
        from .figures import over_time_figure, unit_figure

        if unit is not None:
            return unit_figure(self, unit, batch)
        return over_time_figure(self, t, layer, direction, batch)

    def explore(self, layer: int = 0, direction: int = 0, t: int = 0, unit: int = 0, batch: int = 0,
                labels: list[str] | None = None):
        """The time explorer of one layer and direction: shown inline in Jupyter (offline: data and scripts
        inlined), `.save("explorer.html")` for a file."""
        from .explorer.html import Explored, to_html

        return Explored(to_html(self, t=t, layer=layer, direction=direction, unit=unit, batch=batch,
                                labels=labels))

    def saturation(self, low: float = 0.1, high: float = 0.9) -> dict[str, np.ndarray]:
        """Per gate f, i, o: (num_layers, num_directions, hidden_size, 2), the fractions of real steps and batch
        elements below `low` and above `high` (`analysis.saturation`)."""
        from .analysis import saturation

        return saturation(self, low, high)

    def to_npz(self, path_or_file) -> None:
        """Write this trace as one .npz (`export.save_npz`): numpy arrays and JSON, nothing pickled."""
        from .export import save_npz

        save_npz(self, path_or_file)

    @classmethod
    def from_npz(cls, path_or_file) -> Trace:
        """A trace written by `to_npz` (`export.load_npz`: shapes checked before any array is read)."""
        from .export import load_npz

        return load_npz(path_or_file)

    def to_numpy(self) -> dict[str, np.ndarray]:
        """Gates, states and outputs as numpy arrays (on the CPU), for plotting and export."""
        names = GATES + STATES + ("h_n", "c_n", "h0", "c0")
        arrays = {n: self.array(n) for n in names}
        arrays["output"] = self.output.data.detach().cpu().numpy() if self.packed else self.array("output")
        return arrays
