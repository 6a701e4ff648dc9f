"""The page's state in Streamlit's session: one value per part, under keys that no widget owns.

Streamlit deletes a widget's state on any run that does not draw it (a closed lazy tab, an input source not
chosen), so widgets here only mirror the store: each is given the stored value before it is drawn, and its
on_change callback writes the new value back. Nothing else writes the store, and one function writes the URL.
"""

from __future__ import annotations

from dataclasses import replace

import streamlit as st
from streamlit import runtime
from streamlit.runtime.scriptrunner import get_script_run_ctx

from . import cost, guard
from .lesson import Lesson
from .pipeline import AppConfig
from .session import SessionData, release_disconnected
from .view import LONG_TEXTS, Origin, Sources, View

CONFIG, SOURCES, VIEW, ORIGIN, SESSION = "state.config", "state.sources", "state.view", "state.origin", "state.session"
PAGE_SEQ = "state.page_seq"  # the number of the explorer's last report: echoed, so the page can tell an echo
SIDEBAR_BEHIND = "state.sidebar_behind"  # the explorer chose a unit or batch element the sidebar does not show yet
LESSON = "state.lesson"  # the guided lesson's step and classroom mode (lstm_viz.lesson)


def serve_memory() -> None:
    """At the start of every run on a real server: count the server's own baseline in its memory budget (once),
    and release what sessions whose browser has gone still hold. (Under AppTest there is no server: neither.)"""
    if not runtime.exists() or not runtime.get_instance().is_active_session(_session_id()):
        return  # no server (a notebook, a test without AppTest); AppTest runs a Runtime of its own, like a server
    if not guard.baseline_counted():
        cost.rates()  # calibrate the time estimate now (~0.2 s, ~200 MB briefly): not inside a user's run
        guard.count_process_baseline()
    release_disconnected(runtime.get_instance().is_active_session)


def _session_id() -> str:
    ctx = get_script_run_ctx()
    return ctx.session_id if ctx is not None else ""


def init_from_url() -> list[str]:
    """On a session's first run, the state from the URL (so a copied link reopens the same view); the problems
    met in it, each naming the parameter (none on later runs)."""
    if CONFIG in st.session_state:
        return []
    params = {key: st.query_params[key] for key in st.query_params}
    config, problems = AppConfig.from_query(params)
    sources, more = Sources.from_query(params)
    view, view_problems = View.from_query(params)
    origin, origin_problems = Origin.from_query(params)
    for text, length in LONG_TEXTS.items():
        if getattr(origin, length):  # the link could not carry it: start empty, and say so (see link_gaps)
            sources = replace(sources, **{text: ""})
    lesson, lesson_problems = Lesson.from_query(params)
    if lesson.step is not None:  # a lesson link opens its step as the lesson sets it up: the step's setup wins
        # over the link's own settings (a link copied inside a lesson carries both, and the user may have wandered)
        config, sources, view, origin = lesson.step.config, lesson.step.sources, lesson.step.view, Origin()
    st.session_state.update({CONFIG: config, SOURCES: sources, VIEW: view, ORIGIN: origin, LESSON: lesson,
                             SESSION: SessionData(_session_id())})
    return problems + more + view_problems + origin_problems + lesson_problems


def config() -> AppConfig:
    return st.session_state[CONFIG]


def sources() -> Sources:
    return st.session_state[SOURCES]


def view() -> View:
    return st.session_state[VIEW]


def origin() -> Origin:
    """What the link this session was opened with named but could not carry."""
    return st.session_state[ORIGIN]


def session() -> SessionData:
    return st.session_state[SESSION]


def lesson() -> Lesson:
    return st.session_state[LESSON]


def follow_page(reported: dict) -> None:
    """The explorer's report of where the user is ({t, unit, batch}) into the view. A report that is not three
    integers is ignored: the page keeps its place and the view keeps the last good one."""
    try:
        t, unit, batch = (int(reported[name]) for name in ("t", "unit", "batch"))
    except (KeyError, TypeError, ValueError):
        return
    before = view()
    update(VIEW, timestep=max(0, t), unit=max(0, unit), batch_index=max(0, batch))
    seq = reported.get("seq", 0)
    st.session_state[PAGE_SEQ] = seq if isinstance(seq, int) else 0
    if (unit, batch) != (before.unit, before.batch_index):
        st.session_state[SIDEBAR_BEHIND] = True


def page_seq() -> int:
    """The number of the explorer's last report Python has stored (0 before any)."""
    return st.session_state.get(PAGE_SEQ, 0)


def sidebar_behind() -> bool:
    """Whether the sidebar shows another unit or batch element than the view (once: the flag is cleared)."""
    return bool(st.session_state.pop(SIDEBAR_BEHIND, False))


def update(part: str, **values) -> None:
    """Replace fields of one stored part (CONFIG, SOURCES, VIEW or LESSON)."""
    st.session_state[part] = replace(st.session_state[part], **values)


def bound(part: str, name: str, value=None, key: str | None = None, parse=None) -> dict:
    """Keyword arguments that bind a widget to `name` of a stored part: the widget shows `value` (default: the
    stored value) and writes back what the user chooses (through `parse`, when the widget shows it otherwise).
    Pass them to the widget: st.slider(..., **bound(VIEW, "timestep", t))."""
    key = key or name
    shown = getattr(st.session_state[part], name) if value is None else value
    if st.session_state.get(key) != shown:
        st.session_state[key] = shown  # before the widget is drawn: Streamlit allows it then
    return {"key": key, "on_change": _write_back, "args": (part, name, key, parse)}


def fixed(key: str, value) -> dict:
    """Keyword arguments for a disabled widget that shows `value` and writes nothing back."""
    if st.session_state.get(key) != value:
        st.session_state[key] = value
    return {"key": key, "disabled": True}


def _write_back(part: str, name: str, key: str, parse) -> None:
    value = st.session_state[key]
    update(part, **{name: parse(value) if parse else value})


def write_url(shown_config: AppConfig, shown_view: View, link_origin: Origin) -> None:
    """The one writer of the URL: every setting, input parameter and the whole view, so a copied link reopens
    what is shown; and what the link cannot carry (uploaded weights, a trained task, a file, a long text)."""
    query = (shown_config.to_query() | sources().to_query() | shown_view.to_query() | link_origin.to_query()
             | lesson().to_query())
    if query != {key: st.query_params[key] for key in st.query_params}:
        st.query_params.from_dict(query)
