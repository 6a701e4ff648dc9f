"""lstm-viz: step through an LSTM and see every gate and state. The Streamlit page: `lstm-viz app` runs it, and so
does `streamlit run app.py` in a checkout (both scripts call main() on every run).

Widgets in, figures out. One way through each run: the stored state (settings, input parameters, view) ->
the model and input resolved -> the sidebar drawn from what was resolved -> the views of (run, view) -> the URL.
Every number comes from lstm_viz; this file only wires widgets to it.
"""

from __future__ import annotations

import time
from dataclasses import replace

import streamlit as st
import torch

from lstm_viz import escape, explain, lesson_panel, tasks, training_panel, views
from lstm_viz import page_state as state
from lstm_viz.inputs import MAX_TYPED_CHARS, SIGNAL_KINDS
from lstm_viz.loading import describe
from lstm_viz.pipeline import DEVICES, DTYPES, INPUT_SOURCES, LIMITS, AppConfig
from lstm_viz.resolve import CANCELLED, ModelChoice, Resolved, failed, problem_text, resolve, waiting
from lstm_viz.session import SessionData, Upload
from lstm_viz.shapes import CLASSIC_PRESET
from lstm_viz.view import DISTRIBUTIONS, MODEL_SOURCES, TABS, Sources, origin_of

FIXED_BY = {"uploaded weights": "the uploaded weights", "toy task": "the toy task"}


def cuda_available() -> bool:
    """Asked on every run, as app.py's top level did when the page lived there: this module is imported once per
    process (tests stand in a GPU server by patching torch.cuda.is_available)."""
    return torch.cuda.is_available()


def load_classic_preset() -> None:
    """The PyTorch docs' example: nn.LSTM(10, 20, 2) fed torch.randn(5, 3, 10)."""
    state.update(state.CONFIG, **CLASSIC_PRESET, input_source="random")
    state.update(state.SOURCES, model_source="random init")
    state.update(state.VIEW, timestep=0, layer=0, direction=0)


# --- the model source: random init, uploaded weights or a toy task ----------------------------------------------

def uploaded_model(session: SessionData) -> ModelChoice | None:
    """The uploaded file's LSTM (the user picks one when several are inside), or None while there is none;
    raises WeightsError (or ResourceError, when the server is busy) when it cannot be used."""
    upload = st.session_state.get("weights_upload")
    if upload is None:
        made_with = state.origin()
        if made_with.weights:
            st.warning(f"This link was made with uploaded weights **{escape.markdown(made_with.weights)}** "
                       f"({escape.markdown(made_with.weights_model)}). A link cannot carry weights: upload the same "
                       "file in the sidebar, under model, to see what the link showed.", icon=":material/link:")
        else:
            st.info("Upload a state_dict saved with `torch.save(lstm.state_dict(), path)` (the sidebar, under model); "
                    "an LSTM nested in a bigger model (`encoder.rnn.`…) or a checkpoint dict works too.")
        return None
    data = Upload(upload.getvalue())
    found = session.lstms_in(data)
    prefix = next(iter(found))
    if len(found) > 1:
        prefix = st.selectbox("which LSTM in the file", list(found), key="weights_prefix",
                              format_func=lambda p: f"{p or '(top level)'}: {describe(found[p])}")
    weights = session.weights(data, prefix)
    where = f" at {escape.markdown(prefix)}" if prefix else ""
    tutorial = getattr(getattr(weights, "tutorial_origin", None), "caption", "")  # "tutorial-style module (fl, …) …"
    st.caption(f"Loaded {escape.markdown(upload.name)}{where}: {tutorial}`{describe(weights.config)}` (batch_first is "
               "not stored in weights: set it in the sidebar)")
    return ModelChoice(weights, f"weights {data.digest} {prefix}", None, FIXED_BY["uploaded weights"])


def toy_task_model(config: AppConfig, sources: Sources, session: SessionData) -> ModelChoice | None:
    """The chosen toy task: train it in the background (progress, live loss curve), scrub its training, then its
    trained (or untrained) LSTM (lstm_viz.training_panel)."""
    return training_panel.toy_task_model(config, sources, session, FIXED_BY["toy task"])


def chosen_model(config: AppConfig, sources: Sources, session: SessionData) -> ModelChoice | None:
    """The sidebar's model source as a ModelChoice; None while the user must supply something first."""
    if sources.model_source == "uploaded weights":
        return uploaded_model(session)
    if sources.model_source == "toy task":
        with st.expander("Toy task", expanded=True):
            return toy_task_model(config, sources, session)
    return ModelChoice()


# --- the input source's own parameters ---------------------------------------------------------------------------

def input_params(config: AppConfig, sources: Sources) -> dict | None:
    """The chosen input source's widgets, bound to the stored parameters; returns make_sequence's parameters, or
    None while the user must supply something a link could not carry."""
    source, made_with = config.input_source, state.origin()
    with st.expander(f"Input: {source}", expanded=source != "random"):
        if source == "random":
            st.radio("distribution", DISTRIBUTIONS, horizontal=True, **state.bound(state.SOURCES, "distribution"))
        elif source == "signal":
            cols = st.columns(4)
            cols[0].selectbox("signal", SIGNAL_KINDS, **state.bound(state.SOURCES, "signal_kind"))
            for col, (name, label) in zip(cols[1:], (("signal_period", "period"), ("signal_amplitude", "amplitude"),
                                                     ("signal_noise", "noise (std)")), strict=True):
                col.number_input(label, *Sources.LIMITS[name], **state.bound(state.SOURCES, name))
        elif source == "typed":
            if made_with.typed_text_chars and not sources.typed_text:
                st.warning(f"This link was made with a typed sequence of {made_with.typed_text_chars:,} characters, "
                           "too long for a link: paste it below (or save it as a .csv and choose the file source).",
                           icon=":material/link:")
            st.text_area("one timestep per line (or ;), values split by commas or spaces; a blank line starts the "
                         "next batch element", height=140, max_chars=MAX_TYPED_CHARS,
                         **state.bound(state.SOURCES, "typed_text"))
            if made_with.typed_text_chars and not sources.typed_text:
                return None
        elif source == "text":
            if made_with.text_chars and not sources.text_input:
                st.warning(f"This link was made with a text of {made_with.text_chars:,} characters, too long for a "
                           "link: paste it below.", icon=":material/link:")
            st.text_input("text: one character per step, one-hot over its characters",
                          **state.bound(state.SOURCES, "text_input"))
            if made_with.text_chars and not sources.text_input:
                return None
        else:  # no type= filter: Streamlit would raise on a wrong name before the script runs; load_file checks it
            upload = st.file_uploader("CSV (rows = steps, columns = features) or .npy (T, F) / (T, B, F)", key="upload")
            if upload is not None:
                return {"name": upload.name, "data": upload.getvalue()}
            if made_with.file:
                st.warning(f"This link was made with the file **{escape.markdown(made_with.file)}**. A link cannot "
                           "carry files: upload it above to see what the link showed.", icon=":material/link:")
                return None
            return {"data": None}
    return sources.input_params(source)


# --- the sidebar, drawn from what was resolved ---------------------------------------------------------------------

def setting(widget, label: str, name: str, *args, fixed: dict, help: str | None = None, **kwargs):
    """A sidebar setting: bound to the stored config, or, when the weights or the data fix it, disabled and showing
    the value in use with the reason."""
    if name in fixed:
        value, why = fixed[name]
        if len(args) == 2 and not isinstance(value, bool):  # number bounds: the real value may lie beyond the
            args = (min(args[0], value), max(args[1], value))  # sidebar's (an upload of 9 layers, say)
        return widget(label, *args, help=why, **state.fixed(name, value), **kwargs)
    return widget(label, *args, help=help, **state.bound(state.CONFIG, name), **kwargs)


def sidebar(resolved: Resolved) -> None:
    """The Configure panel. Its sizes are those of the run shown."""
    sb, fixed, sources = st.sidebar, resolved.fixed, state.sources()
    sb.header("Configure")
    sb.button("Preset: nn.LSTM(10, 20, 2) on randn(5, 3, 10)", on_click=load_classic_preset,
              help="The classic example from the PyTorch docs", key="preset_classic")
    sb.selectbox("model", MODEL_SOURCES, help="random weights from the seed, your trained nn.LSTM, or a toy task "
                 "trained here", **state.bound(state.SOURCES, "model_source"))
    if sources.model_source == "uploaded weights":
        # No type= filter: Streamlit would raise on a wrong name before the script runs; the bytes are checked
        sb.file_uploader("state_dict (.pt) saved with torch.save(lstm.state_dict(), path)", key="weights_upload")
    elif sources.model_source == "toy task":
        sb.selectbox("task", list(tasks.TASKS), format_func=lambda k: tasks.TASKS[k].title,
                     **state.bound(state.SOURCES, "task"))
    if sources.model_source == "toy task":
        sb.selectbox("input source", INPUT_SOURCES, help="the toy task feeds its own examples",
                     **state.fixed("input_source", state.config().input_source))
    else:
        sb.selectbox("input source", INPUT_SOURCES, help="typed, text and file inputs set seq_len, batch and "
                     "input_size themselves", **state.bound(state.CONFIG, "input_source"))
    sb.subheader("Model")
    setting(sb.number_input, "input_size", "input_size", *LIMITS["input_size"], fixed=fixed,
            help=explain.HELP["input_size"])
    setting(sb.number_input, "hidden_size", "hidden_size", *LIMITS["hidden_size"], fixed=fixed,
            help=explain.HELP["hidden_size"])
    setting(sb.number_input, "num_layers", "num_layers", *LIMITS["num_layers"], fixed=fixed,
            help=explain.HELP["num_layers"])
    setting(sb.number_input, "proj_size", "proj_size", *LIMITS["proj_size"], fixed=fixed,
            help=explain.HELP["proj_size"])
    setting(sb.checkbox, "bidirectional", "bidirectional", fixed=fixed, help=explain.HELP["bidirectional"])
    setting(sb.checkbox, "bias", "bias", fixed=fixed, help=explain.HELP["bias"])
    setting(sb.checkbox, "batch_first", "batch_first", fixed=fixed, help=explain.HELP["batch_first"])
    sb.subheader("Data")
    setting(sb.number_input, "seq_len", "seq_len", *LIMITS["seq_len"], fixed=fixed, help=explain.HELP["seq_len"])
    setting(sb.number_input, "batch_size", "batch_size", *LIMITS["batch_size"], fixed=fixed,
            help=explain.HELP["batch_size"])
    setting(sb.number_input, "seed", "seed", *LIMITS["seed"], fixed=fixed, help="weights and random inputs")
    sb.subheader("Run")
    cuda = cuda_available()
    device_fixed = {} if cuda else {"device": ("cpu", "torch.cuda.is_available() is False here")}
    setting(sb.selectbox, "device", "device", DEVICES, fixed=device_fixed)
    if not cuda:
        sb.caption("CUDA is disabled: torch.cuda.is_available() is False on this server.")
    setting(sb.selectbox, "dtype", "dtype", list(DTYPES), fixed={})
    sb.subheader("Inspect")
    trace = resolved.run.trace if resolved.run is not None else None
    view = state.view().fitted_to(trace) if trace is not None else state.view()
    sb.number_input("unit", 0, trace.config.hidden_size - 1 if trace else 2047,
                    help=explain.HELP["unit"],
                    **state.bound(state.VIEW, "unit", view.unit))
    sb.number_input("batch element", 0, trace.batch_size - 1 if trace else LIMITS["batch_size"][1] - 1,
                    help=explain.HELP["batch_index"], **state.bound(state.VIEW, "batch_index", view.batch_index))


# --- a long run: progress and Cancel --------------------------------------------------------------------------

PROGRESS_AFTER_S = 0.4  # a run shorter than this shows no bar (it would only flash)


def run_progress(session: SessionData, slot):
    """The `progress` callback for a run: after PROGRESS_AFTER_S, a bar in `slot` and a Cancel button. Pressing
    Cancel asks Streamlit for a rerun, which stops the run at its next report (the bar's update raises)."""
    started, bar = time.monotonic(), []

    def report(done: float) -> None:
        if not bar:
            if time.monotonic() - started < PROGRESS_AFTER_S:
                return
            box = slot.container()
            bar.append(box.progress(0.0))
            box.button("Cancel", key="cancel_run", on_click=session.request_cancel, icon=":material/cancel:")
        bar[0].progress(done, text=f"tracing… {done:.0%} ({time.monotonic() - started:.0f} s)")
    return report


# --- the page -----------------------------------------------------------------------------------------------------

def explore(link_origin) -> None:
    """The tabs, drawn from (run, view); a fragment, so what the explorer reports reruns only this. Ends by writing
    the URL. The run is the session's last good one, looked up on each run of the fragment and never held by it
    (Streamlit keeps a fragment's arguments while the session lives: a released session's trace must go)."""
    resolved = state.session().last_good
    if resolved is None:  # released while the browser was away: compute it again
        st.rerun(scope="app")
    run = resolved.run
    trace = run.trace
    view = state.view().fitted_to(trace)
    labels = list(TABS.values())
    tab_of = {label: slug for slug, label in TABS.items()}
    # Lazy tabs: only the open one runs, so a rerun costs what the visible view needs.
    step_tab, unit_tab, saturation_tab, shapes_tab, export_tab = st.tabs(
        labels, **state.bound(state.VIEW, "tab", TABS[view.tab], key="tab", parse=tab_of.get))
    panels = ((step_tab, lambda: views.step_view(run, view, resolved.readout)),
              (unit_tab, lambda: views.unit_view(run, view)),
              (saturation_tab, lambda: views.saturation_panel(run.trace, view)),
              (shapes_tab, lambda: views.shapes_panel(run, resolved.config)),
              (export_tab, lambda: views.export_panel(run, view, resolved.readout)))
    for tab, draw in panels:
        if tab.open:
            with tab:
                try:
                    draw()
                except Exception as err:  # e.g. the server too busy for a window: say so, keep the page
                    st.error(escape.markdown(problem_text(err, "this view")), icon="⚠️")
    state.write_url(resolved.config, view, link_origin)
    if state.sidebar_behind():  # a cell click chose a unit or batch element: redraw the sidebar's Inspect fields
        st.rerun(scope="app")


def main() -> None:
    st.set_page_config(page_title="lstm-viz", page_icon="🔬", layout="wide")
    state.serve_memory()
    for problem in state.init_from_url():
        st.warning(escape.markdown(problem))
    config, sources, session = state.config(), state.sources(), state.session()
    if not cuda_available():
        config = replace(config, device="cpu")  # e.g. asked for by a link made on a GPU server
    st.title("lstm-viz: inside an LSTM")
    lesson_panel.show()
    classroom = state.lesson().classroom  # a class sees the lesson and the views, not the settings
    if not state.lesson().lesson and not classroom:
        st.sidebar.button("Start the guided lesson", key="lesson_start", on_click=lesson_panel.start,
                          icon=":material/school:", help="eight steps, each setting up a view and asking a question "
                          "to predict before revealing the answer; for a class or on your own")
    try:
        choice = chosen_model(config, sources, session)
    except Exception as err:  # any kind: the message names the file, the last good run stays
        upload = st.session_state.get("weights_upload")
        where = f"the weights file {upload.name}" if upload is not None else "the model"
        choice, resolved = None, failed(config, sources, ModelChoice(fixed_by=FIXED_BY.get(sources.model_source, "")),
                                        session, problem_text(err, where))
    else:
        params = input_params(config, sources) if choice is not None and choice.task_input is None else {}
        if choice is None or params is None:  # waiting for the user: nothing of other weights or data is shown
            resolved = waiting(config, sources, ModelChoice(fixed_by=FIXED_BY.get(sources.model_source, "")))
        else:
            slot = st.empty()
            resolved = resolve(config, sources, params, choice, session, run_progress(session, slot))
            slot.empty()
    if not classroom:
        sidebar(resolved)
    if resolved.problem == CANCELLED:
        st.info(CANCELLED, icon=":material/cancel:")
        st.button("Run again", key="run_again", on_click=session.run_again)
    elif resolved.problem:  # messages quote what was typed, uploaded or linked: shown literally
        st.error(escape.markdown(resolved.problem), icon="⚠️")
    if resolved.run is None:
        return
    if resolved.stale:
        st.info("Showing the last good input and configuration.")
    views.parity_badge(resolved.run)
    if resolved.run.notice:
        st.warning(escape.markdown(resolved.run.notice), icon=":material/memory:")
    upload, data_file = st.session_state.get("weights_upload"), st.session_state.get("upload")
    link_origin = origin_of(
        resolved.sources, resolved.config.input_source,
        weights_name=upload.name if upload is not None else "", weights_model=describe(resolved.run.model.config),
        trained=choice is not None and choice.trained,
        file_name=data_file.name if data_file is not None else "")
    st.fragment(explore)(link_origin)
