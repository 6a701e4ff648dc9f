"""Starting the app under AppTest, shared by the AppTest modules."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

from streamlit.testing.v1 import AppTest

from lstm_viz.links import to_text

APP = str(Path(__file__).resolve().parents[1] / "app.py")
VIEW = "state.view"  # the app's stored View (lstm_viz.page_state.VIEW)


def reference_trace(config):
    """The trace computed directly with lstm_viz for an AppConfig's random input (what the app should show)."""
    from lstm_viz.inputs import random_tensor
    from lstm_viz.pipeline import make_model

    model = make_model(config.lstm_config(), config.seed, "cpu", config.dtype)
    x = random_tensor(config.seq_len, config.batch_size, config.input_size, seed=config.seed).x
    return model.trace(x.transpose(0, 1) if config.batch_first else x)


def start(**state) -> AppTest:
    """The app after its first run, opened with a link that sets `state` (settings, input parameters and view by
    their URL names: hidden_size=6, model_source="toy task", timestep=4, tab="unit", ...)."""
    at = AppTest.from_file(APP, default_timeout=180)  # torch imports and toy-task training take a while
    at.query_params.update({key: to_text(value) for key, value in state.items()})
    return at.run()


def open_tab(at: AppTest, tab: str) -> AppTest:
    """Open a tab (its slug: "step", "unit", "saturation", "shapes", "export") as a click on it would."""
    at.session_state[VIEW] = replace(at.session_state[VIEW], tab=tab)
    return at.run()


def report(at: AppTest, **view) -> AppTest:
    """What the explorer does when the user stops stepping or clicks a cell: it reports t, unit and batch, and
    page_state.follow_page stores them in the view (AppTest cannot run the page's script; Playwright does)."""
    names = {"t": "timestep", "unit": "unit", "batch": "batch_index"}
    at.session_state[VIEW] = replace(at.session_state[VIEW], **{names[k]: v for k, v in view.items()})
    return at.run()


def link(at: AppTest) -> dict[str, str]:
    """The app's URL query parameters, one string each (what a copied link carries)."""
    return {key: value[-1] if isinstance(value, list) else value for key, value in at.query_params.items()}


def rendered(markdown: str) -> str:
    """Markdown as the page reads it: backslash escapes and the invisible word joiners that keep a foreign URL
    from becoming a link (lstm_viz.escape) removed."""
    return re.sub(r"\\(.)", r"\1", markdown).replace("\u2060", "")


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]
