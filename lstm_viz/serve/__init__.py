"""What `lstm-viz app` runs: `streamlit run` on this folder's script, with the options of this folder's config.toml.

Streamlit reads .streamlit/config.toml from the current directory (and from beside the script), so a server
started elsewhere would lose the checkout's options: `lstm-viz app` passes each one as a --section.key=value flag
instead, wherever it is started. Flags given after ours win, so `lstm-viz app --server.port 8600` works.

streamlit_app.py sits alone in this folder because Streamlit puts the script's folder first on sys.path: from
lstm_viz/ itself, lstm_viz/trace.py would shadow the standard library's trace module.
"""

from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

HERE = Path(__file__).parent
SCRIPT = HERE / "streamlit_app.py"
OPTIONS = HERE / "config.toml"
DEFAULT_PORT = 8501  # Streamlit's


def options(table: dict | None = None, prefix: str = "") -> dict[str, object]:
    """The server's options by Streamlit's dotted names, e.g. {"server.headless": True, ...} (nested tables, such
    as [theme.sidebar], give theme.sidebar.key)."""
    if table is None:
        table = tomllib.loads(OPTIONS.read_text(encoding="utf-8"))
    found = {}
    for key, value in table.items():
        if isinstance(value, dict):
            found |= options(value, f"{prefix}{key}.")
        else:
            found[prefix + key] = value
    return found


def flag_value(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)  # TOML's true, not Python's True


def flags() -> list[str]:
    """Each option as a flag; a list (e.g. client.allowedOrigins) as the flag repeated, as Streamlit takes it."""
    return [f"--{name}={flag_value(item)}" for name, value in options().items()
            for item in (value if isinstance(value, list) else [value])]


def command(extra: list[str]) -> list[str]:
    """`python -m streamlit run <script> <our options> <extra>`, with this interpreter (the installed package's)."""
    return [sys.executable, "-m", "streamlit", "run", str(SCRIPT), *flags(), *extra]


def port(extra: list[str]) -> str:
    """The port the server is asked for: the last --server.port in `extra`, else Streamlit's environment
    variable, else its default. (Unasked, Streamlit moves to the next free port and its own "Local URL" says so.)"""
    found = os.environ.get("STREAMLIT_SERVER_PORT", str(DEFAULT_PORT))
    for i, arg in enumerate(extra):
        if arg.startswith("--server.port="):
            found = arg.partition("=")[2]
        elif arg == "--server.port" and i + 1 < len(extra):
            found = extra[i + 1]
    return found
