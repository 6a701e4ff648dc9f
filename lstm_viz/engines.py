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

    Computed in float64, by whichever of two exact schemes costs less for this shape: a step loop
    (one fused multiply-add per step: cheap when each step has many units) or a log-depth Hillis–Steele
    scan (log2 T passes over the whole sequence: cheap when steps are many and small). Neither divides,
    so gates that underflowed to 0 are handled exactly.
    """
    T, units = f.shape[0], f[0].numel()
    # Measured on 2 CPU cores: a loop step costs ~6 µs + 0.5 ns/unit, a scan pass ~2.6 ns per value.
    if units * (2.6 * math.log2(max(T, 2)) - 0.5) < 6000:
        return _scan_log_depth(f, u, c0, out)
    return _scan_loop(f, u, c0, out)


def _scan_loop(f: Tensor, u: Tensor, c0: Tensor, out: Tensor) -> Tensor:
    f64, c = f.double(), u.to(torch.float64, copy=True)  # c starts as u, becomes c in place
    c[0].addcmul_(f64[0], c0.double())  # c_0 = f_0 ⊙ c0 + u_0
    for t in range(1, f.shape[0]):
        c[t].addcmul_(f64[t], c[t - 1])  # c_t = f_t ⊙ c_{t−1} + u_t
    return out.copy_(c)


def _scan_log_depth(f: Tensor, u: Tensor, c0: Tensor, out: Tensor) -> Tensor:
    # Invariant after the pass with offset d: c_t = Σ_{s=t−2d+1..t} (Π_{r=s+1..t} f_r) u_s (+ the c0 term),
    # a_t = Π_{r=t−2d+1..t} f_r. Each pass combines (a, c) at t with t − d.
    a, c = f.double(), u.to(torch.float64, copy=True)
    c[0].addcmul_(a[0], c0.double())
    T, d = f.shape[0], 1
    while d < T:
        c = torch.cat((c[:d], torch.addcmul(c[d:], a[d:], c[:-d])))
        if 2 * d < T:
            a = torch.cat((a[:d], a[d:] * a[:-d]))
        d *= 2
    return out.copy_(c)


def fused_layer(x: Tensor, h0: Tensor, c0: Tensor, weights: list[DirectionWeights],
                record: dict[str, Tensor] | None) -> tuple[Tensor, Tensor, Tensor]:
    """One layer, all directions. x (T, B, I_k); h0 (D, B, H_r), c0 (D, B, H); record views (D, T, B, ·)."""
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
        # h_{t−1} as step t saw it: the previous step in this direction's order, h0 at its start.
        h_prev = torch.cat((h[1:], h0[d][None])) if reverse else torch.cat((h0[d][None], h[:-1]))
        H = w.weight_hh.shape[0] // 4
        # z_t = W_ih x_t + W_hh h_{t−1} + b_ih + b_hh, for all t at once   (T·B, 4H)
        bias = w.bias_ih + w.bias_hh if has_bias else x.new_zeros(4 * H)
        z = torch.addmm(bias, x.reshape(T * B, -1), w.weight_ih.T)
        z = torch.addmm(z, h_prev.reshape(T * B, -1), w.weight_hh.T).view(T, B, 4 * H)
        rec = {q: r[d] for q, r in record.items()}
        torch.sigmoid(z[..., 0 * H:1 * H], out=rec["i"])  # i_t = σ(W_ii x_t + b_ii + W_hi h_{t−1} + b_hi)
        torch.sigmoid(z[..., 1 * H:2 * H], out=rec["f"])  # f_t = σ(W_if x_t + b_if + W_hf h_{t−1} + b_hf)
        torch.tanh(z[..., 2 * H:3 * H], out=rec["g"])  # g_t = tanh(W_ig x_t + b_ig + W_hg h_{t−1} + b_hg)
        torch.sigmoid(z[..., 3 * H:4 * H], out=rec["o"])  # o_t = σ(W_io x_t + b_io + W_ho h_{t−1} + b_ho)
        # c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t, run in this direction's own time order
        f, u = rec["f"], rec["i"] * rec["g"]
        if reverse:  # flip() copies, so scan into a buffer and flip that back
            rec["c"].copy_(linear_scan(f.flip(0), u.flip(0), c0[d], out=torch.empty_like(u)).flip(0))
        else:
            linear_scan(f, u, c0[d], out=rec["c"])
        rec["h"].copy_(h)
    return out, h_n, c_n
