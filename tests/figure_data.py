"""Read figures back as data: Plotly JSON specs (from AppTest or to_json) into numpy arrays."""

from __future__ import annotations

import base64
import json
import re

import numpy as np

from lstm_viz.explorer import unpack
from lstm_viz.figures import DISPLAY_ORDER


def decode_array(value) -> np.ndarray:
    """A Plotly array: a plain list, or Plotly 6+'s typed array {"dtype", "bdata", "shape"}."""
    if isinstance(value, dict) and "bdata" in value:
        array = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        if "shape" in value:
            array = array.reshape([int(s) for s in str(value["shape"]).split(",")])
        return array
    return np.asarray(value)


def spec_of(element) -> dict:
    """The figure JSON of an AppTest plotly_chart element (Streamlit 1.67: proto.spec)."""
    proto = element.proto
    return json.loads(proto.spec if proto.spec else proto.figure.spec)


def chart(at, key: str) -> dict:
    """The figure spec of the plotly_chart whose user key is `key`."""
    matches = [spec_of(c) for c in at.get("plotly_chart") if c.proto.id.endswith(f"-{key}")]
    assert len(matches) == 1, f"expected one chart with key {key!r}, found {len(matches)}"
    return matches[0]


def heatmap_z(spec: dict, index: int = 0) -> np.ndarray:
    return decode_array(spec["data"][index]["z"])


def component(at, key: str):
    """The proto of the components.v2 element whose user key is `key` (AppTest shows it as an unknown element)."""
    matches = [e.proto for e in at.get("bidi_component") if e.proto.id.endswith(f"-{key}")]
    assert len(matches) == 1, f"expected one component with key {key!r}, found {len(matches)}"
    return matches[0]


def explorer_window(at) -> tuple[dict, dict[str, np.ndarray]]:
    """The explorer's window payload as the page receives it: header and arrays."""
    return unpack(component(at, "explorer").bytes)


def explorer_focus(at) -> dict:
    """The explorer's unit payload: the view Python holds and the inspected unit's terms."""
    return json.loads(component(at, "explorer_focus").json)


def step_z(at, name: str) -> np.ndarray:
    """What the explorer draws as the step heatmap of one quantity (batch × units) at the view's t: the window
    payload's slice at t (the page indexes the same arrays)."""
    header, arrays = explorer_window(at)
    t = explorer_focus(at)["t"]
    assert header["start"] <= t < header["stop"], f"t={t} outside the window {header['start']}..{header['stop']}"
    assert name in DISPLAY_ORDER
    return arrays[name][t - header["start"]]


def explorer_html(document: str) -> tuple[dict, dict[str, np.ndarray], dict]:
    """An exported explorer page's window payload (header, arrays) and unit payload, as its script reads them."""
    header, arrays = unpack(base64.b64decode(re.search(r'atob\("([A-Za-z0-9+/=]+)"\)', document).group(1)))
    focus = json.loads(re.search(r"explorer\.focus\((\{.*?\})\);", document).group(1))
    return header, arrays, focus
