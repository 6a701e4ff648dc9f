"""The toy task's panel: train in the background (progress, a live loss curve, Cancel) while the page stays usable;
then scrub the weights kept along training, see target against prediction, and the units that track the task's
hidden variable. A UI module (imports streamlit); the work is in lstm_viz.training and lstm_viz.unit_ranking.
"""

from __future__ import annotations

import streamlit as st

from . import escape, figures, tasks, training, training_figures, unit_ranking, views
from . import page_state as state
from .guard import ResourceError
from .model import InstrumentedLSTM
from .pipeline import AppConfig
from .resolve import ModelChoice
from .session import SessionData
from .unit_ranking import UnitScore
from .view import Sources

POLL_S = 0.5  # how often the running training's progress is redrawn (only its fragment reruns)
RANKED_SHOWN = 5
EXAMPLES_SHOWN = 3


def toy_task_model(config: AppConfig, sources: Sources, session: SessionData, fixed_by: str) -> ModelChoice | None:
    """The chosen toy task: its Train button and training; its untrained LSTM until training is done, then the
    weights of the snapshot the view names (default: the final ones). None while a link's training is reproduced."""
    task = tasks.TASKS[sources.task]
    st.markdown(f"**{task.title}**: {task.description}")
    job = session.training(task.name, config.seed)
    from_link = state.origin().trained  # the link was made after training: reproduce it (it is seeded)
    button, status = st.columns([1, 3])
    pressed = button.button(f"Train ({task.max_steps} steps at most)", key="train_task",
                            icon=":material/model_training:")
    if pressed or (from_link and job is None):
        job = begin(session, task.name, config.seed, status)
    task_input, target = tasks.example_with_target(task, seed=config.seed)
    if job is not None and job.done and from_link:
        state.update(state.ORIGIN, trained=False)  # reproduced: later seeds or tasks are the user's to train
    if job is not None and not job.done:
        with status:
            st.fragment(training_progress, run_every=POLL_S)(task.name, config.seed)
        if from_link:
            st.info(f"This link was made after training **{task.title}** from seed {config.seed}. A link cannot "
                    "carry trained weights, so they are being trained again now: training is seeded, so the same "
                    "seed trains the same weights.", icon=":material/link:")
            return None
    if job is None or not job.done or job.error:
        if job is not None and job.error:
            status.warning(escape.markdown(job.error), icon=":material/cancel:")
        elif job is not None:
            st.info("Training in the background: until it is done the views show the untrained weights, and every "
                    "control keeps working.", icon=":material/hourglass_top:")
        else:
            st.info("Untrained: random weights with the task's sizes (forget-gate bias +2, as training starts). Press "
                    "Train to see what training does to the gates.")
        untrained = InstrumentedLSTM.from_torch(tasks.new_lstm(task, seed=config.seed))  # as training starts it
        return ModelChoice(untrained, f"untrained {task.name} {config.seed}", task_input, fixed_by, target=target)
    return trained_model(task, job, config.seed, task_input, target, fixed_by)


def begin(session: SessionData, task_name: str, seed: int, slot) -> training.TrainingJob | None:
    """Start (or join) the training of (task, seed) for this session; on a busy server, say so in `slot`."""
    try:
        job = training.start(task_name, seed)
    except ResourceError as err:
        slot.warning(escape.markdown(str(err)), icon=":material/hourglass_top:")
        return session.training(task_name, seed)
    session.keep_training(job)
    return job


def training_progress(task_name: str, seed: int) -> None:
    """A running training's progress bar, live loss curve and Cancel; once it is done, the whole page reruns to show
    the trained model. A fragment polled every POLL_S: the rest of the page does not wait for it."""
    job = state.session().training(task_name, seed)
    if job is None or job.done:
        st.rerun(scope="app")
    progress = job.progress
    loss = f": loss {tasks.smoothed(list(progress.losses)):.4f}" if progress.losses else ""
    st.progress(min(1.0, progress.step / progress.max_steps),
                text=f"training… step {progress.step} of at most {progress.max_steps}{loss}")
    st.button("Cancel training", key="cancel_training", on_click=job.cancel, icon=":material/cancel:")
    if progress.losses:
        views.chart(figures.loss_spec(list(progress.losses), tasks.get_task(task_name).loss_threshold), "loss_live")


def trained_model(task: tasks.Task, job: training.TrainingJob, seed: int, task_input, target,
                  fixed_by: str) -> ModelChoice:
    """What training did (loss, snapshots, examples, units), and the weights of the snapshot the view names."""
    result, snapshots = job.result, job.snapshots
    view = state.view()
    index = view.snapshot if -len(snapshots) <= view.snapshot < len(snapshots) else -1
    chosen = snapshots[index]
    verdict = "reached" if result.final_loss < task.loss_threshold else "did not reach"
    st.caption(f"Trained in {result.steps} steps ({result.seconds:.1f} s): loss {result.final_loss:.4f}, "
               f"{verdict} the target {task.loss_threshold:g}.")
    loss_col, examples_col = st.columns(2)
    with loss_col:
        views.chart(figures.loss_spec(result.losses, task.loss_threshold), "loss_curve")
    with examples_col:
        shown = training.readouts(task.name, chosen, range(seed, seed + EXAMPLES_SHOWN))
        views.chart(training_figures.readout_spec(shown), "readout_examples")
    units_ranking(task, job, seed)  # which unit learnt the task, then how it learnt it
    snapshot_scrub(task, job, index, task_input)
    identity = f"trained {task.name} {seed} {result.steps} snapshot {chosen.step}"
    return ModelChoice(chosen.model, identity, task_input, fixed_by, trained=True, target=target, read=chosen.read)


def snapshot_scrub(task: tasks.Task, job: training.TrainingJob, index: int, task_input) -> None:
    """The training-step slider (which snapshot's weights every view shows) beside the view's unit through training:
    snapshots × timesteps."""
    snapshots = job.snapshots
    last = len(snapshots) - 1
    st.markdown("**Watch the gates learn**: pick the weights after any step of training; every view below shows "
                "them.")
    controls, picture = st.columns([1, 3])
    controls.select_slider(
        "training step", options=list(range(len(snapshots))), format_func=lambda k: str(snapshots[k].step),
        help="the weights kept along training, at init (0) and after evenly spaced steps, up to the final ones",
        **state.bound(state.VIEW, "snapshot", index % len(snapshots), key="snapshot",
                      parse=lambda k: -1 if k == last else k))
    quantity = controls.radio("show", training.QUANTITIES, horizontal=True, key="through_quantity",
                              help="which gate or state of the unit, at each step of the example and of training")
    unit = min(state.view().unit, task.hidden_size - 1)
    values = job.memo(("through training",), lambda: training.through_training(snapshots, task_input.x))
    with picture:
        views.chart(training_figures.through_training_spec(
            values[quantity][:, :, unit], [s.step for s in snapshots], quantity, unit, index,
            task_input.labels), "through_training")


def units_ranking(task: tasks.Task, job: training.TrainingJob, seed: int) -> None:
    """The units whose c or h best tracks the task's hidden variable, and a button opening the best one."""
    ranking = job.ranking(seed)
    variable = unit_ranking.VARIABLES[task.name]
    st.markdown(f"**Units that track {variable}** (Pearson r over {unit_ranking.RANKING_BATCH} examples, trained "
                "weights):")
    st.markdown("\n".join(f"{k}. unit {s.unit}: its {s.quantity} follows {s.variable}, r = {s.r:+.3f}"
                          for k, s in enumerate(ranking[:RANKED_SHOWN], 1)))
    best = ranking[0]
    st.button(f"Open unit {best.unit} in the explorer", key="open_best_unit", on_click=open_unit, args=(best,),
              icon=":material/center_focus_strong:")


def open_unit(score: UnitScore) -> None:
    """Show a ranked unit: its layer, direction and unit in the step view, with the trained weights."""
    state.update(state.VIEW, unit=score.unit, layer=score.layer, direction=score.direction, tab="step", snapshot=-1)
