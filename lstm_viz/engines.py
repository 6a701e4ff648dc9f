"""The fused trace engine: torch's own LSTM kernel gives h, then every gate is rebuilt at once.

For one layer, given h_t for all t from torch.lstm (oneDNN on CPU, cuDNN on CUDA):

    z_t = W_ih x_t + W_hh h_{t−1} + b_ih + b_hh     for every t in one GEMM      (T, B, 4H)
    i_t, f_t, o_t = σ(z_t rows i, f, o);  g_t = tanh(z_t rows g)
    c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t                  a linear recurrence: solved by a scan

No per-step Python work except, for wide layers, one multiply-add per step of the scan. The stepwise engine in model.py
is the reference these numbers are tested against.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

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

    def flat(self) -> list[Tensor]:
        """In torch.lstm's parameter order."""
        return [p for p in (self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh, self.weight_hr)
                if p is not None]


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
    out, h_n, c_n = torch.lstm(x, (h0, c0), params, has_bias, 1, 0.0, False, D == 2, False)  # (T, B, D·H_r)
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
