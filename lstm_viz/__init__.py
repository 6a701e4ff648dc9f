"""lstm_viz: see inside an LSTM. An instrumented torch.nn.LSTM that records every gate and state."""

from __future__ import annotations

from torch import Tensor, nn

from .config import LSTMConfig
from .model import InstrumentedLSTM
from .trace import Trace

__all__ = ["InstrumentedLSTM", "LSTMConfig", "Trace", "trace"]


def trace(module: InstrumentedLSTM | nn.LSTM, x: Tensor, hx: tuple[Tensor, Tensor] | None = None) -> Trace:
    """Run `module` (an InstrumentedLSTM or a torch.nn.LSTM) on x and return everything inside."""
    if isinstance(module, nn.LSTM):
        module = InstrumentedLSTM.from_torch(module)
    if not isinstance(module, InstrumentedLSTM):
        raise TypeError(f"trace expects an InstrumentedLSTM or torch.nn.LSTM, got {type(module).__name__}")
    return module.trace(x, hx)
