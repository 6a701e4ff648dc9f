"""Links: the app's state (frozen dataclasses of plain values) to URL query parameters and back. No streamlit.

Only values that differ from the defaults are written, so a link stays short. Reading is forgiving: a value that
is malformed, out of range or not among the allowed choices is skipped, with a message naming it, and the
default stays.
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import TypeVar

State = TypeVar("State")
MAX_LINK_TEXT = 2000  # characters of free text (typed numbers, a text string) a link carries


def to_query(state) -> dict[str, str]:
    """The fields of `state` that differ from its class's defaults, as query parameters."""
    default = type(state)()
    return {f.name: to_text(getattr(state, f.name)) for f in fields(state)
            if getattr(state, f.name) != getattr(default, f.name)}


def from_query(cls: type[State], params: dict[str, str], limits: dict[str, tuple] | None = None,
               choices: dict[str, tuple] | None = None) -> tuple[State, list[str]]:
    """A `cls` from the query parameters that name its fields; the problems met, one message each."""
    limits, choices = limits or {}, choices or {}
    default = cls()
    values, problems = {}, []
    for f in fields(default):
        if f.name not in params:
            continue
        text = params[f.name]
        kind = type(getattr(default, f.name))
        if len(text) > MAX_LINK_TEXT:
            problems.append(f"URL parameter {f.name} is {len(text):,} characters long, more than a link carries "
                            f"({MAX_LINK_TEXT:,}); ignored")
            continue
        try:
            value = from_text(text, kind)
        except (ValueError, TypeError, OverflowError):
            problems.append(f"URL parameter {f.name}={text!r} is not a valid {kind.__name__}; ignored")
            continue
        if f.name in limits and not limits[f.name][0] <= value <= limits[f.name][1]:
            low, high = limits[f.name]
            problems.append(f"URL parameter {f.name}={text!r} is outside {low:,} … {high:,}; ignored")
        elif f.name in choices and value not in choices[f.name]:
            problems.append(f"URL parameter {f.name}={text!r} is not one of {', '.join(map(str, choices[f.name]))}; "
                            "ignored")
        else:
            values[f.name] = value
    return replace(default, **values), problems


def to_text(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def from_text(text: str, kind: type):
    """`text` as a `kind` (bool, int, float or str); raises ValueError."""
    if kind is bool:
        if text.lower() not in ("true", "false", "1", "0"):
            raise ValueError(text)
        return text.lower() in ("true", "1")
    if kind is float:
        value = float(text)
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(text)  # NaN and ±inf are never a setting
        return value
    return kind(text)
