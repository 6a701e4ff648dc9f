"""The fused trace engine: torch's own LSTM kernel gives h, then every gate is rebuilt at once.

For one layer, given h_t for all t from torch.lstm (oneDNN on CPU, cuDNN on CUDA):

    z_t = W_ih x_t + W_hh h_{t−1} + b_ih + b_hh     for every t in one GEMM      (T, B, 4H)
    i_t, f_t, o_t = σ(z_t rows i, f, o);  g_t = tanh(z_t rows g)
    c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t                  a linear recurrence: solved by a chunked scan

No per-step Python work except one small loop over chunks of the scan. The stepwise engine in model.py
is the reference these numbers are tested against.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch
from torch import Tensor

# A chunk of the scan holds K × K × (batch·hidden) float64 values: keep it near this many.
SCAN_CHUNK_VALUES = 1 << 18
MAX_SCAN_CHUNK = 64
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
    """c_t = f_t ⊙ c_{t−1} + u_t for t = 0..T−1 from c_{−1} = c0, into `out`. f, u (T, B, H); f > 0.

    Within a chunk of K steps, c_k = e^{S_k} c_in + Σ_{j≤k} e^{S_k − S_j} u_j with S the running sum of
    log f: a (K, K) lower-triangular weighting per unit. Chunks run in order, in float64, so the sums are
    exact to float32 output and near-exact in float64 (S_k − S_j ≤ 0: no overflow, no division).
    """
    T = f.shape[0]
    units = f[0].numel()
    K = max(1, min(MAX_SCAN_CHUNK, int((SCAN_CHUNK_VALUES / units) ** 0.5), T))
    tiny = torch.finfo(torch.float64).tiny  # a gate that underflowed to 0 forgets all, as it should
    causal = torch.ones(K, K, dtype=torch.bool, device=f.device).tril().view(K, K, *([1] * f[0].dim()))
    c = c0.double()
    for start in range(0, T, K):
        stop = min(start + K, T)
        k = stop - start
        log_f = f[start:stop].double().clamp_min(tiny).log()
        S = log_f.cumsum(0)  # S_k = Σ_{j≤k} log f_j
        decay = (S[:, None] - S[None, :]).masked_fill(~causal[:k, :k], float("-inf")).exp()  # e^{S_k − S_j}
        local = torch.einsum("kj...,j...->k...", decay, u[start:stop].double())
        c_chunk = torch.addcmul(local, S.exp(), c)  # + e^{S_k} c_in
        out[start:stop] = c_chunk
        c = c_chunk[-1]
    return out


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
