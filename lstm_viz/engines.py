"""The LSTM cell and the three engines that trace a layer with it, plus the registry `auto` picks from.

For one layer and direction, with rows of the (4H, ·) weights in PyTorch's order i, f, g, o:

    z_t = W_ih x_t + b_ih + b_hh + W_hh h_{t−1}       (4H): the input part, then the recurrent part
    i_t, f_t, o_t = σ(z_t rows i, f, o);  g_t = tanh(z_t rows g)
    c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t                  (computed by `kernel.cell`, the one place these equations are)
    h_t = o_t ⊙ tanh(c_t)            then h_t = W_hr h_t when proj_size > 0

(for the reverse direction, "t−1" is the step processed before t: t+1.)

stepwise: `lstm_cell` step by step (`run_direction`), the input part of every step in one GEMM first. The
    reference the other engine is tested against; with oneDNN's prepacked W_hh product it is also the faster
    one for big weights on the CPU.
fused: torch's own LSTM kernel (oneDNN on CPU, cuDNN on CUDA) gives h for all t, then every gate is rebuilt
    at once from [x_t, h_{t−1}] in one GEMM, and c by a scan of its linear recurrence (`linear_scan`). No
    per-step Python work except, for wide layers, one multiply-add per step of the scan.

compiled: the stepwise engine's cell in C++ (compiled.py), one GEMM and one fused loop a step, no Python between
    steps; where it cannot be built, or on CUDA, the stepwise engine, which says so.

Given a `clock` (cost.Clock: progress reports and a deadline), stepwise checks it every step, fused and compiled run
in chunks of steps, carrying (h, c) from one chunk to the next, checking it between chunks.

`auto_engine` picks among them by the cost model; `ENGINES` maps their names to their layer functions.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from . import kernel
from .kernel import CellStep

if TYPE_CHECKING:
    from .config import LSTMConfig
    from .cost import Clock

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


def input_part(x: Tensor, w: DirectionWeights) -> Tensor:
    """W_ih x + b_ih + b_hh for every row of x (…, I_k) in one GEMM: (…, 4H) (`kernel.input_part`)."""
    return kernel.input_part(x, w.weight_ih, w.bias_ih, w.bias_hh)


def lstm_cell(x_part: Tensor, h: Tensor, c: Tensor, weights: DirectionWeights,
              times_w_hh: Callable[[Tensor], Tensor] | None = None) -> CellStep:
    """One LSTM step (`kernel.cell`). x_part (…, 4H) is `input_part` of x_t; h (…, H_r) and c (…, H) the previous
    state.

    times_w_hh: h ↦ h W_hhᵀ, when the caller has a faster product for it (`step_product`); by default a matmul.
    """
    recurrent = times_w_hh(h) if times_w_hh is not None else h @ weights.weight_hh.T
    return kernel.cell(x_part + recurrent, c, weights.weight_hr)  # z_t = W_ih x_t + b + W_hh h_{t−1}


def run_direction(x: Tensor, h0: Tensor, c0: Tensor, w: DirectionWeights, reverse: bool,
                  record: dict[str, Tensor] | None = None, clock: Clock | None = None,
                  direction: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """One layer, one direction, step by step: the reference engine. x (T, B, I_k), h0 (B, H_r), c0 (B, H).

    Returns h for every t (T, B, H_r), h_n and c_n. If `record` is given (views (T, B, ·): "gates" with
    4H rows i, f, g, o, then "c" and "h"), every step is written there, indexed by input position also
    when reverse. A `clock` is told before each step how many of this `direction`'s steps are done.
    """
    seq_len, batch = x.shape[:2]
    x_part = input_part(x, w)  # W_ih x_t + b_ih + b_hh for all t in one GEMM   (T, B, 4H)
    times_w_hh = step_product(w.weight_hh, batch)  # h ↦ W_hh h, the one GEMM left in each step
    h, c = h0, c0
    steps: dict[str, list[Tensor]] = {q: [] for q in QUANTITIES}
    for k, t in enumerate(range(seq_len - 1, -1, -1) if reverse else range(seq_len)):
        if clock is not None:
            clock.tick(direction, k)  # may report progress, or raise TooSlow past the deadline
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
                   record: dict[str, Tensor] | None, clock: Clock | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """One layer, each direction by `run_direction`. h0 (D, B, H_r), c0 (D, B, H); record views (D, T, B, ·)."""
    outs, h_n, c_n = [], [], []
    for d, w in enumerate(weights):
        rec = None if record is None else {q: r[d] for q, r in record.items()}
        out, h_last, c_last = run_direction(x, h0[d], c0[d], w, reverse=d == 1, record=rec, clock=clock, direction=d)
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
            return packed_product(weight, batch)
        except RuntimeError:  # a build without these kernels: the plain product is as exact
            pass
    return lambda h: h @ weight.T


def packed_product(weight: Tensor, batch: int) -> Callable[[Tensor], Tensor]:
    """h ↦ h Wᵀ by oneDNN's GEMM on W prepacked for this batch size; RuntimeError where the kernels are absent."""
    packed = torch.ops.mkldnn._reorder_linear_weight(weight, batch)
    return lambda h: torch.ops.mkldnn._linear_pointwise(h, packed, None, "none", [], "")


def auto_engine(cfg: LSTMConfig, seq_len: int, batch: int, device: str | torch.device = "cpu",
                dtype: torch.dtype = torch.float32) -> str:
    """The faster engine for this run by the cost model (`cost.faster_engine`). Stepwise computes each GEMM once,
    fused computes them twice (torch's kernel, then the gate rebuild) but without per-step Python: stepwise wins
    where each step is a big GEMM that runs at nn.LSTM's speed (big weights, big batches, oneDNN's packed product
    on the CPU), fused where per-step overhead dominates (small weights, long inputs)."""
    from .cost import faster_engine  # cost times these engines, so it imports this module

    return faster_engine(cfg, seq_len, batch, device, dtype)


def engine_label(engine: str, x: Tensor) -> str:
    """What a trace reports as the engine that ran `engine` on x: its name, or for a compiled engine that fell back,
    "stepwise (compiled cell unavailable: <why>; slower)"."""
    if engine != "compiled":
        return engine
    from . import compiled

    return compiled.label(x)


def scan_by_passes(seq_len: int, units: int) -> bool:
    """Whether `linear_scan` takes the log-depth scheme for this shape: units = the values of one step (B·H)."""
    # Measured on 2 CPU cores: a loop step costs ~6 µs + 0.5 ns/unit, a scan pass ~1.5 ns per value.
    return units * (1.5 * math.log2(max(seq_len, 2)) - 0.5) < 6000


def linear_scan(f: Tensor, u: Tensor, c0: Tensor, out: Tensor) -> Tensor:
    """c_t = f_t ⊙ c_{t−1} + u_t for t = 0..T−1 from c_{−1} = c0, into `out`. f, u (T, B, H).

    By whichever of two schemes costs less for this shape: a step loop (one fused multiply-add per step:
    cheap when each step has many units) or a log-depth Hillis–Steele scan (log2 T passes over the whole
    sequence: cheap when steps are many and small). Neither divides, so gates that underflowed to 0 are
    handled exactly; both round like the recurrence itself (tested against it, and against nn.LSTM's c_n).
    """
    if scan_by_passes(f.shape[0], f[0].numel()):
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
                record: dict[str, Tensor] | None, clock: Clock | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """One layer, all directions. x (T, B, I_k); h0 (D, B, H_r), c0 (D, B, H).

    record: views (D, T, B, ·) to fill: "gates" (4H, rows i, f, g, o), "c" and "h". With a `clock`, in chunks
    of steps (`fused_in_chunks`) so that it can report progress and stop.
    """
    if clock is not None and record is not None:
        return fused_in_chunks(x, h0, c0, weights, record, clock)
    D = len(weights)
    has_bias = weights[0].bias_ih is not None
    params = [p for w in weights for p in w.flat()]
    out, h_n, c_n = torch.lstm(x, (h0, c0), params, has_biases=has_bias, num_layers=1, dropout=0.0, train=False,
                                bidirectional=D == 2, batch_first=False)  # out (T, B, D·H_r)
    if record is None:
        return out, h_n, c_n
    H_r = h0.shape[-1]
    for d, w in enumerate(weights):
        h = out[..., d * H_r:(d + 1) * H_r]  # h_t indexed by input position
        rebuild(x, h, h0[d], c0[d], w, gates_weight(w), record["gates"][d], record["c"][d], reverse=d == 1)
        record["h"][d].copy_(h)
    return out, h_n, c_n


def gates_weight(w: DirectionWeights) -> Tensor:
    """[W_ih, W_hh] (4H, I_k + H_r): z_t without the bias is this times [x_t, h_{t−1}]."""
    return torch.cat((w.weight_ih, w.weight_hh), dim=1)


def rebuild(x: Tensor, h: Tensor, h_before: Tensor, c_before: Tensor, w: DirectionWeights, W: Tensor,
            gates: Tensor, c_out: Tensor, reverse: bool) -> None:
    """Every gate and c of a run of steps from its x (n, B, I_k) and the h it computed (n, B, H_r), indexed by
    input position; h_before and c_before are the state before its first step in this direction's order (h0, c0
    for a whole sequence). Writes gates (n, B, 4H) and c (n, B, H), contiguous views of the trace's buffers."""
    n, B = x.shape[:2]
    H = c_out.shape[-1]
    # [x_t, h_{t−1}] as step t saw them: h_{t−1} is the previous step in this direction's order, h_before first.
    h_prev = torch.cat((h[1:], h_before[None])) if reverse else torch.cat((h_before[None], h[:-1]))
    xh = torch.cat((x, h_prev), dim=-1)
    xh = xh.view(n * B, xh.shape[-1])
    # z_t = W_ih x_t + W_hh h_{t−1} + b_ih + b_hh, for all t at once, written straight into the
    # trace's gate buffer (n, B, 4H) and activated there in place: no (n, B, 4H) temporary.
    flat = gates.view(n * B, 4 * H)
    if w.bias_ih is not None:
        torch.addmm(w.bias_ih + w.bias_hh, xh, W.T, out=flat)
    else:
        torch.mm(xh, W.T, out=flat)
    gates[..., 2 * H:3 * H].tanh_()  # g_t = tanh(W_ig x_t + b_ig + W_hg h_{t−1} + b_hg)
    gates[..., :2 * H].sigmoid_()  # i_t, f_t = σ(W_i· x_t + b_i· + W_h· h_{t−1} + b_h·)
    gates[..., 3 * H:].sigmoid_()  # o_t = σ(W_io x_t + b_io + W_ho h_{t−1} + b_ho)
    i, f, g = gates[..., :H], gates[..., H:2 * H], gates[..., 2 * H:3 * H]
    # c_t = f_t ⊙ c_{t−1} + i_t ⊙ g_t, run in this direction's own time order
    if reverse:  # flip() copies, so scan into a buffer and flip that back
        c = linear_scan(f.flip(0), (i * g).flip(0), c_before, out=x.new_empty(n, B, H))
        c_out.copy_(c.flip(0))
    else:
        linear_scan(f, i * g, c_before, out=c_out)


FIRST_CHUNK = 16  # steps; later chunks are sized by the clock from how long the last one took


def fused_in_chunks(x: Tensor, h0: Tensor, c0: Tensor, weights: list[DirectionWeights], record: dict[str, Tensor],
                    clock: Clock) -> tuple[Tensor, Tensor, Tensor]:
    """`fused_layer` direction by direction, a chunk of steps at a time: torch.lstm over the chunk from the (h, c)
    the previous chunk ended with, then its gates and c (`rebuild`), then the clock. Same values as one call, to
    rounding (the tests hold both to nn.LSTM); a reverse chunk is fed to torch.lstm flipped, as its own kernel
    does."""
    T, B = x.shape[:2]
    D, H_r = len(weights), h0.shape[-1]
    has_bias = weights[0].bias_ih is not None
    out = x.new_empty(T, B, D * H_r)
    h_n, c_n = [], []
    for d, w in enumerate(weights):
        reverse, W = d == 1, gates_weight(w)
        h, c, c_scan = h0[d], c0[d], c0[d]  # torch.lstm's state, and the rebuilt c, before the next chunk
        done, n = 0, FIRST_CHUNK
        while done < T:
            n = min(n, T - done)
            a, b = (T - done - n, T - done) if reverse else (done, done + n)  # input positions of this chunk
            start = time.perf_counter()
            xs = x[a:b].flip(0) if reverse else x[a:b]
            hs, h_last, c_last = torch.lstm(xs, (h[None], c[None]), w.flat(), has_biases=has_bias, num_layers=1,
                                            dropout=0.0, train=False, bidirectional=False, batch_first=False)
            hs = hs.flip(0) if reverse else hs
            rebuild(x[a:b], hs, h, c_scan, w, W, record["gates"][d][a:b], record["c"][d][a:b], reverse)
            record["h"][d][a:b] = hs
            out[a:b, :, d * H_r:(d + 1) * H_r] = hs
            h, c, c_scan = h_last[0], c_last[0], record["c"][d][a if reverse else b - 1]
            done += n
            if x.is_cuda:  # time the chunk's work, not its launches: chunks and reports then follow the GPU
                torch.cuda.synchronize(x.device)
            clock.tick(d, done)
            n = clock.next_chunk(n, time.perf_counter() - start)
        h_n.append(h)
        c_n.append(c)
    return out, torch.stack(h_n), torch.stack(c_n)


def compiled_layer(x: Tensor, h0: Tensor, c0: Tensor, weights: list[DirectionWeights],
                   record: dict[str, Tensor] | None, clock: Clock | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """One layer, each direction by the compiled cell (`compiled.trace_steps`: the input part in one GEMM, then
    per step one GEMM and one loop over (B, H), straight into the record). Where it cannot run (no build, CUDA,
    half precision), `stepwise_layer`, which computes the same to rounding. With a `clock`, in chunks of steps."""
    from . import compiled  # builds the C++ cell at first use

    if compiled.runs_on(x) is not None:
        return stepwise_layer(x, h0, c0, weights, record, clock)
    T, B = x.shape[:2]
    D, H, H_r = len(weights), c0.shape[-1], h0.shape[-1]
    if record is None:
        record = {"gates": x.new_empty(D, T, B, 4 * H), "c": x.new_empty(D, T, B, H), "h": x.new_empty(D, T, B, H_r)}
    x = x.contiguous()
    h_n, c_n = [], []
    for d, w in enumerate(weights):
        reverse = d == 1
        bias = w.bias_ih + w.bias_hh if w.bias_ih is not None else None  # b_ih + b_hh, added as input_part adds it
        gates, c, h = record["gates"][d], record["c"][d], record["h"][d]
        h_before, c_before = h0[d], c0[d]
        prepared = compiled.prepare(w.weight_ih, w.weight_hh, B)  # the fastest products here, once
        done, n = 0, T if clock is None else FIRST_CHUNK
        while done < T:
            n = min(n, T - done)
            a, b = (T - done - n, T - done) if reverse else (done, done + n)  # input positions of this chunk
            start = time.perf_counter()
            compiled.trace_steps(x[a:b], h_before, c_before, w.weight_ih, w.weight_hh, bias, w.weight_hr, reverse,
                                 gates[a:b], c[a:b], h[a:b], prepared)
            last = a if reverse else b - 1  # the state the next chunk starts from
            h_before, c_before = h[last], c[last]
            done += n
            if clock is not None:
                clock.tick(d, done)
                n = clock.next_chunk(n, time.perf_counter() - start)
        h_n.append(h_before)
        c_n.append(c_before)
    out = torch.cat([record["h"][d] for d in range(D)], dim=-1) if D > 1 else record["h"][0]
    return out, torch.stack(h_n), torch.stack(c_n)


ENGINES = {"stepwise": stepwise_layer, "fused": fused_layer, "compiled": compiled_layer}
