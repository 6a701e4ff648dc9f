"""One run resolution, before anything is drawn: settings + model choice -> the run the page shows, what went
wrong (if anything), and which sidebar fields the weights or the data fix, with their real values. No streamlit.
"""

from __future__ import annotations

import hashlib
import logging
import pickle
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from .guard import ResourceError
from .inputs import InputError, SequenceInput
from .loading import WeightsError
from .model import InstrumentedLSTM
from .pipeline import DATA_SIZED_SOURCES, AppConfig, Run, make_sequence, run
from .session import SessionData
from .tasks import Readout
from .view import Sources

_log = logging.getLogger(__name__)
CANCELLED = "Cancelled: you stopped this run. Change a setting, or press Run again."
MODEL_FIELDS = ("input_size", "hidden_size", "num_layers", "proj_size", "bidirectional", "bias")
DATA_FIELDS = ("input_size", "seq_len", "batch_size")


@dataclass(frozen=True)
class ModelChoice:
    """What the sidebar's model source gives: weights (None: random init from the seed) and, for a toy task, the
    input it is fed."""

    weights: InstrumentedLSTM | None = None
    identity: str = ""  # changes whenever the weights do
    task_input: SequenceInput | None = None
    fixed_by: str = ""  # "the uploaded weights", "the toy task": who fixes the model's sizes
    trained: bool = False  # trained in this session (a link can name it, not carry it)
    target: np.ndarray | None = None  # a toy task's target at each step, (T, B)
    read: Callable[[np.ndarray], np.ndarray] | None = None  # a trained head: the top layer's output -> (T, B)

    def readout(self, run: Run) -> Readout | None:
        """The task's target and, once trained, the model's prediction on this run."""
        if self.target is None:
            return None
        top = run.trace.layer_output(run.trace.num_layers - 1)
        return Readout(self.target, None if self.read is None else self.read(top))


@dataclass(frozen=True)
class Resolved:
    run: Run | None  # what the page shows: the run for these settings, or the last good one after a problem
    config: AppConfig  # the settings of what is shown, with the sizes the weights or the data fixed
    sources: Sources  # the input parameters of what is shown
    problem: str = ""  # what was wrong ("" when `run` is this settings' own run)
    fixed: dict[str, tuple[object, str]] = field(default_factory=dict)  # sidebar field -> (value in use, why)
    readout: Readout | None = None  # a toy task's target and prediction

    @property
    def stale(self) -> bool:
        """The page shows the last good run, not one of the current settings."""
        return bool(self.problem) and self.run is not None


def resolve(config: AppConfig, sources: Sources, params: dict, choice: ModelChoice, session: SessionData,
            progress: Callable[[float], object] | None = None) -> Resolved:
    """The run for (config, input parameters, model choice); on a problem, the message and the last good run.

    `params` are `make_sequence`'s for the chosen input source (`sources.input_params`, or a file's bytes).
    `progress` is told the fraction traced while a long run computes (pipeline.run). A run the user cancelled is
    not started again until they change a setting or ask for it (`SessionData.run_again`).
    """
    if choice.weights is not None and config.input_source not in DATA_SIZED_SOURCES:
        config = replace(config, input_size=choice.weights.input_size)  # random and signal inputs fit the weights
    key = run_key(config, params, choice)
    if session.last_good_key == key:
        session.cancel_requested = False  # a Cancel pressed too late: the run it meant had finished
        return session.last_good
    if session.cancel_requested or session.cancelled_key == key:
        session.cancel_requested, session.cancelled_key = False, key
        return failed(config, sources, choice, session, CANCELLED)
    seq = None
    try:
        seq = choice.task_input if choice.task_input is not None else make_sequence(config, params)
        result = run(config, seq, choice.weights, progress)
    except Exception as err:  # every kind: the page keeps the last good run and says what went wrong
        return failed(config, sources, choice, session, problem_text(err), seq)
    fixed = fixed_fields(config, choice, seq, result)
    resolved = Resolved(result, with_fixed(config, fixed), sources, "", fixed, choice.readout(result))
    session.remember(key, resolved)
    return resolved


def failed(config: AppConfig, sources: Sources, choice: ModelChoice, session: SessionData, problem: str,
           seq: SequenceInput | None = None) -> Resolved:
    """After a problem: the last good run and its settings (or no run), with the problem to show."""
    last = session.last_good
    shown = last.run if last is not None else None
    fixed = fixed_fields(config, choice, seq or (shown.seq if shown is not None else None), shown)
    if last is None:
        return Resolved(None, with_fixed(config, fixed), sources, problem, fixed)
    return replace(last, problem=problem, fixed=fixed)


def waiting(config: AppConfig, sources: Sources, choice: ModelChoice) -> Resolved:
    """No run yet: the user must supply weights, a trained task or data first (the page says which)."""
    fixed = fixed_fields(config, choice, None, None)
    return Resolved(None, with_fixed(config, fixed), sources, "", fixed)


def with_fixed(config: AppConfig, fixed: dict[str, tuple[object, str]]) -> AppConfig:
    """`config` with the values the weights or the data fixed."""
    return replace(config, **{name: value for name, (value, _) in fixed.items()})


def run_key(config: AppConfig, params: dict, choice: ModelChoice) -> str:
    """Identity of a (config, input, model): the trace is recomputed only when it changes."""
    hashable = {k: hashlib.sha1(v).hexdigest() if isinstance(v, bytes) else v for k, v in params.items()}
    task = choice.task_input.source if choice.task_input is not None else ""
    return repr((config, sorted(hashable.items()), choice.identity, task))


# What users' data and settings can raise, from our checks and from the libraries that parse and compute it.
# Anything else is a bug of ours: still shown as a located message over the last good view, and logged.
EXPECTED = (ValueError, TypeError, RuntimeError, ArithmeticError, LookupError, MemoryError, RecursionError, OSError,
            EOFError, zipfile.BadZipFile, pickle.UnpicklingError)


def problem_text(err: Exception, where: str = "") -> str:
    """A problem as the user reads it: its kind, where it came from (e.g. a file name), then the message."""
    out_of_memory = (isinstance(err, (ResourceError, torch.OutOfMemoryError, MemoryError))
                     or "allocate memory" in str(err))
    message = str(err).strip() or type(err).__name__
    if isinstance(err, (InputError, WeightsError)):
        kind = "Input"
    elif out_of_memory:
        kind = "Resource"
    elif isinstance(err, RecursionError):
        kind, message = "Input", "the data is nested too deeply to read"
    elif isinstance(err, EXPECTED):
        kind = "Configuration"
    else:
        _log.error("unexpected error while resolving a run", exc_info=err)
        kind, message = "Unexpected", f"{type(err).__name__}: {message} (a bug in lstm-viz; the server log has details)"
    return f"{kind} problem{' in ' + where if where else ''}: {message}"


def fixed_fields(config: AppConfig, choice: ModelChoice, seq: SequenceInput | None,
                 shown: Run | None) -> dict[str, tuple[object, str]]:
    """Sidebar fields the weights or the data decide, with the values in use and the reason."""
    fixed: dict[str, tuple[object, str]] = {}
    if choice.weights is not None:
        sizes = choice.weights.config
        fixed |= {name: (getattr(sizes, name), f"set by {choice.fixed_by}") for name in MODEL_FIELDS}
    elif choice.fixed_by:  # none loaded yet (or not loadable): the sizes of what is drawn, else of the settings
        sizes = shown.model.config if shown is not None else config
        fixed |= {name: (getattr(sizes, name), f"set by {choice.fixed_by} (none in use yet: these are the sizes "
                                               "shown)") for name in MODEL_FIELDS}
    if choice.task_input is not None or config.input_source in DATA_SIZED_SOURCES:
        why = "set by the toy task's input" if choice.task_input is not None else \
            f"set by the {config.input_source} input"
        sizes = {"input_size": seq.input_size, "seq_len": seq.seq_len, "batch_size": seq.batch_size} \
            if seq is not None else {name: getattr(config, name) for name in DATA_FIELDS}
        fixed |= {name: (value, why) for name, value in sizes.items()}
    return fixed
