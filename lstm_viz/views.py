"""The app's views, each drawn from (run, view): step-through heatmaps, equations, unit drill-down, saturation,
shapes and export. A UI module (imports streamlit); it holds no math (lstm_viz does).
"""

from __future__ import annotations

import io

import streamlit as st

from . import analysis, escape, explain, export, figures, guard, shapes
from . import page_state as state
from .equations import step_latex, step_terms
from .explorer import component as explorer_component
from .explorer import to_html, unit_payload, window_of, window_payload
from .explorer.html import FILE_BUDGET
from .explorer.payload import BYTE_BUDGET, unpack_header
from .figures import DIRECTION_NAMES
from .pipeline import AppConfig
from .view import View


def parity_badge(run) -> None:
    """What was checked at run time, in plain words: the trace the heatmaps show against the reference cell
    (recomputed at sampled steps) and against torch.nn.LSTM."""
    report = run.parity
    st.badge(f"parity: max |Δ| = {report.max_diff:.1e} {'≤' if report.ok else '>'} {report.tolerance:.0e}",
             icon=":material/check_circle:" if report.ok else ":material/error:",
             color="green" if report.ok else "red")
    dtype = str(run.trace.f.dtype).removeprefix("torch.")
    st.caption(explain.parity_words(report, dtype, run.trace.engine, run.seq.source))


def layer_controls(trace, view: View) -> None:
    """Which layer and direction the explorer shows, bound to the view (stepping itself happens in the page)."""
    if trace.num_layers == 1 and trace.num_directions == 1:
        return
    cols = st.columns([1, 1, 4])
    cols[0].selectbox("layer", list(range(trace.num_layers)), **state.bound(state.VIEW, "layer", view.layer))
    if trace.num_directions == 2:
        cols[1].selectbox("direction", [0, 1], format_func=DIRECTION_NAMES.__getitem__,
                          **state.bound(state.VIEW, "direction", view.direction))


def chart(spec: dict, key: str) -> None:
    """A figure spec from lstm_viz.figures (validated by its tests, so not again on every step)."""
    st.plotly_chart(figures.Prevalidated(spec), key=key, config={"displaylogo": False})


def step_view(run, view: View, readout=None) -> None:
    """The time explorer (stepping, heatmaps, input and output over time, the cell diagram: all in the page),
    then the equations at the t the page last reported, typeset from the trace."""
    trace = run.trace
    layer_controls(trace, view)
    lstm_config = run.model.config
    st.caption(f"x_t = `{shapes.slice_expression(lstm_config, 't')}` of the input `{tuple(run.x.shape)}` is "
               f"`{(trace.batch_size, lstm_config.input_size)}` (batch, features). Step with ← → (Home, End) anywhere "
               "on the page, the buttons or the slider; click a heatmap cell to inspect that unit and batch element.")
    with st.expander(explain.EXPLORER_LABEL, icon=":material/help:", key=explain.EXPLORER_KEY):
        st.markdown(explain.explorer_guide(figures.cell_bound(trace, view.layer, view.direction), view.direction))
    start, stop = window_of(trace, view.layer, view.timestep, readout)
    window = state.session().explorer_window(
        trace, (view.layer, view.direction, start, stop), lambda: window_payload(
            trace, view.layer, view.direction, view.timestep, labels=run.seq.labels,
            vocab=run.seq.vocab, readout=readout), 2 * BYTE_BUDGET)
    focus = unit_payload(trace, view.layer, view.direction, (start, stop), view.unit, view.batch_index,
                         view.timestep, unpack_header(window)["id"], state.page_seq())
    explorer_component.mount(window, focus, state.follow_page)
    with st.expander(f"Equations at t = {view.timestep}, typeset", expanded=False, key="equations"):
        equation_panel(trace, view)


def equation_panel(trace, view: View) -> None:
    t, unit, batch = view.timestep, view.unit, view.batch_index
    where = f"layer {view.layer}, {DIRECTION_NAMES[view.direction]}" if trace.num_layers > 1 or \
        trace.num_directions > 1 else ""
    st.caption(f"unit {unit}, batch element {batch}{', ' + where if where else ''}, at the step where the explorer "
               "last stopped (click a heatmap cell, or choose under Inspect in the sidebar)")
    terms = step_terms(trace, view.layer, view.direction, t, unit, batch)
    previous = "h_{t+1}" if view.direction == 1 else "h_{t−1}"
    st.caption(f"Each gate's pre-activation split into its input part W x_t, its recurrent part W {previous} and "
               "its bias, with the live numbers of this step.")
    for line in step_latex(terms, t, unit, projected=bool(trace.config.proj_size), direction=view.direction):
        st.latex(line)
    st.caption(explain.step_reading(terms, view.direction, projected=bool(trace.config.proj_size)))


def unit_view(run, view: View) -> None:
    """The chosen unit's gates and states over time, every layer and direction, with step t marked."""
    trace, unit, batch, t = run.trace, view.unit, view.batch_index, view.timestep
    st.caption(explain.unit_lines(unit, batch, t))
    chart(trace.memo(("unit lines", unit, batch, t), lambda: figures.unit_spec(
        trace, unit, batch, t=t, time_labels=run.seq.labels)), "unit_lines")


def shapes_panel(run, config: AppConfig) -> None:
    """Every tensor's shape for the config shown, with its axes named."""
    lstm_config, trace = run.model.config, run.trace
    if all(getattr(config, k) == v for k, v in shapes.CLASSIC_PRESET.items()):
        st.info(shapes.CLASSIC_EXPLANATION)
    st.markdown(f"`{shapes.constructor_call(lstm_config)}` · {shapes.parameter_count(lstm_config):,} parameters")
    st.markdown("**Input and outputs**\n\n" + shapes.markdown_table(
        shapes.io_shapes(lstm_config, trace.seq_len, trace.batch_size)))
    for layer in range(min(2, lstm_config.num_layers)):  # layers above 1 repeat layer 1's shapes
        st.markdown(f"**One step of layer {layer}**\n\n"
                    + shapes.markdown_table(shapes.step_shapes(lstm_config, trace.batch_size, layer)))
    st.markdown("**Weights** (the 4·hidden_size rows are the gates i, f, g, o, in that order)\n\n"
                + shapes.markdown_table(shapes.weight_shapes(lstm_config)))
    origin = getattr(run.model, "tutorial_origin", None)  # set by load_lstm on weights from a tutorial-style class
    with st.expander("Written the tutorial's LSTM class yourself? How its weights map to nn.LSTM",
                     expanded=origin is not None):
        st.markdown(shapes.tutorial_intro(lstm_config, origin))
        st.markdown(shapes.tutorial_table(shapes.tutorial_mapping(lstm_config, origin)))
        st.caption("The columns are read as the tutorial concatenates them, `torch.cat((x_t, h), 1)`: a class that "
                   "puts h first has its two column blocks the other way round.")
        st.markdown("**Classic pitfalls**")
        for text, code in shapes.TUTORIAL_PITFALLS:
            st.markdown(text)
            st.code(code, language="python")


def saturation_panel(trace, view: View) -> None:
    """Karpathy et al. (2015)'s saturation plot, and the memory ledger of the view's unit, layer and direction."""
    cols = st.columns(2)
    low = cols[0].slider("left-saturated below", 0.0, 0.5, 0.1, 0.01, key="sat_low",
                         help="a gate value under this counts as nearly shut")
    high = cols[1].slider("right-saturated above", 0.5, 1.0, 0.9, 0.01, key="sat_high",
                          help="a gate value over this counts as nearly open")
    unit, batch, layer, direction = view.unit, view.batch_index, view.layer, view.direction
    # Memoised on the (immutable) trace: a rerun for another timestep redoes none of this.
    fractions = trace.memo(("saturation fractions", low, high), lambda: analysis.saturation(trace, low, high))
    chart(trace.memo(("saturation", low, high, unit), lambda: figures.saturation_spec(
        fractions, low, high, highlight_unit=unit)), "saturation")
    st.caption(explain.saturation_reading(low, high))
    st.caption(explain.saturation_why(low, high, fractions))

    def ledger_view():  # the figure and the time constants its caption quotes; not the (T, H) ledger itself
        ledger = analysis.memory_ledger(trace, layer, direction, batch)
        return figures.ledger_spec(ledger, unit, layer, direction, where=figures.position(trace, layer, direction),
                                   batch=batch), ledger["time_constant"]

    spec, time_constants = trace.memo(("ledger", layer, direction, batch, unit), ledger_view)
    chart(spec, "ledger")
    st.caption(explain.ledger_words(time_constants, unit, direction))


def export_panel(run, view: View, readout=None) -> None:
    """Downloads, each made only when its button is pressed, with its memory charged to the server while it is
    written; one too big to write here is offered disabled, saying why. The figures are those of the current view."""
    trace, model = run.trace, run.model
    data = state.session()
    st.caption(explain.EXPORT_INTRO)
    t, layer, direction, unit, batch = view.timestep, view.layer, view.direction, view.unit, view.batch_index
    where = f"t{t}_layer{layer}_{DIRECTION_NAMES[direction]}"
    trace_size = guard.trace_bytes(trace.config, trace.seq_len, trace.batch_size, trace.f.element_size())
    step_values = trace.batch_size * (5 * trace.config.hidden_size + trace.config.real_hidden_size)
    downloads = [  # (label, build, file name, key, bytes while written, help)
        ("Trace (.npz)", lambda run: npz_bytes(run.trace), "trace.npz", "export_npz", 2 * trace_size,
         "every gate and state, inputs and weights; lstm_viz.export.load_npz reads it back"),
        ("Trace (long CSV)", lambda run: export.to_long_csv(run.trace), "trace.csv", "export_csv",
         export.CSV_BYTES_PER_VALUE * export.long_csv_values(trace),
         "layer, direction, t, batch, unit, quantity, value"),
        ("Weights (.pt)", lambda run: export.state_dict_bytes(run.model), "lstm_state_dict.pt", "export_weights",
         3 * 4 * shapes.parameter_count(model.config), "loads into a plain torch.nn.LSTM with load_state_dict"),
        ("Step figure (HTML)", lambda run: export.figure_html(figures.step_spec(run.trace, t, layer, direction, unit)),
         f"step_{where}.html", "export_step_html", export.figure_html_bytes(step_values), None),
        ("Over-time figure (HTML)", lambda run: export.figure_html(
            figures.over_time_spec(run.trace, t, layer, direction, batch, run.seq.labels)), f"over_time_{where}.html",
         "export_over_time_html", export.figure_html_bytes(figures.OVER_TIME_MAX_VALUES), None),
        ("Unit figure (HTML)", lambda run: export.figure_html(
            figures.unit_spec(run.trace, unit, batch, t=t, time_labels=run.seq.labels)),
         f"unit{unit}_batch{batch}.html",
         "export_unit_html",
         export.figure_html_bytes(6 * trace.num_layers * trace.num_directions * figures.LINE_MAX_POINTS), None),
        ("Time explorer (HTML, steps offline)", lambda run: to_html(
            run.trace, t=t, layer=layer, direction=direction, unit=unit, batch=batch, labels=run.seq.labels,
            vocab=run.seq.vocab, readout=readout, title=f"lstm-viz: {run.seq.source}"),
         f"explorer_layer{layer}_{DIRECTION_NAMES[direction]}.html", "export_explorer_html", 3 * FILE_BUDGET,
         "this layer's explorer as one file: data and scripts inlined, opens from disk with no network"),
    ]
    refused = {"export_csv": refusal(export.check_long_csv, trace),
               "export_step_html": refusal(export.check_figure_values, step_values)}
    columns, notes = st.columns(3) + st.columns(3) + [st], []
    for column, (label, build, name, key, nbytes, help) in zip(columns, downloads, strict=True):
        why = refused.get(key, "")
        column.download_button(label, deferred(data, build, nbytes, label), name, key=key, help=why or help,
                               disabled=bool(why))
        if why:
            notes.append(f"{label}: {why}.")
    for note in notes:
        st.caption(escape.markdown(note))
    st.caption(f"The figures are those of the current view: t = {t}, layer {layer}, {DIRECTION_NAMES[direction]}, "
               f"unit {unit}, batch element {batch}. In a notebook: `lstm_viz.trace(lstm, x)`, then "
               "`trace.heatmap('f', t=3)`, `trace.over_time(unit=5)`; from a shell: `python -m lstm_viz trace "
               "--weights model.pt --input x.npy --out trace.npz`.")


def refusal(check, *args) -> str:
    """Why an export is refused here ("" when it is not): the ValueError of `check(*args)`."""
    try:
        check(*args)
    except ValueError as err:
        return str(err)
    return ""


def deferred(data, build, nbytes: int, label: str):
    """What a download button calls when pressed (in a server thread): `build` of the session's current run, with
    `nbytes` charged to the server's memory. It holds the SessionData, not the run: Streamlit keeps these callables
    while the session lives, and a trace released from a session whose browser has gone must not stay behind."""
    def download():
        shown = data.last_good
        if shown is None:
            raise ValueError("this session's run was released; reload the page")
        with guard.charged(nbytes, f"the {label} download"):
            return build(shown.run)
    return download


def npz_bytes(trace) -> bytes:
    buffer = io.BytesIO()
    export.save_npz(trace, buffer)
    return buffer.getvalue()
