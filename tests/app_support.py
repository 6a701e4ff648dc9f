"""Starting the app under AppTest, shared by the AppTest modules."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def start(**state) -> AppTest:
    """The app after its first run, with `state` put in session state first (widget keys, "view", ...)."""
    at = AppTest.from_file(APP, default_timeout=180)  # torch imports and toy-task training take a while
    for key, value in state.items():
        at.session_state[key] = value
    return at.run()


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
