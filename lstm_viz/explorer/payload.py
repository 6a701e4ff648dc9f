"""What the in-page time explorer receives: one layer-direction's trace over a window of steps, packed once.

The window payload is bytes: b"LVX1", a little-endian uint32 n, n bytes of JSON header (padded to 4 bytes),
then float32 arrays, each at the header's byte offset from the blob start. The page copies the bytes once
(Streamlit hands them over as a possibly unaligned Uint8Array) and views every array in place.

The unit payload is small JSON: the inspected unit's gate pre-activations split into W x_t, W h_prev and the
bias over the same window, so choosing another unit does not resend the window.
"""

from __future__ import annotations

import base64
import hashlib
import json
import struct

import numpy as np
import torch

from ..config import GATE_ORDER, LSTMConfig
from ..figures import (
    DIRECTION_NAMES,
    DISPLAY_ORDER,
    DIVERGING_SCALE,
    GATE_SCALE,
    MARKER,
    OVER_TIME_MAX_VALUES,
    cell_bound,
    time_window,
)
from ..tasks import Readout
from ..trace import Trace

MAGIC = b"LVX1"
VERSION = 1
BYTE_BUDGET = 8 * 2**20  # a window's arrays at most this many bytes; longer sequences are windowed


def step_bytes(trace: Trace, layer: int, readout: Readout | None = None) -> int:
    """float32 bytes one step of a layer's window costs: six quantities, its input and output, the readout."""
    B, H, Hr = trace.batch_size, trace.config.hidden_size, trace.h.shape[-1]
    values = 5 * B * H + B * Hr + B * trace.layer_inputs[layer].shape[-1]
    if trace.num_directions == 2:
        values += 2 * B * Hr  # the layer's output: both directions side by side (else it is h itself)
    if readout is not None:
        values += B * (1 if readout.prediction is None else 2)
    return 4 * values


def window_steps(trace: Trace, layer: int, readout: Readout | None = None, budget: int = BYTE_BUDGET) -> int:
    """Steps one window holds: the whole sequence when it fits the byte budget, else as many as fit (≥ 1)."""
    return max(1, min(trace.seq_len, budget // step_bytes(trace, layer, readout)))


def window_of(trace: Trace, layer: int, t: int, readout: Readout | None = None,
              budget: int = BYTE_BUDGET) -> tuple[int, int]:
    """[start, stop) of the window holding t. Windows move in half-window strides (the page computes the same
    function, so it knows when to ask for the next one, and t keeps a quarter window of margin)."""
    return time_window(trace.seq_len, t, window_steps(trace, layer, readout, budget))


def _state_before(trace: Trace, name: str, layer: int, direction: int, start: int, stop: int) -> torch.Tensor:
    """h or c as the window's first processed step sees it (step start forward, stop − 1 reverse), (B, ·)."""
    first = stop - 1 if direction == 1 else start
    previous = trace.h_prev if name == "h" else trace.c_prev
    return previous(layer, direction, first)


def time_labels(trace: Trace, labels: list[str] | None) -> list[str]:
    return list(labels) if labels is not None and len(labels) == trace.seq_len else [str(t) for t in
                                                                                      range(trace.seq_len)]


def window_payload(trace: Trace, layer: int, direction: int, t: int, *, labels: list[str] | None = None,
                   vocab: tuple[str, ...] | None = None, readout: Readout | None = None,
                   budget: int = BYTE_BUDGET) -> bytes:
    """The window holding step t of (layer, direction), packed for the page."""
    start, stop = window_of(trace, layer, t, readout, budget)
    arrays: dict[str, np.ndarray] = {name: trace.array(name)[layer, direction, start:stop]  # (W, B, H or Hr)
                                     for name in DISPLAY_ORDER}
    arrays["x"] = trace.layer_inputs[layer][start:stop].detach().cpu().numpy()  # (W, B, I_layer)
    if trace.num_directions == 2:
        arrays["out"] = trace.layer_output(layer)[start:stop]
    arrays["h_before"] = _state_before(trace, "h", layer, direction, start, stop).detach().cpu().numpy()
    arrays["c_before"] = _state_before(trace, "c", layer, direction, start, stop).detach().cpu().numpy()
    if readout is not None:
        arrays["target"] = readout.target[start:stop]
        if readout.prediction is not None:
            arrays["prediction"] = readout.prediction[start:stop]
    config = trace.config
    header = {
        "version": VERSION,
        "layer": layer, "direction": direction, "direction_name": DIRECTION_NAMES[direction],
        "num_layers": trace.num_layers, "num_directions": trace.num_directions,
        "seq_len": trace.seq_len, "start": start, "stop": stop,
        "window_steps": window_steps(trace, layer, readout, budget),
        "batch": trace.batch_size, "hidden": config.hidden_size, "h_units": trace.h.shape[-1],
        "input_size": int(arrays["x"].shape[-1]),
        "input_name": "x (the input)" if layer == 0 else f"h of layer {layer - 1} (this layer's input)",
        "vocab": list(vocab) if vocab is not None and layer == 0 else None,
        "labels": time_labels(trace, labels)[start:stop],
        "c_bound": cell_bound(trace, layer, direction),
        "over_time_values": OVER_TIME_MAX_VALUES,
        "order": list(DISPLAY_ORDER),
        "proj_size": config.proj_size,
        "scales": {"gate": GATE_SCALE, "diverging": DIVERGING_SCALE}, "marker": MARKER["color"],  # DESIGN.md's
    }
    return pack(header, arrays)


def pack(header: dict, arrays: dict[str, np.ndarray]) -> bytes:
    """MAGIC, header length, JSON header (with each array's offset and shape), then the float32 blob."""
    blobs, offset, layout = [], 0, {}
    for name, values in arrays.items():
        data = np.ascontiguousarray(values, dtype="<f4")
        layout[name] = {"offset": offset, "shape": list(data.shape)}
        blobs.append(data.tobytes())
        offset += data.nbytes
    header = header | {"arrays": layout}
    digest = hashlib.sha1(json.dumps(header, sort_keys=True).encode())
    for blob in blobs:
        digest.update(blob)
    header["id"] = digest.hexdigest()[:20]  # the same content, the same id: the page skips what it already shows
    text = json.dumps(header, ensure_ascii=True, allow_nan=False).encode("ascii")
    text += b" " * (-len(text) % 4)  # the blob starts 4-aligned, so the page views it as Float32Array in place
    return MAGIC + struct.pack("<I", len(text)) + text + b"".join(blobs)


def unpack_header(payload: bytes) -> dict:
    """A window payload's header alone (its id, window and sizes), without touching the arrays."""
    if payload[:4] != MAGIC:
        raise ValueError("not an lstm-viz explorer payload")
    (n,) = struct.unpack("<I", payload[4:8])
    return json.loads(payload[8:8 + n])


def unpack(payload: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """The header and arrays of a window payload (the page's decoder, in Python: for tests and notebooks)."""
    header = unpack_header(payload)
    n = struct.unpack("<I", payload[4:8])[0]
    blob = memoryview(payload)[8 + n:]
    arrays = {}
    for name, spec in header["arrays"].items():
        count = int(np.prod(spec["shape"]))
        arrays[name] = np.frombuffer(blob, "<f4", count, spec["offset"]).reshape(spec["shape"])
    return header, arrays


# --- the inspected unit's equation terms --------------------------------------------------------------------------

def _f32_base64(values) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype="<f4").tobytes()).decode("ascii")


def unit_terms(trace: Trace, layer: int, direction: int, start: int, stop: int, unit: int,
               batch: int) -> dict[str, dict[str, np.ndarray | float]]:
    """Per gate, over steps [start, stop) of one unit and batch element: its pre-activation's input part
    W_ih x_t, recurrent part W_hh h_prev (h_prev = h_{t−1}, or h_{t+1} in reverse) and bias b_ih + b_hh."""
    weights, H = trace.weights, trace.config.hidden_size
    suffix = LSTMConfig.suffix(layer, direction)
    rows = [GATE_ORDER.index(gate) * H + unit for gate in "ifgo"]  # nn.LSTM's row order: i, f, g, o
    x = trace.layer_inputs[layer][start:stop, batch]  # (W, I)
    h = trace.h[layer, direction, :, batch]  # (T, Hr)
    before = _state_before(trace, "h", layer, direction, start, stop)[batch]
    if direction == 1:  # step t reads h_{t+1}: the window's own states shifted left, then the state after it
        h_prev = torch.cat([h[start + 1:stop], before[None]])
    else:  # step t reads h_{t−1}: the state before the window, then the window's own states shifted right
        h_prev = torch.cat([before[None], h[start:stop - 1]])
    input_part = x @ weights["weight_ih" + suffix][rows].T  # (W, 4)
    recurrent_part = h_prev @ weights["weight_hh" + suffix][rows].T  # (W, 4)
    terms = {}
    for k, gate in enumerate("ifgo"):
        bias = float(weights["bias_ih" + suffix][rows[k]] + weights["bias_hh" + suffix][rows[k]]) \
            if trace.config.bias else 0.0
        terms[gate] = {"input": input_part[:, k].detach().cpu().numpy(),
                       "recurrent": recurrent_part[:, k].detach().cpu().numpy(), "bias": bias}
    return terms


def unit_payload(trace: Trace, layer: int, direction: int, window: tuple[int, int], unit: int, batch: int,
                 t: int, window_id: str, seq: int = 0) -> dict:
    """The small JSON payload: the view Python holds (t, unit, batch), the number of the page's last report it
    holds (`seq`: the page ignores a view older than its own), and the unit's terms over the window."""
    start, stop = window
    unit = min(unit, trace.config.hidden_size - 1)
    terms = unit_terms(trace, layer, direction, start, stop, unit, batch)
    return {
        "window_id": window_id, "t": t, "unit": unit, "batch": batch, "seq": seq,
        "terms": {gate: {"input": _f32_base64(parts["input"]), "recurrent": _f32_base64(parts["recurrent"]),
                         "bias": parts["bias"]} for gate, parts in terms.items()},
    }


def decode_terms(payload: dict) -> dict[str, dict[str, np.ndarray | float]]:
    """A unit payload's terms back as arrays (tests and notebooks)."""
    return {gate: {"input": np.frombuffer(base64.b64decode(p["input"]), "<f4"),
                   "recurrent": np.frombuffer(base64.b64decode(p["recurrent"]), "<f4"), "bias": p["bias"]}
            for gate, p in payload["terms"].items()}
