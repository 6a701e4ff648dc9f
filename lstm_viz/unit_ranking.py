"""Which units track a toy task's hidden variable: the bracket depth, the stored value, the sine's phase. Each unit's
c and h are correlated with it over a batch of examples, and ranked by |r|. No streamlit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import seeding, tasks
from .model import InstrumentedLSTM

VARIABLES = {"brackets": "the bracket depth", "memory": "the stored value", "sine": "the sine's phase"}
RANKING_BATCH = 64  # examples the correlations are measured on


@dataclass(frozen=True)
class UnitScore:
    """How closely one unit's c or h follows the task's hidden variable: Pearson r over steps and examples."""

    layer: int
    direction: int
    unit: int
    quantity: str  # "c" or "h"
    r: float
    variable: str  # in words: "the bracket depth", "sin of the sine's phase", …


def hidden_variables(task_name: str, seed: int = 0,
                     batch_size: int = RANKING_BATCH) -> tuple[torch.Tensor, dict[str, np.ndarray], slice]:
    """A batch of examples, x (T, B, I); the variables a unit may track, by name in words, each (T, B); and the
    steps where they are defined for the task (memory: the held steps t = 1..T−1, after the value was read)."""
    x, _, hidden = tasks.make_batch_with_hidden(task_name, batch_size, seeding.generator(seed))
    hidden = hidden.numpy()
    if task_name == "sine":  # a phase is an angle: a unit can follow its sine or its cosine, not the angle itself
        phase = VARIABLES["sine"]
        return x, {f"sin of {phase}": np.sin(hidden), f"cos of {phase}": np.cos(hidden)}, slice(None)
    steps = slice(1, None) if task_name == "memory" else slice(None)
    return x, {VARIABLES[task_name]: hidden}, steps


def correlations(values: np.ndarray, variable: np.ndarray) -> np.ndarray:
    """Pearson r of each unit's values, (T, B, H), with the variable, (T, B), over all steps and examples; 0 for a
    unit (or a variable) that does not vary."""
    v = values.reshape(-1, values.shape[-1]).astype(np.float64)
    y = variable.reshape(-1).astype(np.float64)
    v, y = v - v.mean(0), y - y.mean()
    scale = np.sqrt((v * v).sum(0) * (y * y).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (v * y[:, None]).sum(0) / scale
    return np.where(scale > 0, r, 0.0)


def rank_units(task_name: str, result: tasks.TrainResult | tasks.Snapshot, seed: int = 0,
               batch_size: int = RANKING_BATCH) -> list[UnitScore]:
    """Every (layer, direction, unit, c or h) of `result`'s LSTM with its r against the task's hidden variable
    (the one it follows best, for the sine's sin and cos), best |r| first."""
    x, variables, steps = hidden_variables(task_name, seed, batch_size)
    trace = InstrumentedLSTM.from_torch(result.lstm).trace(x)
    scores = []
    for quantity in ("c", "h"):
        states = getattr(trace, quantity).numpy()  # (L, D, T, B, H)
        for layer in range(trace.num_layers):
            for direction in range(trace.num_directions):
                by_variable = {name: correlations(states[layer, direction, steps], value[steps])
                               for name, value in variables.items()}
                for unit in range(states.shape[-1]):
                    name, r = max(((name, rs[unit]) for name, rs in by_variable.items()), key=lambda nr: abs(nr[1]))
                    scores.append(UnitScore(layer, direction, unit, quantity, float(r), name))
    return sorted(scores, key=lambda s: -abs(s.r))
