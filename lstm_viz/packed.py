"""Tracing a PackedSequence: the variable-length batches real models feed nn.LSTM.

The packed batch is padded (time-major, in the user's batch order) and its sequences traced in groups of equal
length, each group one ordinary batched trace (either engine), so every recorded step is a real one. The Trace holds
the padded layout: `lengths` says how many steps each sequence has, and every value past a sequence's end is NaN,
which figures draw as empty. `output` is packed as forward returns it; h_n and c_n are each sequence's final state.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from .engines import engine_label
from .trace import Trace


def trace_packed(model, packed: PackedSequence, hx: tuple[Tensor, Tensor] | None, engine: str,
                 progress: Callable[[float], object] | None, deadline: float | None) -> Trace:
    """model.trace for a PackedSequence (see the module docstring); hx (L·D, B, ·) in the user's batch order."""
    cfg = model.config
    data, batch_sizes = packed.data, packed.batch_sizes
    if hx is not None:  # nn.LSTM's checks and messages, on the states as its kernel would see them
        model.check_forward_args(data, model.permute_hidden(hx, packed.sorted_indices), batch_sizes)
    padded, lengths = pad_packed_sequence(packed)  # (T, B, I) and (B,), in the user's batch order
    T, B = padded.shape[:2]
    h0, c0 = model.hidden_or_zeros(data, hx, B)
    engine = model.auto_engine(T, B) if engine == "auto" else engine
    L, D, H, H_r = cfg.num_layers, cfg.num_directions, cfg.hidden_size, cfg.real_hidden_size
    nan = dict(dtype=data.dtype, device=data.device)
    gates = torch.full((L, D, T, B, 4 * H), float("nan"), **nan)
    c = torch.full((L, D, T, B, H), float("nan"), **nan)
    h = torch.full((L, D, T, B, H_r), float("nan"), **nan)
    out = torch.full((T, B, D * H_r), float("nan"), **nan)
    layer_inputs = [torch.full((T, B, cfg.layer_input_size(k)), float("nan"), **nan) for k in range(L)]
    h_n, c_n = torch.empty_like(h0), torch.empty_like(c0)
    total, done = int(lengths.sum()), 0
    for length in sorted(set(lengths.tolist()), reverse=True):
        rows = (lengths == length).nonzero().flatten().to(data.device)  # the sequences of this length
        share = length * len(rows)
        report = None if progress is None else _scaled(progress, done / total, share / total)
        part_out, part_h_n, part_c_n, parts = model.traced(padded[:length, rows], h0[:, rows], c0[:, rows], engine,
                                                           report, deadline)
        gates[:, :, :length, rows] = torch.cat([parts[q] for q in "ifgo"], dim=-1)
        c[:, :, :length, rows] = parts["c"]
        h[:, :, :length, rows] = parts["h"]
        for k, layer_in in enumerate(parts["layer_inputs"]):
            layer_inputs[k][:length, rows] = layer_in
        out[:length, rows] = part_out
        h_n[:, rows], c_n[:, rows] = part_h_n, part_c_n
        done += share
    output = PackedSequence(_packed_rows(out, batch_sizes, packed.sorted_indices), batch_sizes,
                            packed.sorted_indices, packed.unsorted_indices)
    views = {q: gates[..., k * H:(k + 1) * H] for k, q in enumerate("ifgo")}
    return Trace(config=cfg, output=output, h_n=h_n, c_n=c_n, c=c, h=h, h0=h0.view(L, D, B, H_r),
                 c0=c0.view(L, D, B, H), layer_inputs=layer_inputs, batched=True, engine=engine_label(engine, padded),
                 weights={k: v.detach().clone() for k, v in model.current_weights().items()}, lengths=lengths, **views)


def _scaled(progress: Callable[[float], object], start: float, share: float) -> Callable[[float], object]:
    """One group's progress (0 to 1) as a fraction of the whole packed batch's."""
    return lambda fraction: progress(start + fraction * share)


def _packed_rows(padded: Tensor, batch_sizes: Tensor, sorted_indices: Tensor | None) -> Tensor:
    """The rows of a padded (T, B, ·) tensor in the packed layout of `batch_sizes` (step after step, the first
    batch_sizes[t] sequences in `sorted_indices` order at step t): what pack_padded_sequence gives, keeping the
    input's own order among sequences of equal length."""
    steps = torch.arange(len(batch_sizes)).repeat_interleave(batch_sizes)
    starts = torch.cumsum(batch_sizes, 0) - batch_sizes
    positions = torch.arange(len(steps)) - starts.repeat_interleave(batch_sizes)  # rank among the step's sequences
    sequences = positions if sorted_indices is None else sorted_indices.cpu()[positions]
    return padded[steps.to(padded.device), sequences.to(padded.device)]
