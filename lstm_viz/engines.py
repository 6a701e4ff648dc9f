"""The LSTM cell and the two engines that trace a layer with it, plus the registry `auto` picks from.

For one layer and direction, with rows of the (4H, ·) weights in PyTorch's order i, f, g, o:

    z_t = W_ih x_t + b_ih + b_hh + W_hh h_{t−1}       (4H): the input part, then the recurrent part
    i_t, f_t, o_t = σ(z_t rows i, f, o);  g_t = tanh(z_t rows g)
    c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t
    h_t = o_t ⊙ tanh(c_t)            then h_t = W_hr h_t when proj_size > 0

(for the reverse direction, "t−1" is the step processed before t: t+1.)

stepwise: `lstm_cell` step by step (`run_direction`), the input part of every step in one GEMM first. The
    reference the other engine is tested against; with oneDNN's prepacked W_hh product it is also the faster
    one for big weights on the CPU.
fused: torch's own LSTM kernel (oneDNN on CPU, cuDNN on CUDA) gives h for all t, then every gate is rebuilt
    at once from [x_t, h_{t−1}] in one GEMM, and c by a scan of its linear recurrence (`linear_scan`). No
    per-step Python work except, for wide layers, one multiply-add per step of the scan.

`auto_engine` picks between them for a model's size; `ENGINES` maps their names to their layer functions.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

# torch.lstm notes once per process that oneDNN cannot project; it falls back to its own kernel, correctly.
warnings.filterwarnings("ignore", message="LSTM with projections is not supported with oneDNN")


@dataclass
class DirectionWeights:
    """One layer-direction's parameters; biases and W_hr are None when absent."""

    weight_ih: Tensor  # (4H, I_k)
    weight_hh: Tensor  # (4H, H_r)
    bias_ih: Tensor | None  # (4H,)
    bias_hh: Tensor | None  # (4H,)
    weight_hr: Tensor | None  # (P, H)

    @classmethod
    def from_state(cls, state: Mapping[str, Tensor], suffix: str) -> DirectionWeights:
        """From nn.LSTM-named tensors (a state_dict, or a Trace's weights) and a suffix such as "_l1_reverse"."""
        get = lambda kind: state.get(kind + suffix)  # noqa: E731
        return cls(get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"), get("weight_hr"))

    def flat(self) -> list[Tensor]:
        """In torch.lstm's parameter order."""
        return [p for p in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, self.weight_hr)
                if p is not None]


QUANTITIES = ("i", "f", "g", "o", "c", "h")
# Packing pays off only for big weights: for small ones its per-call overhead exceeds the GEMM (measured).
PACKED_MIN_VALUES = 1 << 20


class CellStep(NamedTuple):
    """What one step computed, each (…, H) but h (…, H_r)."""

    i: Tensor
    f: Tensor
    g: Tensor
    o: Tensor
    c: Tensor
    h: Tensor


def input_part(x: Tensor, w: DirectionWeights) -> Tensor:
    """W_ih x + b_ih + b_hh for every row of x (…, I_k) in one GEMM: (…, 4H). The part of z_t that does not
    wait for h_{t−1}, so all steps' can be computed before the recurrence."""
    flat_x = x.reshape(-1, x.shape[-1])
    part = (torch.addmm(w.bias_ih + w.bias_hh, flat_x, w.weight_ih.T) if w.bias_ih is not None
            else flat_x @ w.weight_ih.T)
    return part.view(*x.shape[:-1], part.shape[-1])


def lstm_cell(x_part: Tensor, h: Tensor, c: Tensor, weights: DirectionWeights,
              times_w_hh: Callable[[Tensor], Tensor] | None = None) -> CellStep:
    """One LSTM step. x_part (…, 4H) is `input_part` of x_t; h (…, H_r) and c (…, H) the previous state.

    times_w_hh: h ↦ h W_hhᵀ, when the caller has a faster product for it (`step_product`); by default a matmul.
    """
    recurrent = times_w_hh(h) if times_w_hh is not None else h @ weights.weight_hh.T
    z = x_part + recurrent  # z_t = W_ih x_t + b_ih + b_hh + W_hh h_{t−1}   (…, 4H), rows i, f, g, o
    z_i, z_f, z_g, z_o = z.chunk(4, dim=-1)
    i = torch.sigmoid(z_i)  # i_t = σ(W_ii x_t + b_ii + W_hi h_{t−1} + b_hi)
    f = torch.sigmoid(z_f)  # f_t = σ(W_if x_t + b_if + W_hf h_{t−1} + b_hf)
    g = torch.tanh(z_g)  # g_t = tanh(W_ig x_t + b_ig + W_hg h_{t−1} + b_hg)
    o = torch.sigmoid(z_o)  # o_t = σ(W_io x_t + b_io + W_ho h_{t−1} + b_ho)
    c = f * c + i * g  # c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t
    h = o * torch.tanh(c)  # h_t = o_t ⊙ tanh(c_t)
    if weights.weight_hr is not None:
        h = h @ weights.weight_hr.T  # h_t = W_hr h_t   (…, P)
    return CellStep(i, f, g, o, c, h)


def run_direction(x: Tensor, h0: Tensor, c0: Tensor, w: DirectionWeights, reverse: bool,
                  record: dict[str, Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """One layer, one direction, step by step: the reference engine. x (T, B, I_k), h0 (B, H_r), c0 (B, H).

    Returns h for every t (T, B, H_r), h_n and c_n. If `record` is given (views (T, B, ·): "gates" with
    4H rows i, f, g, o, then "c" and "h"), every step is written there, indexed by input position also
    when reverse.
    """
    seq_len, batch = x.shape[:2]
    x_part = input_part(x, w)  # W_ih x_t + b_ih + b_hh for all t in one GEMM   (T, B, 4H)
    times_w_hh = step_product(w.weight_hh, batch)  # h ↦ W_hh h, the one GEMM left in each step
    h, c = h0, c0
    steps: dict[str, list[Tensor]] = {q: [] for q in QUANTITIES}
    for t in range(seq_len - 1, -1, -1) if reverse else range(seq_len):
        step = lstm_cell(x_part[t], h, c, w, times_w_hh)
        h, c = step.h, step.c
        for name, value in zip(QUANTITIES, step, strict=True):
            if record is not None or name == "h":
                steps[name].append(value)
    if reverse:  # store the step for input t at t
        for seq in steps.values():
            seq.reverse()
    if record is None:
        return torch.stack(steps["h"]), h, c
    H = c.shape[-1]
    for name, seq in steps.items():
        k = "ifgo".find(name)  # gates share one (T, B, 4H) buffer, rows i, f, g, o as in nn.LSTM
        torch.stack(seq, out=record["gates"][..., k * H:(k + 1) * H] if k >= 0 else record[name])
    return record["h"], h, c


def stepwise_layer(x: Tensor, h0: Tensor, c0: Tensor, weights: list[DirectionWeights],
                   record: dict[str, Tensor] | None) -> tuple[Tensor, Tensor, Tensor]:
    """One layer, each direction by `run_direction`. h0 (D, B, H_r), c0 (D, B, H); record views (D, T, B, ·)."""
    outs, h_n, c_n = [], [], []
    for d, w in enumerate(weights):
        rec = None if record is None else {q: r[d] for q, r in record.items()}
        out, h_last, c_last = run_direction(x, h0[d], c0[d], w, reverse=d == 1, record=rec)
        outs.append(out)
        h_n.append(h_last)
        c_n.append(c_last)
    out = torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0]  # [forward, reverse] features
    return out, torch.stack(h_n), torch.stack(c_n)


def packed_kernels_available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def packed_pays_off(weight: Tensor) -> bool:
    """oneDNN's prepacked product is worth it for this weight: big, float32, on the CPU, kernels present."""
    return (weight.numel() >= PACKED_MIN_VALUES and weight.dtype == torch.float32 and weight.device.type == "cpu"
            and packed_kernels_available())


def step_product(weight: Tensor, batch: int) -> Callable[[Tensor], Tensor]:
    """h ↦ h Wᵀ for a weight that every step reuses. Tracing on the CPU in float32, this is oneDNN's
    prepacked GEMM, the kind nn.LSTM's own kernel uses (about 1.4× a plain matmul for big weights here);
    elsewhere, for small weights, and whenever autograd is on, a plain matmul."""
    if packed_pays_off(weight) and not torch.is_grad_enabled():
        try:
            packed = torch.ops.mkldnn._reorder_linear_weight(weight, batch)
            return lambda h: torch.ops.mkldnn._linear_pointwise(h, packed, None, "none", [], "")
        except RuntimeError:  # a build without these kernels: the plain product is as exact
            pass
    return lambda h: h @ weight.T


def auto_engine(weight_hh: Tensor) -> str:
    """The faster engine for a model whose first W_hh is `weight_hh`. Stepwise computes each GEMM once, fused
    computes them twice (torch's kernel, then the gate rebuild) but without per-step Python: stepwise wins
    when each step is one big GEMM that runs at nn.LSTM's speed, i.e. big weights with oneDNN's packed
    product on the CPU."""
    return "stepwise" if packed_pays_off(weight_hh) else "fused"


def linear_scan(f: Tensor, u: Tensor, c0: Tensor, out: Tensor) -> Tensor:
    """c_t = f_t ⊙ c_{t−1} + u_t for t = 0..T−1 from c_{−1} = c0, into `out`. f, u (T, B, H).

    By whichever of two schemes costs less for this shape: a step loop (one fused multiply-add per step:
    cheap when each step has many units) or a log-depth Hillis–Steele scan (log2 T passes over the whole
    sequence: cheap when steps are many and small). Neither divides, so gates that underflowed to 0 are
    handled exactly; both round like the recurrence itself (tested against it, and against nn.LSTM's c_n).
    """
    T, units = f.shape[0], f[0].numel()
    # Measured on 2 CPU cores: a loop step costs ~6 µs + 0.5 ns/unit, a scan pass ~1.5 ns per value.
    if units * (1.5 * math.log2(max(T, 2)) - 0.5) < 6000:
        return _scan_log_depth(f, u, c0, out)
    return _scan_loop(f, u, c0, out)


def _scan_loop(f: Tensor, u: Tensor, c0: Tensor, out: Tensor) -> Tensor:
    out.copy_(u)  # out starts as u and becomes c in place, step by step
    out[0].addcmul_(f[0], c0)  # c_0 = f_0 ⊙ c0 + u_0
    for t in range(1, f.shape[0]):
        out[t].addcmul_(f[t], out[t - 1])  # c_t = f_t ⊙ c_{t−1} + u_t
    return out


def _scan_log_depth(f: Tensor, u: Tensor, c0: Tensor, out: Tensor) -> Tensor:
    # After the pass with offset d: c_t = Σ_{s=t−2d+1..t} (Π_{r=s+1..t} f_r) u_s (+ the c0 term for t < 2d)
    # and a_t = Π_{r=t−2d+1..t} f_r. A pass combines (a, c) at t with those at t − d, ping-ponging buffers.
    T = f.shape[0]
    c, c_next = out, torch.empty_like(out)
    c.copy_(u)
    c[0].addcmul_(f[0], c0)
    a, a_next = f.clone(), torch.empty_like(f)
    d = 1
    while d < T:
        torch.addcmul(c[d:], a[d:], c[:-d], out=c_next[d:])
        c_next[:d] = c[:d]
        c, c_next = c_next, c
        if 2 * d < T:
            torch.mul(a[d:], a[:-d], out=a_next[d:])
            a_next[:d] = a[:d]
            a, a_next = a_next, a
        d *= 2
    return out if c is out else out.copy_(c)


def fused_layer(x: Tensor, h0: Tensor, c0: Tensor, weights: list[DirectionWeights],
                record: dict[str, Tensor] | None) -> tuple[Tensor, Tensor, Tensor]:
    """One layer, all directions. x (T, B, I_k); h0 (D, B, H_r), c0 (D, B, H).

    record: views (D, T, B, ·) to fill: "gates" (4H, rows i, f, g, o), "c" and "h".
    """
    D = len(weights)
    has_bias = weights[0].bias_ih is not None
    params = [p for w in weights for p in w.flat()]
    out, h_n, c_n = torch.lstm(x, (h0, c0), params, has_biases=has_bias, num_layers=1, dropout=0.0, train=False,
                                bidirectional=D == 2, batch_first=False)  # out (T, B, D·H_r)
    if record is None:
        return out, h_n, c_n
    T, B = x.shape[:2]
    H_r = h0.shape[-1]
    for d, w in enumerate(weights):
        reverse = d == 1
        h = out[..., d * H_r:(d + 1) * H_r]  # h_t indexed by input position
        # [x_t, h_{t−1}] as step t saw them: h_{t−1} is the previous step in this direction's order, h0 first.
        h_prev = torch.cat((h[1:], h0[d][None])) if reverse else torch.cat((h0[d][None], h[:-1]))
        xh = torch.cat((x, h_prev), dim=-1).view(T * B, -1)
        H = w.weight_hh.shape[0] // 4
        W = torch.cat((w.weight_ih, w.weight_hh), dim=1)  # (4H, I_k + H_r)
        # z_t = W_ih x_t + W_hh h_{t−1} + b_ih + b_hh, for all t at once, written straight into the
        # trace's gate buffer (T, B, 4H) and activated there in place: no (T, B, 4H) temporary.
        gates = record["gates"][d]
        flat = gates.view(T * B, 4 * H)
        if has_bias:
            torch.addmm(w.bias_ih + w.bias_hh, xh, W.T, out=flat)
        else:
            torch.mm(xh, W.T, out=flat)
        gates[..., 2 * H:3 * H].tanh_()  # g_t = tanh(W_ig x_t + b_ig + W_hg h_{t−1} + b_hg)
        gates[..., :2 * H].sigmoid_()  # i_t, f_t = σ(W_i· x_t + b_i· + W_h· h_{t−1} + b_h·)
        gates[..., 3 * H:].sigmoid_()  # o_t = σ(W_io x_t + b_io + W_ho h_{t−1} + b_ho)
        i, f, g = gates[..., :H], gates[..., H:2 * H], gates[..., 2 * H:3 * H]
        # c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t, run in this direction's own time order
        if reverse:  # flip() copies, so scan into a buffer and flip that back
            c = linear_scan(f.flip(0), (i * g).flip(0), c0[d], out=x.new_empty(T, B, H))
            record["c"][d].copy_(c.flip(0))
        else:
            linear_scan(f, i * g, c0[d], out=record["c"][d])
        record["h"][d].copy_(h)
    return out, h_n, c_n


ENGINES = {"stepwise": stepwise_layer, "fused": fused_layer}
