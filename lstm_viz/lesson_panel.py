"""The guided lesson's panel at the top of the page: the step's text and question, the answer once revealed, Back
and Next, links to the step; the outline around the part of the page to look at; classroom mode's hidden
controls. A UI module (imports streamlit); the lesson itself is data in lstm_viz.lesson.
"""

from __future__ import annotations

from dataclasses import fields

import streamlit as st

from . import escape, training
from . import page_state as state
from .guard import ResourceError
from .lesson import STEP_KEYS, Step, best_cell_unit, link_query, neighbour, position, step
from .unit_ranking import RANKING_BATCH
from .view import TABS, Origin

REVEALED = "lesson.revealed"  # keys of the steps whose answer this session has revealed
UNIT_OPENED = "lesson.unit_opened"  # the trained step whose best unit was opened since the step was entered
HIGHLIGHT = ("{selector} {{ outline: 3px solid #f59e0b; outline-offset: 2px; border-radius: 0.5rem; }}\n"
             # a tab's label sits in a strip that clips what lies outside it: there, the outline goes inside
             ".st-key-tab [data-testid='stTab']:is({selector}) {{ outline-offset: -3px; }}")
# A class is shown the lesson and the views: not the settings (the sidebar is not drawn), nor the downloads.
CLASSROOM_CSS = f".st-key-tab [data-testid='stTab'][data-key='{list(TABS).index('export')}'] {{ display: none; }}"


def go_to(key: str) -> None:
    """Enter a step: its whole setup (settings, sources, view) replaces the page's, so it looks the same whatever
    came before. A button's callback, run before the page is drawn."""
    entered = step(key)
    parts = ((state.CONFIG, entered.config), (state.SOURCES, entered.sources), (state.VIEW, entered.view),
             (state.ORIGIN, Origin()))  # what an earlier link could not carry is no longer what the page shows
    for part, value in parts:
        state.update(part, **{f.name: getattr(value, f.name) for f in fields(value)})
    state.update(state.LESSON, lesson=key)  # a class stays a class
    st.session_state.pop(UNIT_OPENED, None)


def start() -> None:
    go_to(STEP_KEYS[0])


def leave() -> None:
    """Back to the plain app, with every control; the view stays as the step left it."""
    state.update(state.LESSON, lesson="", classroom=False)


def reveal(key: str) -> None:
    st.session_state[REVEALED] = st.session_state.get(REVEALED, frozenset()) | {key}


def show() -> None:
    """The lesson's panel, when the page runs one (else nothing); in classroom mode, the controls hidden."""
    current = state.lesson()
    css = [CLASSROOM_CSS] if current.classroom else []
    shown = current.step
    if shown is not None:
        css.append(HIGHLIGHT.format(selector=shown.highlight))
    if css:
        st.html("<style>" + "\n".join(css) + "</style>")  # only a style: Streamlit adds it without taking space
    if shown is None:
        return
    with st.container(border=True, key="lesson_panel"):
        st.markdown(f"##### Lesson · step {position(shown.key) + 1} of {len(STEP_KEYS)}: {shown.title}")
        st.markdown(f"{shown.look}\n\n:orange[**Look at {shown.where}**] (outlined in orange).")
        if shown.trained_task:
            trained_step(shown)
        st.markdown(f"**Predict first:** {shown.question}")
        if shown.choices:
            st.markdown("\n".join(f"{chr(ord('A') + k)}. {choice}  " for k, choice in enumerate(shown.choices)))
        if shown.key in st.session_state.get(REVEALED, ()):
            right = f"**{chr(ord('A') + shown.correct)}.** " if shown.correct is not None else ""
            st.success(right + shown.answer, icon=":material/lightbulb:")
        else:
            st.button("Reveal the answer", key="lesson_reveal", on_click=reveal, args=(shown.key,),
                      icon=":material/visibility:", help="after the class has made its prediction")
        moves(shown)


def moves(shown: Step) -> None:
    """Back, Next and Leave, then the links to this step."""
    back, ahead = neighbour(shown.key, -1), neighbour(shown.key, +1)
    row = st.container(horizontal=True, wrap=True)  # each button as wide as its label: a narrow page wraps them
    row.button("Back", key="lesson_back", on_click=go_to, args=(back,), disabled=back is None,
               icon=":material/arrow_back:")
    row.button("Next", key="lesson_next", on_click=go_to, args=(ahead,), disabled=ahead is None,
               icon=":material/arrow_forward:", type="primary")
    row.button("Leave the lesson", key="lesson_leave", on_click=leave, icon=":material/close:")
    with row.popover("Link to this step", icon=":material/link:"):
        base = st.context.url or ""  # None outside a browser (AppTest): the links are then relative
        st.caption("Opens this step, set up as here:")
        st.code(base + link_query(shown.key), language=None, wrap_lines=True)
        st.caption("For a class (the lesson and the views only, without the settings):")
        st.code(base + link_query(shown.key, classroom=True), language=None, wrap_lines=True)


def trained_step(shown: Step) -> None:
    """A step that shows a trained toy task: train it (shared by every session: seeded, so the same weights), and
    once done open the unit that tracks the task best."""
    seed, session = shown.config.seed, state.session()
    job = session.training(shown.trained_task, seed)
    if job is None or (job.done and job.error):  # not trained in this session yet, or cancelled: train it now
        try:
            job = training.start(shown.trained_task, seed)
        except ResourceError as err:
            st.warning(f"{err} Until then this step shows the untrained weights.", icon=":material/hourglass_top:")
            return
        session.keep_training(job)
    if not job.done:  # the toy task's panel below shows its progress, and redraws the page when it is done
        st.info("Training the task for this step (a few seconds): the view below changes to the trained weights "
                "when it is done.", icon=":material/model_training:")
        return
    if job.error:
        st.error(escape.markdown(job.error), icon="⚠️")
        return
    if not shown.best_unit:
        return
    best = best_cell_unit(job.ranking(seed))
    if st.session_state.get(UNIT_OPENED) != shown.key:  # once per entry: the user may then choose another
        state.update(state.VIEW, layer=best.layer, direction=best.direction, unit=best.unit)
        st.session_state[UNIT_OPENED] = shown.key
    st.caption(f"Unit {best.unit}'s cell state c follows {best.variable} with r = {best.r:+.2f} (Pearson, over "
               f"{RANKING_BATCH} examples of the task).")
