"""lstm-viz: step through an LSTM and see every gate and state.   streamlit run app.py

Widgets in, figures out: every number comes from lstm_viz, which this file only wires to the page.
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, fields, replace

import streamlit as st
import torch

from lstm_viz import InstrumentedLSTM, LSTMConfig, figures, shapes, tasks
from lstm_viz.guard import ResourceError
from lstm_viz.inputs import MAX_BATCH, MAX_TYPED_CHARS, SIGNAL_KINDS, InputError
from lstm_viz.loading import WeightsError, describe, list_lstms, load_lstm
from lstm_viz.pipeline import (
    DATA_SIZED_SOURCES,
    DEVICES,
    DTYPES,
    INPUT_SOURCES,
    LIMITS,
    AppConfig,
    make_sequence,
    run,
)
from lstm_viz.views import (
    PLAY_INTERVAL_S,
    chart,
    export_panel,
    inspected,
    parity_badge,
    play_button,
    saturation_panel,
    shapes_panel,
    step_view,
)

CUDA_AVAILABLE = torch.cuda.is_available()
DEFAULT_TYPED = "0.0, 1.0\n0.5, 0.5\n1.0, 0.0\n0.5, -0.5\n0.0, -1.0"
DEFAULT_TEXT = "hello, lstm"
VIEW_KEYS = ("timestep", "layer")
MODEL_SOURCES = ("random init", "uploaded weights", "toy task")
VIEWS = ("Step through time", "Unit drill-down", "Saturation & memory", "Shapes", "Export")


def init_state_from_url() -> None:
    """On a session's first run, take settings from the URL so a copied link reopens the same view."""
    if "_initialised" in st.session_state:
        return
    st.session_state["_initialised"] = True
    config, problems = AppConfig.from_query(dict(st.query_params))
    for key, value in asdict(config).items():
        if key in st.query_params or key not in st.session_state:
            st.session_state[key] = value
    for key in VIEW_KEYS:
        if key in st.query_params and st.query_params[key].isdigit():
            st.session_state[key] = int(st.query_params[key])
    for key, allowed in (("model_source", MODEL_SOURCES), ("task", tuple(tasks.TASKS))):
        if st.query_params.get(key) in allowed:
            st.session_state[key] = st.query_params[key]
    st.session_state["_url_problems"] = problems


def load_classic_preset() -> None:
    """The PyTorch docs' example: nn.LSTM(10, 20, 2) fed torch.randn(5, 3, 10)."""
    st.session_state.update({k: v for k, v in shapes.CLASSIC_PRESET.items()}, input_source="random",
                            timestep=0, layer=0)


def chosen_task() -> tasks.Task:
    return tasks.TASKS[st.session_state.get("task", next(iter(tasks.TASKS)))]


def fixed_model_config(model_source: str):
    """The config of the toy task's or the uploaded model (once loaded), for the sidebar to show."""
    if model_source == "toy task":
        task = chosen_task()
        return LSTMConfig(task.input_size, task.hidden_size)
    loaded = st.session_state.get("_weights")
    return loaded[1].config if loaded is not None else None


def sidebar() -> AppConfig:
    """The Configure panel; returns the settings as plain values."""
    sb = st.sidebar
    sb.header("Configure")
    sb.button("Preset: nn.LSTM(10, 20, 2) on randn(5, 3, 10)", on_click=load_classic_preset,
              help="The classic example from the PyTorch docs", key="preset_classic")
    model_source = sb.selectbox("model", MODEL_SOURCES, key="model_source",
                                help="random weights from the seed, your trained nn.LSTM, or a toy task trained here")
    if model_source == "uploaded weights":
        # No type= filter: Streamlit would raise on a wrong name before the script runs; the bytes are checked
        sb.file_uploader("state_dict (.pt) saved with torch.save(lstm.state_dict(), path)", key="weights_upload")
    elif model_source == "toy task":
        sb.selectbox("task", list(tasks.TASKS), key="task", format_func=lambda k: tasks.TASKS[k].title)
    fixed = model_source != "random init"  # the weights fix the model's sizes: show theirs
    if fixed and (known := fixed_model_config(model_source)) is not None:
        for name in ("input_size", "hidden_size", "num_layers", "proj_size", "bidirectional", "bias"):
            st.session_state[name] = getattr(known, name)
    source = sb.selectbox("input source", INPUT_SOURCES, key="input_source", disabled=model_source == "toy task",
                          help="typed, text and file inputs set seq_len, batch and input_size themselves")
    from_data = source in DATA_SIZED_SOURCES
    set_by_data = "set by the input data" if from_data else None
    sb.subheader("Model")
    set_by_weights = "set by the weights" if fixed else None
    sb.number_input("input_size", *LIMITS["input_size"], key="input_size", disabled=from_data or fixed,
                    help=set_by_data or set_by_weights)
    sb.number_input("hidden_size", *LIMITS["hidden_size"], key="hidden_size", disabled=fixed, help=set_by_weights)
    sb.number_input("num_layers", *LIMITS["num_layers"], key="num_layers", disabled=fixed, help=set_by_weights)
    sb.number_input("proj_size", *LIMITS["proj_size"], key="proj_size", disabled=fixed,
                    help=set_by_weights or "0: no projection; else < hidden_size")
    sb.checkbox("bidirectional", key="bidirectional", disabled=fixed, help=set_by_weights)
    sb.checkbox("bias", key="bias", disabled=fixed, help=set_by_weights)
    sb.checkbox("batch_first", key="batch_first", help="feed (batch, seq, features) instead of (seq, batch, …)")
    sb.subheader("Data")
    sb.number_input("seq_len", *LIMITS["seq_len"], key="seq_len", disabled=from_data, help=set_by_data)
    sb.number_input("batch_size", *LIMITS["batch_size"], key="batch_size", disabled=from_data, help=set_by_data)
    sb.number_input("seed", *LIMITS["seed"], key="seed", help="weights and random inputs")
    sb.subheader("Run")
    if not CUDA_AVAILABLE:
        st.session_state["device"] = "cpu"  # e.g. asked for by a link made on a GPU server
    sb.selectbox("device", DEVICES, key="device", disabled=not CUDA_AVAILABLE)
    if not CUDA_AVAILABLE:
        sb.caption("CUDA is disabled: torch.cuda.is_available() is False on this server.")
    sb.selectbox("dtype", list(DTYPES), key="dtype")
    sb.subheader("Inspect")
    sb.number_input("unit", 0, 4095, key="unit", help="boxed in the heatmaps; its equation, lines and ledger below")
    sb.number_input("batch element", 0, MAX_BATCH - 1, key="batch_index", help="for the over-time and unit views")
    return AppConfig(**{f.name: st.session_state[f.name] for f in fields(AppConfig)})


def source_params(source: str) -> dict:
    """The widgets of the chosen input source; returns their values."""
    if source == "random":
        return {"distribution": st.radio("distribution", ["normal", "uniform"], key="distribution",
                                         horizontal=True)}
    if source == "typed":
        text = st.text_area("one timestep per line (or ;), values split by commas or spaces; a blank line "
                            "starts the next batch element", key="typed_text", height=140,
                            max_chars=MAX_TYPED_CHARS)
        return {"text": text}
    if source == "signal":
        cols = st.columns(4)
        return {"kind": cols[0].selectbox("signal", SIGNAL_KINDS, key="signal_kind"),
                "period": cols[1].number_input("period", 1.0, 10_000.0, key="signal_period"),
                "amplitude": cols[2].number_input("amplitude", 0.0, 100.0, key="signal_amplitude"),
                "noise": cols[3].number_input("noise (std)", 0.0, 10.0, key="signal_noise")}
    if source == "text":
        return {"text": st.text_input("text: one character per step, one-hot over its characters",
                                      key="text_input")}
    upload = st.file_uploader("CSV (rows = steps, columns = features) or .npy (T, F) / (T, B, F)",
                              key="upload")  # no type= filter (see weights_upload): load_file checks the name
    return {"name": upload.name, "data": upload.getvalue()} if upload else {"data": None}


def input_key(config: AppConfig, params: dict) -> str:
    """Identity of a (config, input): the trace is recomputed only when it changes."""
    hashable = {k: hashlib.sha1(v).hexdigest() if isinstance(v, bytes) else v for k, v in params.items()}
    return repr((config, sorted(hashable.items())))


def uploaded_weights():
    """The uploaded state_dict's LSTM (the user picks one when several are inside), or None (with a message) while
    there is no upload; raises WeightsError, naming the file, when it cannot be used."""
    upload = st.session_state.get("weights_upload")
    if upload is None:
        st.info("Upload a state_dict saved with `torch.save(lstm.state_dict(), path)` (the sidebar, under model); "
                "an LSTM nested in a bigger model (`encoder.rnn.`…) or a checkpoint dict works too.")
        return None
    data = upload.getvalue()
    digest = hashlib.sha1(data).hexdigest()
    found = st.session_state.get("_lstms_found")
    if found is None or found[0] != digest:
        try:
            found = (digest, list_lstms(data))
        except WeightsError as err:
            raise WeightsError(f"{upload.name}: {err}") from None
        st.session_state["_lstms_found"] = found
    configs = found[1]
    prefix = next(iter(configs))
    if len(configs) > 1:
        prefix = st.selectbox("which LSTM in the file", list(configs), key="weights_prefix",
                              format_func=lambda p: f"{p or '(top level)'}: {describe(configs[p])}")
    cached = st.session_state.get("_weights")
    if cached is None or cached[0] != (digest, prefix):
        try:
            cached = ((digest, prefix), load_lstm(data, prefix=prefix))
        except WeightsError as err:
            raise WeightsError(f"{upload.name}: {err}") from None
        st.session_state["_weights"] = cached
    st.caption(f"Loaded {upload.name}{' at ' + prefix if prefix else ''}: `{describe(cached[1].config)}` "
               "(batch_first is not stored in weights: set it in the sidebar)")
    return cached[1]


def toy_task(config: AppConfig):
    """The chosen toy task: train it here (progress and loss curve), then its trained (or untrained) LSTM."""
    task = chosen_task()
    trained = st.session_state.setdefault("_trained", {})  # (task, seed) -> (TrainResult, InstrumentedLSTM)
    st.markdown(f"**{task.title}**: {task.description}")
    cols = st.columns([1, 3])
    if cols[0].button(f"Train ({task.max_steps} steps at most)", key="train_task", icon=":material/model_training:"):
        bar = cols[1].progress(0.0, text="training…")
        report = lambda step, loss: bar.progress(min(1.0, step / task.max_steps),  # noqa: E731
                                                 text=f"step {step}: loss {loss:.4f}")
        result = tasks.train(task.name, seed=config.seed, progress=report)
        trained[(task.name, config.seed)] = (result, InstrumentedLSTM.from_torch(result.lstm))
        bar.empty()
    if (task.name, config.seed) not in trained:
        st.info("Untrained: random weights with the task's sizes (forget-gate bias +2, as training starts). Press "
                "Train to see what training does to the gates.")
        untrained = tasks.new_lstm(task, seed=config.seed)  # as training starts it
        return InstrumentedLSTM.from_torch(untrained), f"untrained {task.name} {config.seed}"
    result, model = trained[(task.name, config.seed)]
    verdict = "reached" if result.final_loss < task.loss_threshold else "did not reach"
    st.caption(f"Trained in {result.steps} steps ({result.seconds:.1f} s): loss {result.final_loss:.4f}, "
               f"{verdict} the target {task.loss_threshold:g}.")
    chart(figures.loss_spec(result.losses, task.loss_threshold), "loss_curve")
    return model, f"trained {task.name} {config.seed} {result.steps}"


def chosen_model(config: AppConfig):
    """(weights or None for a random init, their identity, the input a toy task feeds) for the sidebar's model."""
    source = st.session_state.get("model_source", MODEL_SOURCES[0])
    if source == "uploaded weights":
        weights = uploaded_weights()
        identity = repr(st.session_state.get("_weights", (None,))[0])
        return (weights, identity, None) if weights is not None else None
    if source == "toy task":
        with st.expander("Toy task", expanded=True):
            weights, identity = toy_task(config)
        return weights, identity, tasks.example(chosen_task(), seed=config.seed)
    return None, "", None


def current_run(config: AppConfig, params: dict, weights=None, weights_id: str = "", task_input=None):
    """The traced run for these settings; on bad input, an error and the last good run (or None)."""
    if weights is not None and config.input_source not in DATA_SIZED_SOURCES:
        config = replace(config, input_size=weights.input_size)  # random and signal inputs fit the weights
    key = input_key(config, params) + weights_id + (task_input.source if task_input is not None else "")
    last = st.session_state.get("_last_good")
    if last is not None and last[0] == key:
        return last[1]
    try:
        seq = task_input if task_input is not None else make_sequence(config, params)
        result = run(config, seq, weights)
    except (InputError, ValueError, TypeError, RuntimeError) as err:
        out_of_memory = isinstance(err, (ResourceError, torch.OutOfMemoryError)) or "allocate memory" in str(err)
        kind = "Input" if isinstance(err, InputError) else "Resource" if out_of_memory else "Configuration"
        st.error(f"{kind} problem: {err}", icon="⚠️")
        return last_good_run()
    st.session_state["_last_good"] = (key, result)
    return result


def last_good_run():
    """After a problem: the last run that worked (saying so), or None."""
    last = st.session_state.get("_last_good")
    if last is None:
        return None
    st.info("Showing the last good input and configuration.")
    return last[1]


def main() -> None:
    st.set_page_config(page_title="lstm-viz", page_icon="🔬", layout="wide")
    init_state_from_url()
    for problem in st.session_state.pop("_url_problems", []):
        st.warning(problem)
    st.session_state.setdefault("unit", 0)  # boxed in the heatmaps and explained in the equation panel
    st.session_state.setdefault("typed_text", DEFAULT_TYPED)
    st.session_state.setdefault("text_input", DEFAULT_TEXT)
    st.session_state.setdefault("signal_period", 16.0)
    st.session_state.setdefault("signal_amplitude", 1.0)
    st.session_state.setdefault("signal_noise", 0.0)
    config = sidebar()
    st.title("lstm-viz: inside an LSTM")
    try:
        model = chosen_model(config)
    except WeightsError as err:
        st.error(f"Weights problem in {err}", icon="⚠️")
        result = last_good_run()
    else:
        if model is None:
            return  # no weights uploaded yet
        weights, weights_id, task_input = model
        params = {}
        if task_input is None:
            with st.expander(f"Input: {config.input_source}", expanded=config.input_source != "random"):
                params = source_params(config.input_source)
        result = current_run(config, params, weights, weights_id, task_input)
    if result is None:
        return
    view = {k: str(st.session_state.get(k, 0)) for k in VIEW_KEYS}
    if st.session_state.get("model_source", MODEL_SOURCES[0]) == "toy task":
        view |= {"model_source": "toy task", "task": chosen_task().name}
    st.query_params.from_dict(config.to_query() | view)
    parity_badge(result)
    if result.notice:
        st.warning(result.notice, icon=":material/memory:")
    # Lazy tabs: only the open one runs, so a rerun costs what the visible view needs.
    step_tab, unit_tab, saturation_tab, shapes_tab, export_tab = st.tabs(VIEWS, key="view", on_change="rerun")
    if step_tab.open:
        with step_tab:
            playing = play_button()
            st.fragment(run_every=PLAY_INTERVAL_S if playing else None)(step_view)(result)
    if unit_tab.open:
        with unit_tab:
            unit, batch = inspected(result.trace)
            chart(result.trace.memo(("unit lines", unit, batch), lambda: figures.unit_spec(
                result.trace, unit, batch, time_labels=result.seq.labels)), "unit_lines")
    if saturation_tab.open:
        with saturation_tab:
            saturation_panel(result.trace)
    if shapes_tab.open:
        with shapes_tab:
            shapes_panel(result, config)
    if export_tab.open:
        with export_tab:
            export_panel(result)


main()
