"""InstrumentedLSTM: a manual torch.nn.LSTM that records every gate and state it computes.

Parameters carry nn.LSTM's names and shapes, so state_dicts load both ways. For layer k and
direction d, with rows of the (4H, ·) weights in PyTorch's order i, f, g, o:

    i_t = σ(W_ii x_t + b_ii + W_hi h_{t−1} + b_hi)        input gate
    f_t = σ(W_if x_t + b_if + W_hf h_{t−1} + b_hf)        forget gate
    g_t = tanh(W_ig x_t + b_ig + W_hg h_{t−1} + b_hg)     candidate (C̃_t)
    o_t = σ(W_io x_t + b_io + W_ho h_{t−1} + b_ho)        output gate
    c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t
    h_t = o_t ⊙ tanh(c_t)            then h_t = W_hr h_t when proj_size > 0

The cell and the engines that run it live in engines.py; this module is the nn.Module around them.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .config import LSTMConfig
from .cost import Clock
from .engines import ENGINES, DirectionWeights, auto_engine
from .trace import Trace


class InstrumentedLSTM(nn.Module):
    """Drop-in torch.nn.LSTM whose `trace` also returns every gate and state at every step."""

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        device=None,
        dtype=None,
    ) -> None:
        super().__init__()
        cfg = LSTMConfig(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         proj_size)
        self.config = cfg
        for name, value in cfg.to_dict().items():
            setattr(self, name, value)
        self.dropout = float(dropout)
        factory = {"device": device, "dtype": dtype}
        for layer in range(num_layers):
            shapes = cfg.param_shapes(layer)
            for direction in range(cfg.num_directions):
                for name in cfg.param_names(layer, direction):
                    kind = name.split("_l")[0]
                    self.register_parameter(name, nn.Parameter(torch.empty(shapes[kind], **factory)))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """nn.LSTM's init: every parameter ~ U(−1/√H, 1/√H)."""
        bound = 1.0 / math.sqrt(self.hidden_size) if self.hidden_size > 0 else 0
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)

    def extra_repr(self) -> str:
        c = self.config
        s = f"{c.input_size}, {c.hidden_size}, num_layers={c.num_layers}"
        for name, default in (("bias", True), ("batch_first", False), ("dropout", 0.0),
                              ("bidirectional", False), ("proj_size", 0)):
            if getattr(c, name) != default:
                s += f", {name}={getattr(c, name)}"
        return s

    # --- conversion --------------------------------------------------------------------------

    @classmethod
    def from_torch(cls, lstm: nn.LSTM) -> InstrumentedLSTM:
        """Same config and weights as `lstm`, on its device and dtype, in its train/eval mode."""
        if not isinstance(lstm, nn.LSTM):
            raise TypeError(f"from_torch expects a torch.nn.LSTM, got {type(lstm).__name__}")
        w = lstm.weight_ih_l0
        m = cls(**LSTMConfig.of(lstm).to_dict(), device=w.device, dtype=w.dtype)
        m.load_state_dict(lstm.state_dict())
        return m.train(lstm.training)

    def to_torch(self) -> nn.LSTM:
        """An equivalent torch.nn.LSTM with copied weights."""
        w = self.weight_ih_l0
        lstm = nn.LSTM(**self.config.to_dict(), device=w.device, dtype=w.dtype)
        lstm.load_state_dict(self.state_dict())
        return lstm.train(self.training)

    def direction_weights(self, layer: int, direction: int) -> DirectionWeights:
        return DirectionWeights.from_state(self._parameters, LSTMConfig.suffix(layer, direction))

    # --- forward -----------------------------------------------------------------------------

    def forward(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None):
        """Exactly nn.LSTM's forward: returns output, (h_n, c_n)."""
        output, h_n, c_n, _ = self._run(input, hx, record=False)
        return output, (h_n, c_n)

    @torch.no_grad()
    def trace(self, input: Tensor, hx: tuple[Tensor, Tensor] | None = None, engine: str = "auto",
              progress: Callable[[float], object] | None = None, deadline: float | None = None) -> Trace:
        """Forward pass plus every gate and state, detached, as a Trace.

        engine: "stepwise" runs the cell (`engines.lstm_cell`) step by step (the reference); "fused" lets
        torch's fused LSTM give h, then rebuilds every gate from (x_t, h_{t−1}) in one GEMM and c by a scan;
        "auto" picks the faster for this model and input by the cost model (`cost.faster_engine`). The tests
        hold both to nn.LSTM and to each other.
        progress: called with the fraction done (0 to 1) at the start, about every 0.1 s of work, and at the end;
        whatever it raises stops the trace and propagates.
        deadline: a time.monotonic() value; past it the trace stops with cost.TooSlow, saying how far it got.
        """
        engine = self.auto_engine(input) if engine == "auto" else engine
        output, h_n, c_n, parts = self._run(input, hx, record=True, engine=engine, progress=progress,
                                            deadline=deadline)
        return Trace(config=self.config, output=output, h_n=h_n, c_n=c_n, batched=input.dim() == 3,
                     weights={k: v.detach().clone() for k, v in self.state_dict().items()},
                     engine=engine, **parts)

    def auto_engine(self, input: Tensor) -> str:
        """The faster engine for this model on `input` (its length and batch), by the cost model."""
        shape = tuple(input.shape) if isinstance(input, Tensor) else ()
        if len(shape) == 3:
            T, B = (shape[1], shape[0]) if self.batch_first else shape[:2]
        else:  # unbatched (T, I), or an input that `_run` will refuse, for which any engine does
            T, B = shape[0] if len(shape) == 2 else 1, 1
        w = self.weight_hh_l0
        return auto_engine(self.config, T, B, w.device, w.dtype)

    def _check_input(self, input: Tensor, hx) -> tuple[Tensor, Tensor, Tensor, bool]:
        """nn.LSTM's checks and normalisation: returns x (T, B, I), h0, c0 (L·D, B, ·), batched."""
        cfg = self.config
        if not isinstance(input, Tensor):
            raise TypeError(f"LSTM: expected input to be a Tensor, got {type(input).__name__}")
        if input.dim() not in (2, 3):
            raise ValueError(f"LSTM: Expected input to be 2D or 3D, got {input.dim()}D instead")
        weight = self.weight_ih_l0
        if input.dtype != weight.dtype:
            raise ValueError(
                f"RNN input dtype ({input.dtype}) does not match weight dtype ({weight.dtype}). "
                f"Convert input: input.to({weight.dtype}), or convert model: model.to({input.dtype})"
            )
        batched = input.dim() == 3
        x = input if batched else input.unsqueeze(0 if cfg.batch_first else 1)
        if cfg.batch_first:
            x = x.transpose(0, 1)  # (T, B, I): time-major inside
        if x.shape[-1] != cfg.input_size:
            raise RuntimeError(
                f"input.size(-1) must be equal to input_size. Expected {cfg.input_size}, got {x.shape[-1]}"
                f" (input shape {tuple(input.shape)})"
            )
        batch, layers_dirs = x.shape[1], cfg.num_layers * cfg.num_directions
        if hx is None:
            h0 = x.new_zeros(layers_dirs, batch, cfg.real_hidden_size)
            c0 = x.new_zeros(layers_dirs, batch, cfg.hidden_size)
            return x, h0, c0, batched
        h0, c0 = hx
        want = 3 if batched else 2
        if h0.dim() != want or c0.dim() != want:
            kind = "batched 3-D" if batched else "unbatched 2-D"
            raise RuntimeError(f"For {kind} input, hx and cx should also be {want}-D but got "
                               f"({h0.dim()}-D, {c0.dim()}-D) tensors")
        if not batched:
            h0, c0 = h0.unsqueeze(1), c0.unsqueeze(1)
        for k, (state, size) in enumerate(((h0, cfg.real_hidden_size), (c0, cfg.hidden_size))):
            expected = (layers_dirs, batch, size)
            if tuple(state.shape) != expected:
                raise RuntimeError(f"Expected hidden[{k}] size {expected}, got {list(state.shape)}")
        return x, h0, c0, batched

    def _run(self, input: Tensor, hx, record: bool, engine: str = "stepwise", progress=None, deadline=None):
        """All layers and directions. Returns output, h_n, c_n as nn.LSTM does, and the recorded parts."""
        cfg = self.config
        x, h0, c0, batched = self._check_input(input, hx)
        T, B = x.shape[:2]
        if T == 0:
            raise ValueError(f"LSTM: the input sequence is empty (input shape {tuple(input.shape)})")
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)} or 'auto'")
        L, D = cfg.num_layers, cfg.num_directions
        h0, c0 = h0.view(L, D, B, -1), c0.view(L, D, B, -1)
        records = None
        if record:  # (L, D, T, B, ·) buffers that the engines fill in place
            records = {"gates": x.new_empty(L, D, T, B, 4 * cfg.hidden_size),
                       "c": x.new_empty(L, D, T, B, cfg.hidden_size),
                       "h": x.new_empty(L, D, T, B, cfg.real_hidden_size)}
        clock = None
        if progress is not None or deadline is not None:
            clock = Clock(T, L, D, progress, deadline)
            clock.tick(0, 0)  # a deadline already passed stops here, before any work
        h_n, c_n, layer_inputs = [], [], []
        layer_in = x
        for layer in range(L):
            if layer > 0 and self.training and cfg.dropout > 0:
                layer_in = F.dropout(layer_in, p=cfg.dropout, training=True)  # between layers only
            layer_inputs.append(layer_in)
            weights = [self.direction_weights(layer, d) for d in range(D)]
            rec = None if records is None else {q: r[layer] for q, r in records.items()}
            if clock is None:
                layer_in, h_last, c_last = ENGINES[engine](layer_in, h0[layer], c0[layer], weights, rec)
            else:
                clock.layer = layer
                layer_in, h_last, c_last = ENGINES[engine](layer_in, h0[layer], c0[layer], weights, rec, clock)
            h_n.append(h_last)
            c_n.append(c_last)
        if clock is not None:
            clock.finish()
        output = layer_in.transpose(0, 1) if cfg.batch_first else layer_in
        h_n, c_n = torch.cat(h_n), torch.cat(c_n)  # (L·D, B, ·), layer-major
        if not batched:
            output = output.squeeze(0 if cfg.batch_first else 1)
            h_n, c_n = h_n.squeeze(1), c_n.squeeze(1)
        parts = {}
        if record:
            H = cfg.hidden_size
            gates = {q: records["gates"][..., k * H:(k + 1) * H] for k, q in enumerate("ifgo")}  # views
            parts = dict(gates, c=records["c"], h=records["h"], h0=h0, c0=c0, layer_inputs=layer_inputs)
        return output, h_n, c_n, parts
