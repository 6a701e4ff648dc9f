"""The manual LSTM: torch.lstm's two call forms (padded and packed) computed step by step by our own cell.

For layer k and direction d, with rows of the (4H, ·) weights in PyTorch's order i, f, g, o:

    z_t = W_ih x_t + b_ih + b_hh + W_hh h_{t−1}       (4H): the input part, then the recurrent part
    i_t, f_t, o_t = σ(z_t rows i, f, o);  g_t = tanh(z_t rows g)
    c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t
    h_t = o_t ⊙ tanh(c_t)            then h_t = W_hr h_t when proj_size > 0

`cell` is the one place these equations are computed: InstrumentedLSTM's forward runs it here, the trace engines
(engines.py) run it and record what it returns. Everything in this module is TorchScript, so that a model holding an
InstrumentedLSTM can be scripted as one holding an nn.LSTM can.

Packed layout, as torch's kernel takes it: sequences sorted longest first, the rows of step t are the first
batch_sizes[t] sequences, stored one step after the other. A padded (T, B, ·) input is the packed layout with every
batch size B, so one loop serves both.
"""

from __future__ import annotations

from typing import NamedTuple, Optional  # noqa: UP035 (TorchScript reads these annotations)

import torch
import torch.nn.functional as F
from torch import Tensor


class CellStep(NamedTuple):
    """What one step computed, each (…, H) but h (…, H_r)."""

    i: Tensor
    f: Tensor
    g: Tensor
    o: Tensor
    c: Tensor
    h: Tensor


def cell(z: Tensor, c: Tensor, weight_hr: Optional[Tensor]) -> CellStep:  # noqa: UP045
    """One LSTM step from its pre-activation z (…, 4H) = W_ih x_t + b_ih + b_hh + W_hh h_{t−1} and c_{t−1} (…, H)."""
    z_i, z_f, z_g, z_o = z.chunk(4, -1)
    i = torch.sigmoid(z_i)  # i_t = σ(W_ii x_t + b_ii + W_hi h_{t−1} + b_hi)
    f = torch.sigmoid(z_f)  # f_t = σ(W_if x_t + b_if + W_hf h_{t−1} + b_hf)
    g = torch.tanh(z_g)  # g_t = tanh(W_ig x_t + b_ig + W_hg h_{t−1} + b_hg)
    o = torch.sigmoid(z_o)  # o_t = σ(W_io x_t + b_io + W_ho h_{t−1} + b_ho)
    c = f * c + i * g  # c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t
    h = o * torch.tanh(c)  # h_t = o_t ⊙ tanh(c_t)
    if weight_hr is not None:
        h = h @ weight_hr.t()  # h_t = W_hr h_t   (…, P)
    return CellStep(i, f, g, o, c, h)


def input_part(x: Tensor, weight_ih: Tensor, bias_ih: Optional[Tensor], bias_hh: Optional[Tensor]) -> Tensor:  # noqa: UP045
    """W_ih x + b_ih + b_hh for every row of x (…, I_k) in one GEMM: (…, 4H). The part of z_t that does not wait
    for h_{t−1}, so all steps' can be computed before the recurrence."""
    flat_x = x.reshape(-1, x.shape[-1])
    if bias_ih is not None and bias_hh is not None:
        part = torch.addmm(bias_ih + bias_hh, flat_x, weight_ih.t())
    else:
        part = flat_x @ weight_ih.t()
    return part.view(x.shape[:-1] + (part.shape[-1],))


def direction(x_part: Tensor, batch_sizes: list[int], h0: Tensor, c0: Tensor, weight_hh: Tensor,
              weight_hr: Optional[Tensor], reverse: bool) -> tuple[Tensor, Tensor, Tensor]:  # noqa: UP045
    """One layer, one direction over packed rows. x_part (N, 4H) is `input_part` of the packed input; h0 (B, H_r)
    and c0 (B, H) the initial state of the B sequences, sorted longest first.

    Returns h of every row (N, H_r), h_n and c_n (each sequence's state after its own last step, or for the reverse
    direction after its first). Forward, a sequence leaves the batch when it ends, its final state kept; reverse, it
    joins when its last step comes, starting from its initial state."""
    steps = len(batch_sizes)
    starts = [0]
    for n in batch_sizes:
        starts.append(starts[-1] + n)
    outputs: list[Tensor] = []
    if not reverse:
        h, c = h0, c0
        ended_h: list[Tensor] = []  # final states of sequences that ended, shortest first
        ended_c: list[Tensor] = []
        for t in range(steps):
            n = batch_sizes[t]
            if n < h.shape[0]:  # sequences n… ended at the step before
                ended_h.insert(0, h[n:])
                ended_c.insert(0, c[n:])
                h, c = h[:n], c[:n]
            step = cell(x_part[starts[t]:starts[t + 1]] + h @ weight_hh.t(), c, weight_hr)
            h, c = step.h, step.c
            outputs.append(h)
        return torch.cat(outputs), torch.cat([h] + ended_h), torch.cat([c] + ended_c)
    first = batch_sizes[steps - 1]
    h, c = h0[:first], c0[:first]
    for t in range(steps - 1, -1, -1):
        n = batch_sizes[t]
        if n > h.shape[0]:  # sequences that start here (their last step) join from their initial state
            h = torch.cat((h, h0[h.shape[0]:n]))
            c = torch.cat((c, c0[c.shape[0]:n]))
        step = cell(x_part[starts[t]:starts[t + 1]] + h @ weight_hh.t(), c, weight_hr)
        h, c = step.h, step.c
        outputs.insert(0, h)
    return torch.cat(outputs), h, c


def lstm_packed(data: Tensor, batch_sizes: list[int], hx: tuple[Tensor, Tensor], params: list[Tensor],
                has_biases: bool, num_layers: int, dropout: float, train: bool,
                bidirectional: bool) -> tuple[Tensor, Tensor, Tensor]:
    """torch.lstm's packed form: data (N, I) in the packed layout; hx (L·D, B, ·) sorted as the sequences are;
    params nn.LSTM's `_flat_weights`. Returns output rows (N, D·H_r), h_n (L·D, B, H_r), c_n (L·D, B, H)."""
    if len(hx) != 2:
        raise RuntimeError("lstm expects two hidden states")  # torch.lstm's words
    num_directions = 2 if bidirectional else 1
    per_direction = len(params) // (num_layers * num_directions)  # 2, + 2 biases, + 1 projection
    h0, c0 = hx
    layer_input = data
    h_n: list[Tensor] = []
    c_n: list[Tensor] = []
    for layer in range(num_layers):
        if layer > 0 and dropout > 0.0 and train:  # between layers only, as nn.LSTM
            layer_input = F.dropout(layer_input, dropout, True)
        outputs: list[Tensor] = []
        for d in range(num_directions):
            k = layer * num_directions + d
            w = params[k * per_direction:(k + 1) * per_direction]
            bias_ih: Optional[Tensor] = None  # noqa: UP045
            bias_hh: Optional[Tensor] = None  # noqa: UP045
            weight_hr: Optional[Tensor] = None  # noqa: UP045
            if has_biases:
                bias_ih, bias_hh = w[2], w[3]
            if per_direction % 2 == 1:
                weight_hr = w[per_direction - 1]
            x_part = input_part(layer_input, w[0], bias_ih, bias_hh)  # W_ih x_t + b_ih + b_hh, all t at once
            out, h, c = direction(x_part, batch_sizes, h0[k], c0[k], w[1], weight_hr, d == 1)
            outputs.append(out)
            h_n.append(h)
            c_n.append(c)
        layer_input = torch.cat(outputs, -1) if num_directions == 2 else outputs[0]
    return layer_input, torch.stack(h_n), torch.stack(c_n)


def lstm(input: Tensor, hx: tuple[Tensor, Tensor], params: list[Tensor], has_biases: bool, num_layers: int,
         dropout: float, train: bool, bidirectional: bool, batch_first: bool) -> tuple[Tensor, Tensor, Tensor]:
    """torch.lstm's padded form: input (T, B, I), or (B, T, I) when batch_first; hx (L·D, B, ·)."""
    x = input.transpose(0, 1) if batch_first else input
    steps, batch = x.shape[0], x.shape[1]
    if steps == 0:
        raise RuntimeError("Expected sequence length to be larger than 0 in RNN")
    out, h_n, c_n = lstm_packed(x.reshape(steps * batch, x.shape[2]), [batch] * steps, hx, params, has_biases,
                                num_layers, dropout, train, bidirectional)
    out = out.view(steps, batch, out.shape[-1])
    return (out.transpose(0, 1) if batch_first else out), h_n, c_n
