"""The app's views, drawn from a traced run: step-through heatmaps, equations, unit drill-down, saturation,
shapes and export. The one module below app.py that imports streamlit; it holds no math (lstm_viz does).
"""

from __future__ import annotations

import io

import streamlit as st
import torch

from . import analysis, export, figures, shapes
from .equations import step_latex, step_terms
from .pipeline import AppConfig

PLAY_INTERVAL_S = 0.6


def parity_badge(result) -> None:
    tolerance = 1e-5 if result.trace.output.dtype == torch.float32 else 1e-10
    diff = result.parity["max"]
    ok = diff <= tolerance
    st.badge(f"parity vs torch.nn.LSTM: max |Δ| = {diff:.2e} {'≤' if ok else '>'} {tolerance:.0e}",
             icon=":material/check_circle:" if ok else ":material/error:", color="green" if ok else "red")
    checked = result.parity["steps checked"]
    head = f"first {checked} steps" if checked < result.trace.seq_len else f"all {checked} steps"
    st.caption(f"manual stepwise module ({head}): " + " · ".join(f"{k} {result.parity[k]:.1e}" for k in (
        "output", "h_n", "c_n", "trace h")) + f" · trace from the {result.trace.engine} engine: " + " · ".join(
        f"{k.removeprefix('trace ')} {result.parity[k]:.1e}" for k in ("trace output", "trace c_n"))
        + f" · input: {result.seq.source}")


def play_button() -> bool:
    """Play/Pause. It lives outside the step fragment on purpose: its click reruns the whole app, which starts
    (or stops) the fragment's timer; returns whether playing."""
    def toggle_play() -> None:
        st.session_state["playing"] = not st.session_state.get("playing", False)

    playing = st.session_state.get("playing", False)
    st.button("Pause" if playing else "Play", key="play", on_click=toggle_play,
              icon=":material/pause:" if playing else ":material/play_arrow:",
              help=f"step through time every {PLAY_INTERVAL_S} s")
    return st.session_state.get("playing", False)


def step_controls(seq_len: int, num_layers: int, bidirectional: bool) -> tuple[int, int, int]:
    """Timestep slider, previous/next, layer and direction; returns (t, layer, direction)."""
    st.session_state["timestep"] = min(st.session_state.get("timestep", 0), seq_len - 1)
    st.session_state["layer"] = min(st.session_state.get("layer", 0), num_layers - 1)
    if st.session_state.get("playing"):
        st.session_state["timestep"] = (st.session_state["timestep"] + 1) % seq_len

    def shift(delta: int) -> None:
        st.session_state["timestep"] = (st.session_state["timestep"] + delta) % seq_len

    cols = st.columns([1.2, 1.2, 6.3, 1.6, 1.6], vertical_alignment="bottom")
    cols[0].button("Prev", key="prev", icon=":material/chevron_left:", on_click=shift, args=(-1,),
                   help="previous step (wraps around)")
    cols[1].button("Next", key="next", icon=":material/chevron_right:", on_click=shift, args=(1,),
                   help="next step (wraps around)")
    if seq_len > 1:
        t = cols[2].slider("timestep t", 0, seq_len - 1, key="timestep")
    else:
        t = 0
        cols[2].caption("timestep t = 0 (a single step)")
    layer = cols[3].selectbox("layer", list(range(num_layers)), key="layer")
    direction = 0
    if bidirectional:
        direction = cols[4].selectbox("direction", [0, 1], key="direction",
                                      format_func=lambda d: "reverse" if d else "forward")
    st.query_params.update({"timestep": str(t), "layer": str(layer)})
    return t, layer, direction


def chart(spec: dict, key: str) -> None:
    """A figure spec from lstm_viz.figures (validated by its tests, so not again on every step)."""
    st.plotly_chart(figures.Prevalidated(spec), key=key, config={"displaylogo": False})


def step_view(result) -> None:
    """Everything that depends on the timestep; reruns alone when only the step changes (or on the timer)."""
    trace, seq = result.trace, result.seq
    t, layer, direction = step_controls(trace.seq_len, trace.num_layers, trace.num_directions == 2)
    label = f" (“{seq.labels[t]}”)" if seq.vocab is not None else ""
    lstm_config = result.model.config
    st.markdown(f"**t = {t}**{label} · x_t = `{shapes.slice_expression(lstm_config, t)}` of the input "
                f"`{tuple(result.x.shape)}` → x_t is `{(trace.batch_size, lstm_config.input_size)}` "
                f"(batch, features)")
    unit, batch = inspected(trace)
    chart(figures.step_spec(trace, t, layer, direction, unit), "step")
    chart(figures.over_time_spec(trace, t, layer, direction, batch, seq.labels), "over_time")
    with st.expander("Equation at t, with the numbers", expanded=True):
        equation_panel(trace, t, layer, direction)


def inspected(trace) -> tuple[int, int]:
    """The sidebar's unit and batch element, clipped to this trace."""
    unit = min(st.session_state.get("unit", 0), trace.config.hidden_size - 1)
    return unit, min(st.session_state.get("batch_index", 0), trace.batch_size - 1)


def equation_panel(trace, t: int, layer: int, direction: int) -> None:
    unit, batch = inspected(trace)
    st.caption(f"unit {unit}, batch element {batch} (choose them under Inspect in the sidebar)")
    terms = step_terms(trace, layer, direction, t, unit, batch)
    st.caption("Each gate's pre-activation split into its input part W x_t, its recurrent part W h_{t−1} and "
               "its bias, with the live numbers of this step.")
    for line in step_latex(terms, t, unit, projected=bool(trace.config.proj_size)):
        st.latex(line)


def shapes_panel(result, config: AppConfig) -> None:
    """Every tensor's shape for the current config, with its axes named."""
    lstm_config, trace = result.model.config, result.trace
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


def saturation_panel(trace) -> None:
    """Karpathy et al. (2015)'s saturation plot, and the chosen unit's memory ledger."""
    cols = st.columns(2)
    low = cols[0].slider("left-saturated below", 0.0, 0.5, 0.1, 0.01, key="sat_low")
    high = cols[1].slider("right-saturated above", 0.5, 1.0, 0.9, 0.01, key="sat_high")
    unit, batch = inspected(trace)
    # Memoised on the (immutable) trace: a rerun for another timestep redoes none of this.
    chart(trace.memo(("saturation", low, high, unit), lambda: figures.saturation_spec(
        analysis.saturation(trace, low, high), low, high, highlight_unit=unit)), "saturation")
    st.caption("Each point is a unit: how often its gate is nearly shut (left) or nearly open (right). Units on the "
               "top axis act like switches held open; the chosen unit is drawn larger.")
    layer = min(st.session_state.get("layer", 0), trace.num_layers - 1)
    chart(trace.memo(("ledger", layer, batch, unit), lambda: figures.ledger_spec(
        analysis.memory_ledger(trace, layer, 0, batch), unit, layer)), "ledger")


def export_panel(result) -> None:
    """Downloads, each made only when its button is pressed."""
    trace, model = result.trace, result.model
    cols = st.columns(3)
    cols[0].download_button("Trace (.npz)", lambda: npz_bytes(trace), "trace.npz", key="export_npz",
                            help="every gate and state, inputs and weights; lstm_viz.export.load_npz reads it back")
    cols[1].download_button("Trace (long CSV)", lambda: export.to_long_csv(trace), "trace.csv", key="export_csv",
                            help="layer, direction, t, batch, unit, quantity, value")
    cols[2].download_button("Weights (.pt)", lambda: export.state_dict_bytes(model), "lstm_state_dict.pt",
                            key="export_weights", help="loads into a plain torch.nn.LSTM with load_state_dict")
    t = min(st.session_state.get("timestep", 0), trace.seq_len - 1)
    unit, batch = inspected(trace)
    cols = st.columns(3)
    cols[0].download_button("Step figure (HTML)", lambda: export.figure_html(figures.step_spec(trace, t)),
                            "step.html", key="export_step_html")
    cols[1].download_button("Over-time figure (HTML)", lambda: export.figure_html(
        figures.over_time_spec(trace, t, batch=batch)), "over_time.html", key="export_over_time_html")
    cols[2].download_button("Unit figure (HTML)", lambda: export.figure_html(figures.unit_spec(trace, unit, batch)),
                            "unit.html", key="export_unit_html")
    st.caption("In a notebook: `lstm_viz.trace(lstm, x)`, then `trace.heatmap('f', t=3)`, "
               "`trace.over_time(unit=5)`; from a shell: `python -m lstm_viz trace --weights model.pt --input x.npy "
               "--out trace.npz`.")


def npz_bytes(trace) -> bytes:
    buffer = io.BytesIO()
    export.save_npz(trace, buffer)
    return buffer.getvalue()
