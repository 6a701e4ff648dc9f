"""lstm_viz: see inside an LSTM. An instrumented torch.nn.LSTM that records every gate and state."""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from .config import LSTMConfig
from .loading import list_lstms, load_lstm
from .model import InstrumentedLSTM
from .trace import Trace

__all__ = ["InstrumentedLSTM", "LSTMConfig", "Trace", "list_lstms", "load_lstm", "trace"]


def trace(module: InstrumentedLSTM | nn.LSTM, x: Tensor | PackedSequence, hx: tuple[Tensor, Tensor] | None = None,
          engine: str = "auto") -> Trace:
    """Run `module` (an InstrumentedLSTM or a torch.nn.LSTM) on x (a Tensor or PackedSequence, as its forward takes)
    and return everything inside."""
    if isinstance(module, nn.LSTM) and not isinstance(module, InstrumentedLSTM):
        module = InstrumentedLSTM.from_torch(module)
    if not isinstance(module, InstrumentedLSTM):
        raise TypeError(f"trace expects an InstrumentedLSTM or torch.nn.LSTM, got {type(module).__name__}")
    return module.trace(x, hx, engine=engine)
