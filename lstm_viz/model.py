"""InstrumentedLSTM: a manual torch.nn.LSTM that records every gate and state it computes.

Parameters carry nn.LSTM's names and shapes, so state_dicts load both ways. For layer k and
direction d, with rows of the (4H, ·) weights in PyTorch's order i, f, g, o:

    i_t = σ(W_ii x_t + b_ii + W_hi h_{t−1} + b_hi)        input gate
    f_t = σ(W_if x_t + b_if + W_hf h_{t−1} + b_hf)        forget gate
    g_t = tanh(W_ig x_t + b_ig + W_hg h_{t−1} + b_hg)     candidate (C̃_t)
    o_t = σ(W_io x_t + b_io + W_ho h_{t−1} + b_ho)        output gate
    c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t
    h_t = o_t ⊙ tanh(c_t)            then h_t = W_hr h_t when proj_size > 0

It is an nn.LSTM (same constructor, checks, warnings, parameters and attributes, read at call time), whose forward
runs our own kernel (kernel.py) instead of torch's, and which adds `trace`: the same run with every gate and state
recorded, by one of the engines in engines.py.
"""

# No `from __future__ import annotations`: TorchScript reads the forward overloads' annotations as real types.
from collections.abc import Callable
from typing import Optional, overload  # noqa: UP035 (TorchScript reads the forward's annotations)

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.rnn import PackedSequence

from . import kernel
from .config import LSTMConfig
from .cost import Clock
from .engines import ENGINES, DirectionWeights, auto_engine, engine_label
from .trace import Trace


class InstrumentedLSTM(nn.LSTM):
    """Drop-in torch.nn.LSTM whose `trace` also returns every gate and state at every step."""

    __jit_unused_properties__ = [*nn.LSTM.__jit_unused_properties__, "config"]

    @property
    def config(self) -> LSTMConfig:
        """The options as they are now: like nn.LSTM, this module reads its attributes at every call."""
        return LSTMConfig.of(self)

    # --- conversion --------------------------------------------------------------------------

    @classmethod
    def from_torch(cls, lstm: nn.LSTM) -> "InstrumentedLSTM":
        """Same options and weights as `lstm`, on its device and dtype, in its train/eval mode."""
        if not isinstance(lstm, nn.LSTM):
            raise TypeError(f"from_torch expects a torch.nn.LSTM, got {type(lstm).__name__}")
        w = lstm.weight_ih_l0
        m = cls(**{name: getattr(lstm, name) for name in LSTMConfig.__dataclass_fields__}, device=w.device,
                dtype=w.dtype)
        m.load_state_dict(lstm.state_dict())
        return m.train(lstm.training)

    def to_torch(self) -> nn.LSTM:
        """An equivalent torch.nn.LSTM with copied weights."""
        w = self.weight_ih_l0
        lstm = nn.LSTM(**{name: getattr(self, name) for name in LSTMConfig.__dataclass_fields__}, device=w.device,
                       dtype=w.dtype)
        lstm.load_state_dict(self.state_dict())
        return lstm.train(self.training)

    def current_weights(self) -> dict[str, Tensor]:
        """nn.LSTM's weights by name as forward uses them now: its `_flat_weights`, which follow reassignment and
        reparametrisations such as weight norm (whose weights are plain tensors, not parameters)."""
        self._update_flat_weights()
        return dict(zip(self._flat_weights_names, self._flat_weights, strict=True))

    def direction_weights(self, layer: int, direction: int) -> DirectionWeights:
        return DirectionWeights.from_state(self.current_weights(), LSTMConfig.suffix(layer, direction))

    @torch.jit.export
    def flatten_parameters(self) -> None:
        """Accepted, as nn.LSTM accepts it, and also inside TorchScript. Nothing to do: nn.LSTM compacts its weights
        into one buffer for cuDNN, and this module's forward runs our own kernel, which reads them where they are."""
        return None

    # --- forward: nn.LSTM's, with our kernel in place of torch's ---------------------------------

    @overload  # type: ignore[override]
    @torch._jit_internal._overload_method
    def forward(self, input: Tensor, hx: Optional[tuple[Tensor, Tensor]] = None  # noqa: UP045
                ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        pass

    @overload
    @torch._jit_internal._overload_method
    def forward(self, input: PackedSequence, hx: Optional[tuple[Tensor, Tensor]] = None  # noqa: UP045
                ) -> tuple[PackedSequence, tuple[Tensor, Tensor]]:
        pass

    def forward(self, input, hx=None):
        """Exactly nn.LSTM's forward (Tensor or PackedSequence in, the same out), computed by `kernel`."""
        self._update_flat_weights()
        orig_input = input
        if isinstance(orig_input, PackedSequence):
            input, batch_sizes, sorted_indices, unsorted_indices = orig_input
            hx = self.hidden_or_zeros(input, hx, int(batch_sizes[0]))
            hx = self.permute_hidden(hx, sorted_indices)  # the kernel takes states in the packed (sorted) order
            self.check_forward_args(input, hx, batch_sizes)
            sizes: list[int] = batch_sizes.tolist()
            output, h_n, c_n = kernel.lstm_packed(input, sizes, hx, self._flat_weights, bool(self.bias),
                                                  int(self.num_layers), float(self.dropout), self.training,
                                                  bool(self.bidirectional))
            packed = PackedSequence(output, batch_sizes, sorted_indices, unsorted_indices)
            return packed, self.permute_hidden((h_n, c_n), unsorted_indices)
        input, hx, is_batched = self._prepared(input, hx)
        output, h_n, c_n = kernel.lstm(input, hx, self._flat_weights, bool(self.bias), int(self.num_layers),
                                       float(self.dropout), self.training, bool(self.bidirectional),
                                       bool(self.batch_first))
        if not is_batched:
            return output.squeeze(0 if self.batch_first else 1), (h_n.squeeze(1), c_n.squeeze(1))
        return output, (h_n, c_n)

    def hidden_or_zeros(self, input: Tensor, hx: Optional[tuple[Tensor, Tensor]],  # noqa: UP045
                         batch: int) -> tuple[Tensor, Tensor]:
        """hx, or zero states (L·D, batch, ·) of the input's dtype and device when it is None."""
        if hx is not None:
            return hx
        layers = int(self.num_layers) * (2 if self.bidirectional else 1)
        hidden = self.proj_size if self.proj_size > 0 else self.hidden_size
        return (torch.zeros(layers, batch, hidden, dtype=input.dtype, device=input.device),
                torch.zeros(layers, batch, self.hidden_size, dtype=input.dtype, device=input.device))

    def _prepared(self, input: Tensor, hx: Optional[tuple[Tensor, Tensor]]  # noqa: UP045
                  ) -> tuple[Tensor, tuple[Tensor, Tensor], bool]:
        """nn.LSTM's checks, with its errors: the input made batched (in its own layout, batch_first or not), hx
        made 3-D (zeros when None), and whether the input was batched."""
        if input.dim() not in (2, 3):
            raise ValueError(f"LSTM: Expected input to be 2D or 3D, got {input.dim()}D instead")
        is_batched = input.dim() == 3
        if not is_batched:
            input = input.unsqueeze(0 if self.batch_first else 1)
        if hx is not None:
            want = 3 if is_batched else 2
            if hx[0].dim() != want or hx[1].dim() != want:
                kind = "batched 3-D" if is_batched else "unbatched 2-D"
                raise RuntimeError(f"For {kind} input, hx and cx should also be {want}-D but got "
                                   f"({hx[0].dim()}-D, {hx[1].dim()}-D) tensors")
            if not is_batched:
                hx = (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
        hx = self.hidden_or_zeros(input, hx, input.size(0) if self.batch_first else input.size(1))
        self.check_forward_args(input, hx, None)
        return input, hx, is_batched

    # --- trace -------------------------------------------------------------------------------

    @torch.no_grad()
    def trace(self, input: Tensor | PackedSequence, hx: tuple[Tensor, Tensor] | None = None, engine: str = "auto",
              progress: Callable[[float], object] | None = None, deadline: float | None = None) -> Trace:
        """Forward pass plus every gate and state, detached, as a Trace. Takes what forward takes.

        engine: "stepwise" runs the cell (`kernel.cell`) step by step (the reference); "fused" lets torch's fused
        LSTM give h, then rebuilds every gate from (x_t, h_{t−1}) in one GEMM and c by a scan; "auto" picks the
        faster for this model and input by the cost model (`cost.faster_engine`); "compiled" runs the stepwise cell
        in C++ (`compiled`), or where it cannot, the stepwise engine, and `trace.engine` then says so and why. The
        tests hold them all to nn.LSTM and to each other.
        progress: called with the fraction done (0 to 1) at the start, about every 0.1 s of work, and at the end;
        whatever it raises stops the trace and propagates.
        deadline: a time.monotonic() value; past it the trace stops with cost.TooSlow, saying how far it got.

        A PackedSequence is traced as its padded batch (`packed.trace_packed`): each sequence's steps, its length
        in `trace.lengths`, NaN past it, and `trace.output` packed as forward returns it.
        """
        if isinstance(input, PackedSequence):
            from .packed import trace_packed  # it calls back into this class

            return trace_packed(self, input, hx, engine, progress, deadline)
        if not isinstance(input, Tensor):
            raise TypeError(f"LSTM: expected input to be a Tensor or PackedSequence, got {type(input).__name__}")
        x, hx, batched = self._prepared(input, hx)
        if len(hx) != 2:
            raise RuntimeError("lstm expects two hidden states")  # torch.lstm's words, as forward says them
        h0, c0 = hx
        x = x.transpose(0, 1) if self.batch_first else x  # (T, B, I): time-major inside
        cfg, now = self.config, self.current_weights()  # read once: a small trace is mostly such bookkeeping
        w = self.weight_hh_l0
        engine = auto_engine(cfg, x.shape[0], x.shape[1], w.device, w.dtype) if engine == "auto" else engine
        output, h_n, c_n, parts = self.traced(x, h0, c0, engine, progress, deadline, cfg, now)
        output = output.transpose(0, 1) if self.batch_first else output
        if not batched:
            output = output.squeeze(0 if self.batch_first else 1)
            h_n, c_n = h_n.squeeze(1), c_n.squeeze(1)
        return Trace(config=cfg, output=output, h_n=h_n, c_n=c_n, batched=batched,
                     weights={k: v.detach().clone() for k, v in now.items()},
                     engine=engine_label(engine, x), **parts)

    def auto_engine(self, seq_len: int, batch: int) -> str:
        """The faster engine for this model on an input of this length and batch, by the cost model."""
        w = self.weight_hh_l0
        return auto_engine(self.config, seq_len, batch, w.device, w.dtype)

    def traced(self, x: Tensor, h0: Tensor, c0: Tensor, engine: str, progress=None, deadline=None,
               cfg: LSTMConfig | None = None, weights_now: dict[str, Tensor] | None = None):
        """All layers and directions on a checked time-major x (T, B, I) from h0, c0 (L·D, B, ·): output (T, B, ·),
        h_n and c_n as nn.LSTM gives them, and the recorded parts of a Trace. cfg and weights_now, where the caller
        has them: `config` and `current_weights()`."""
        cfg = cfg or self.config
        weights_now = weights_now if weights_now is not None else self.current_weights()
        T, B = x.shape[:2]
        if T == 0:
            raise RuntimeError("Expected sequence length to be larger than 0 in RNN")  # nn.LSTM's words
        if engine not in ENGINES:
            raise ValueError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)} or 'auto'")
        L, D = cfg.num_layers, cfg.num_directions
        h0, c0 = h0.reshape(L, D, B, h0.shape[-1]), c0.reshape(L, D, B, c0.shape[-1])
        records = {"gates": x.new_empty(L, D, T, B, 4 * cfg.hidden_size),  # buffers the engines fill in place
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
            weights = [DirectionWeights.from_state(weights_now, LSTMConfig.suffix(layer, d)) for d in range(D)]
            rec = {q: r[layer] for q, r in records.items()}
            if clock is None:
                layer_in, h_last, c_last = ENGINES[engine](layer_in, h0[layer], c0[layer], weights, rec)
            else:
                clock.layer = layer
                layer_in, h_last, c_last = ENGINES[engine](layer_in, h0[layer], c0[layer], weights, rec, clock)
            h_n.append(h_last)
            c_n.append(c_last)
        if clock is not None:
            clock.finish()
        H = cfg.hidden_size
        gates = {q: records["gates"][..., k * H:(k + 1) * H] for k, q in enumerate("ifgo")}  # views
        parts = dict(gates, c=records["c"], h=records["h"], h0=h0, c0=c0, layer_inputs=layer_inputs)
        return layer_in, torch.cat(h_n), torch.cat(c_n), parts  # h_n, c_n (L·D, B, ·), layer-major
