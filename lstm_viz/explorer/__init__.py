"""The time explorer: one layer-direction's trace stepped through in the browser, in the app (component.py),
or offline as one HTML file (to_html). The payload module is what both receive."""

from .html import to_html
from .payload import BYTE_BUDGET, unit_payload, unpack, window_of, window_payload

__all__ = ["BYTE_BUDGET", "to_html", "unit_payload", "unpack", "window_of", "window_payload"]
