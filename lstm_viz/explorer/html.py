"""The explorer as one self-contained HTML file: data and scripts inlined, so it steps offline from file://."""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from ..trace import Trace
from .payload import unit_payload, unpack, window_payload

ASSETS = Path(__file__).parent / "assets"
FILE_BUDGET = 32 * 2**20  # a file holds a larger window than a page: nobody can ask it for the next one


class Explored:
    """An explorer document that a notebook shows inline (an iframe of it: its scripts stay in their own
    page) and that can be saved as a file."""

    def __init__(self, document: str):
        self.html = document

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{html.escape(self.html, quote=True)}" style="width: 100%; height: 1500px; '
                'border: 0" sandbox="allow-scripts"></iframe>')

    def save(self, path: str | Path) -> Path:
        Path(path).write_text(self.html, encoding="utf-8")
        return Path(path)


def _plotly_js() -> str:
    from plotly.offline import get_plotlyjs  # the installed package's bundle, as plotly's own HTML export uses

    return get_plotlyjs()


def _script_json(value) -> str:
    """JSON safe inside a <script> element: no '<' can close it early."""
    return json.dumps(value, ensure_ascii=True).replace("<", "\\u003c")


def to_html(trace: Trace, path: str | Path | None = None, *, t: int = 0, layer: int = 0, direction: int = 0,
            unit: int = 0, batch: int = 0, labels: list[str] | None = None, vocab: tuple[str, ...] | None = None,
            readout=None, title: str = "lstm-viz explorer", budget: int = FILE_BUDGET) -> str:
    """The explorer of (layer, direction) around step t as one HTML document; written to `path` when given.

    Sequences beyond the byte budget keep the window around t (the page says which steps it holds). Every label
    and the title are escaped: a file name or a typed label can never become markup or a script.
    """
    window = window_payload(trace, layer, direction, t, labels=labels, vocab=vocab, readout=readout,
                            budget=budget)
    header, _ = unpack(window)
    focus = unit_payload(trace, layer, direction, (header["start"], header["stop"]), unit, batch, t, header["id"])
    document = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>body {{ margin: 16px; }} h1 {{ font: 600 20px "DejaVu Sans", sans-serif; }}
{(ASSETS / "explorer.css").read_text()}</style>
<script>{_plotly_js()}</script>
<script>{(ASSETS / "explorer.js").read_text()}</script>
</head><body>
<h1>{html.escape(title)}</h1>
<div id="lvx-root"></div>
<script>
(function () {{
  var raw = atob("{base64.b64encode(window).decode("ascii")}");
  var bytes = new Uint8Array(raw.length);
  for (var k = 0; k < raw.length; k++) bytes[k] = raw.charCodeAt(k);
  var explorer = LstmExplorer.mount(document.getElementById("lvx-root"), {{}});
  explorer.update(bytes);
  explorer.focus({_script_json(focus)});
  window.lstmVizExplorer = explorer;
}})();
</script>
</body></html>
"""
    if path is not None:
        Path(path).write_text(document, encoding="utf-8")
    return document
