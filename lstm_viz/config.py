"""LSTMConfig: the hyper-parameters of an nn.LSTM, validated exactly as nn.LSTM validates them."""

from __future__ import annotations

import numbers
import operator
from dataclasses import asdict, dataclass

# PyTorch stacks the four gates' rows in this order inside weight_ih_l{k} / weight_hh_l{k} (shape (4H, ·)).
GATE_ORDER = ("i", "f", "g", "o")


@dataclass(frozen=True)
class LSTMConfig:
    """Everything that fixes an LSTM's parameter shapes and forward semantics."""

    input_size: int
    hidden_size: int
    num_layers: int = 1
    bias: bool = True
    batch_first: bool = False
    dropout: float = 0.0
    bidirectional: bool = False
    proj_size: int = 0

    def __post_init__(self) -> None:
        # Same checks, error types and messages as torch.nn.RNNBase.__init__.
        d = self.dropout
        if not isinstance(d, numbers.Number) or isinstance(d, bool) or not 0 <= d <= 1:
            raise ValueError(
                "dropout should be a number in range [0, 1] representing the probability of an element "
                f"being zeroed, got {d!r}"
            )
        for name in ("bias", "batch_first", "bidirectional"):
            if not isinstance(getattr(self, name), bool):
                raise TypeError(f"{name} should be of type bool, got: {type(getattr(self, name)).__name__}")
        for name in ("input_size", "hidden_size", "num_layers", "proj_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool):
                raise TypeError(f"{name} should be of type int, got: {type(value).__name__}")
        for name in ("input_size", "hidden_size", "num_layers"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be greater than zero, got {getattr(self, name)}")
        if self.proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable projections")
        if self.proj_size >= self.hidden_size:
            raise ValueError(
                f"proj_size has to be smaller than hidden_size (proj_size={self.proj_size}, "
                f"hidden_size={self.hidden_size})"
            )

    @property
    def num_directions(self) -> int:
        return 2 if self.bidirectional else 1

    @property
    def real_hidden_size(self) -> int:
        """Size of h: proj_size when projecting, else hidden_size."""
        return self.proj_size or self.hidden_size

    def layer_input_size(self, layer: int) -> int:
        """Features fed to `layer`: the input for layer 0, the previous layer's (both directions') h after."""
        return self.input_size if layer == 0 else self.real_hidden_size * self.num_directions

    @staticmethod
    def suffix(layer: int, direction: int) -> str:
        """nn.LSTM's parameter-name suffix: "_l1", or "_l1_reverse" for the reverse direction."""
        return f"_l{layer}" + ("_reverse" if direction == 1 else "")

    def param_names(self, layer: int, direction: int) -> list[str]:
        """nn.LSTM's parameter names for one layer and direction, in nn.LSTM's order."""
        sfx = self.suffix(layer, direction)
        names = [f"weight_ih{sfx}", f"weight_hh{sfx}"]
        if self.bias:
            names += [f"bias_ih{sfx}", f"bias_hh{sfx}"]
        if self.proj_size:
            names += [f"weight_hr{sfx}"]
        return names

    def param_shapes(self, layer: int) -> dict[str, tuple[int, ...]]:
        """Shape of each parameter kind in `layer` (same for both directions)."""
        gates, hidden = 4 * self.hidden_size, self.hidden_size
        shapes = {
            "weight_ih": (gates, self.layer_input_size(layer)),
            "weight_hh": (gates, self.real_hidden_size),
        }
        if self.bias:
            shapes |= {"bias_ih": (gates,), "bias_hh": (gates,)}
        if self.proj_size:
            shapes["weight_hr"] = (self.proj_size, hidden)
        return shapes

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def of(cls, module) -> LSTMConfig:
        """The config of an nn.LSTM or InstrumentedLSTM as it is now. nn.LSTM keeps its arguments as given (e.g.
        bidirectional=1, num_layers=np.int32(2)) and reads them by truth value or as integers: so does this."""
        values = {k: getattr(module, k) for k in cls.__dataclass_fields__}
        for name in ("bias", "batch_first", "bidirectional"):
            values[name] = bool(values[name])
        for name in ("input_size", "hidden_size", "num_layers", "proj_size"):
            values[name] = operator.index(values[name])
        values["dropout"] = float(values["dropout"])
        return cls(**values)
