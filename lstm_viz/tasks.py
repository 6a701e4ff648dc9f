"""Toy tasks that a small LSTM learns in seconds on a CPU, so its trained gates visibly do something."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from copy import deepcopy
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
from torch import Tensor, nn

from . import seeding
from .inputs import SequenceInput
from .model import InstrumentedLSTM
from .trace import Trace

BRACKET_VOCAB = ("(", ")", "a", "b")
# A linear head reads depth off tanh-squashed states, which works for a few levels, not for arbitrary depth.
BRACKET_MAX_DEPTH = 4
SMOOTHING = 20  # the loss compared with a task's threshold is the mean of this many last steps
PROGRESS_EVERY = 10
FORGET_BIAS = 2.0  # added to the forget gate's bias at init, split over bias_ih and bias_hh


@dataclass(frozen=True)
class Task:
    """A toy sequence task: its sizes, a stated loss target and a hard cap on training steps."""

    name: str
    title: str
    description: str  # one sentence for users
    input_size: int
    output_size: int
    hidden_size: int
    seq_len: int
    loss_threshold: float  # training stops once the smoothed MSE is below this
    max_steps: int  # training never runs more steps than this
    last_step_only: bool = False  # the target is at the last step only (else at every step)
    batch_size: int = 64
    lr: float = 1e-2


TASKS: dict[str, Task] = {
    task.name: task
    for task in (
        Task("sine", "Noisy sine: predict the next value",
             "Reads a noisy sine wave one value at a time and predicts the next value at every step.",
             input_size=1, output_size=1, hidden_size=16, seq_len=40, loss_threshold=0.012, max_steps=600),
        Task("memory", "Remember the first value",
             "Sees a value flagged by a marker at the first step, then noise, and must output that first "
             "value at the last step.",
             input_size=2, output_size=1, hidden_size=16, seq_len=25, loss_threshold=0.005, max_steps=800,
             last_step_only=True),
        Task("brackets", "Count bracket depth",
             "Reads characters from '()ab' and outputs, at every step, how many brackets are open (regression).",
             input_size=len(BRACKET_VOCAB), output_size=1, hidden_size=16, seq_len=30, loss_threshold=0.02,
             max_steps=800),
    )
}

SINE_PERIOD = (10.0, 20.0)  # each sequence draws its period from this range
SINE_NOISE = 0.05


def get_task(task: Task | str) -> Task:
    """The Task itself, or the one of that name."""
    if isinstance(task, Task):
        return task
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    return TASKS[task]


# Each batch maker returns x, the targets y and the task's hidden variable at each step of x, (T, B): the sine's
# clean phase, the stored value, the bracket depth (what a unit that solves the task should track).

def _sine_batch(task: Task, B: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    # T + 1 noisy values: x is the first T, the target at t is the value at t + 1
    period = torch.empty(1, B).uniform_(*SINE_PERIOD, generator=gen)
    phase = torch.rand(1, B, generator=gen) * 2 * math.pi
    t = torch.arange(task.seq_len + 1, dtype=torch.float32)[:, None]
    clean_phase = 2 * math.pi * t / period + phase  # (T + 1, B)
    wave = torch.sin(clean_phase) + SINE_NOISE * torch.randn(len(t), B, generator=gen)
    return wave[:-1, :, None], wave[1:, :, None], clean_phase[:-1]


def _memory_batch(task: Task, B: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    x = torch.zeros(task.seq_len, B, 2)
    x[:, :, 0] = torch.rand(task.seq_len, B, generator=gen) * 2 - 1  # the value at t = 0, distractors after
    x[0, :, 1] = 1.0  # the marker says "store this one"
    return x, x[0, :, :1].clone(), x[0, :, 0].expand(task.seq_len, B).clone()


def _brackets_batch(task: Task, B: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    ids = torch.empty(task.seq_len, B, dtype=torch.long)
    depths = torch.empty(task.seq_len, B, 1)
    depth = torch.zeros(B, dtype=torch.long)
    for t in range(task.seq_len):
        u = torch.rand(B, generator=gen)
        letter = torch.randint(2, len(BRACKET_VOCAB), (B,), generator=gen)
        # open 35%, close 35%, else a letter; never close below 0 (balanced-ish) or open past BRACKET_MAX_DEPTH
        opens = (u < 0.35) & (depth < BRACKET_MAX_DEPTH)
        closes = (u >= 0.35) & (u < 0.7) & (depth > 0)
        ids[t] = torch.where(opens, 0, torch.where(closes, 1, letter))
        depth = depth + opens.long() - closes.long()
        depths[t, :, 0] = depth
    return nn.functional.one_hot(ids, len(BRACKET_VOCAB)).float(), depths, depths[..., 0].clone()


_BATCHES = {"sine": _sine_batch, "memory": _memory_batch, "brackets": _brackets_batch}


def make_batch(task: Task | str, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """A random batch: x (T, B, I) and targets y, (T, B, O), or (B, O) for a last-step-only task."""
    x, y, _ = make_batch_with_hidden(task, batch_size, generator)
    return x, y


def make_batch_with_hidden(task: Task | str, batch_size: int,
                           generator: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """make_batch's x and y (the same draws) and the task's hidden variable at each step, (T, B): the sine's clean
    phase (radians), the value stored at t = 0, the bracket depth after reading x_t."""
    task = get_task(task)
    return _BATCHES[task.name](task, batch_size, generator)


def example(task: Task | str, seed: int = 0) -> SequenceInput:
    """One example of the task (batch 1) with readable time labels."""
    return example_with_target(task, seed)[0]


def example_with_target(task: Task | str, seed: int = 0) -> tuple[SequenceInput, np.ndarray]:
    """One example of the task (batch 1) and its target at each step, (T, 1): NaN where the task has none
    (a last-step-only task has one at the last step)."""
    task = get_task(task)
    x, y = make_batch(task, 1, seeding.generator(seed))
    T = task.seq_len
    target = np.full((T, 1), np.nan, dtype=np.float32)
    if task.last_step_only:
        target[-1] = y[:, 0].numpy()  # (B, O) -> the first output
    else:
        target[:] = y[..., 0].numpy()  # (T, B, O)
    if task.name == "brackets":
        labels = [BRACKET_VOCAB[k] for k in x[:, 0].argmax(-1).tolist()]
        return SequenceInput(x, labels, f"{task.title}, example {seed}", BRACKET_VOCAB), target
    labels = [f"t={t}" for t in range(T)]
    if task.name == "memory":
        labels[0], labels[-1] = "store", "recall"
    return SequenceInput(x, labels, f"{task.title}, example {seed}"), target


@dataclass(frozen=True)
class Readout:
    """What a model should and did output at each step, (T, B) each: a toy task's target (NaN where it has
    none) and its trained head's prediction (None before training)."""

    target: np.ndarray
    prediction: np.ndarray | None = None


class _LSTMWithHead:
    """An LSTM (`self.lstm`) and the linear head reading its output (`self.head`)."""

    lstm: nn.LSTM
    head: nn.Linear

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """The head's output at every step, (T, B, O)."""
        return self.head(self.lstm(x)[0])

    @torch.no_grad()
    def read(self, output: np.ndarray) -> np.ndarray:
        """The head on an LSTM's (time-major) output, (T, B, D·Hr) -> the first output at each step, (T, B)."""
        weight = self.head.weight
        return self.head(torch.as_tensor(output, dtype=weight.dtype, device=weight.device))[..., 0].cpu().numpy()


@dataclass
class TrainResult(_LSTMWithHead):
    """A trained LSTM (eval mode), its linear head, the loss at every step, the steps run and the time taken."""

    lstm: nn.LSTM
    head: nn.Linear
    losses: list[float]
    steps: int
    seconds: float

    @property
    def final_loss(self) -> float:
        """The smoothed loss that training compares with the task's threshold."""
        return smoothed(self.losses)


@dataclass(frozen=True)
class Snapshot(_LSTMWithHead):
    """The weights after `step` steps of training (0: at init): frozen copies of the LSTM and its head."""

    step: int
    lstm: nn.LSTM
    head: nn.Linear

    @classmethod
    def of(cls, step: int, lstm: nn.LSTM, head: nn.Linear) -> Snapshot:
        return cls(step, _frozen_copy(lstm), _frozen_copy(head))

    @cached_property
    def model(self) -> InstrumentedLSTM:
        """The LSTM converted once for tracing."""
        return InstrumentedLSTM.from_torch(self.lstm)


def _frozen_copy(module: nn.Module) -> nn.Module:
    """A copy in eval mode that holds no gradients and asks for none."""
    copy = deepcopy(module).eval().requires_grad_(False)
    for p in copy.parameters():
        p.grad = None
    return copy


def smoothed(losses: list[float]) -> float:
    """Mean of the last SMOOTHING losses: one lucky batch should not end training."""
    tail = losses[-SMOOTHING:]
    return sum(tail) / len(tail) if tail else math.inf


def new_lstm(task: Task | str, hidden_size: int | None = None, seed: int = 0, *,
             generator: torch.Generator | None = None) -> nn.LSTM:
    """An untrained nn.LSTM for the task, as training from `seed` starts it: nn.LSTM's init (drawn from
    `generator`, or else a private one seeded with `seed`), forget-gate bias raised by 2."""
    task = get_task(task)
    hidden = task.hidden_size if hidden_size is None else hidden_size
    gen = seeding.generator(seed) if generator is None else generator
    lstm = seeding.lstm(nn.LSTM, gen, input_size=task.input_size, hidden_size=hidden)
    # f starts near σ(2) ≈ 0.88 rather than 0.5, so a stored value survives long enough for its gradient to
    # reach the store step (Gers et al. 2000): with +0 or +1, "memory" stays at chance loss (≈ 1/3) for all of
    # its 800 steps (measured).
    with torch.no_grad():
        for bias in (lstm.bias_ih_l0, lstm.bias_hh_l0):
            bias[hidden:2 * hidden] += FORGET_BIAS / 2  # rows i, f, g, o: f is the second block
    return lstm


def train(task_name: str, *, steps: int | None = None, seed: int = 0, hidden_size: int | None = None,
          progress: Callable[[int, float], None] | None = None,
          on_step: Callable[[int, nn.LSTM, nn.Linear, float], None] | None = None,
          stop: Callable[[], bool] | None = None) -> TrainResult:
    """Train nn.LSTM + a linear head with Adam until the smoothed loss beats the threshold or `steps` run out.

    `progress(step, smoothed_loss)` is called every PROGRESS_EVERY steps and at the last one. `on_step(step, lstm,
    head, loss)` sees the live modules at init (step 0, loss NaN) and after every step: copy what it keeps
    (Snapshot.of). Once `stop()` is true, training ends before its next step; the result holds the steps run.
    """
    task = get_task(task_name)
    steps = task.max_steps if steps is None else steps
    if not 1 <= steps <= task.max_steps:
        raise ValueError(f"steps must be between 1 and {task.max_steps} for task {task.name!r}, got {steps}")
    hidden = task.hidden_size if hidden_size is None else hidden_size
    data = seeding.generator(seed)
    losses: list[float] = []
    start = time.perf_counter()
    init = seeding.generator(seed)  # private: the global RNG is neither read nor changed (sessions are threads)
    lstm = new_lstm(task, hidden, generator=init)
    head = seeding.linear(hidden, task.output_size, init)
    params = [*lstm.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=task.lr)
    if on_step is not None:
        on_step(0, lstm, head, math.nan)
    for step in range(1, steps + 1):
        if stop is not None and stop():
            break
        x, y = make_batch(task, task.batch_size, data)
        out = head(lstm(x)[0])
        loss = nn.functional.mse_loss(out[-1] if task.last_step_only else out, y)
        opt.zero_grad()
        loss.backward()
        # an occasional exploding gradient would otherwise undo what was learnt (a loss spike, measured)
        nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        if on_step is not None:
            on_step(step, lstm, head, losses[-1])
        done = len(losses) >= SMOOTHING and smoothed(losses) < task.loss_threshold
        if progress is not None and (step % PROGRESS_EVERY == 0 or done or step == steps):
            progress(step, smoothed(losses))
        if done:
            break
    return TrainResult(lstm.eval(), head.eval(), losses, len(losses), time.perf_counter() - start)


def trained_trace(result: TrainResult, task_name: str, seed: int = 0) -> Trace:
    """Every gate and state of the trained LSTM on one example of the task."""
    return InstrumentedLSTM.from_torch(result.lstm).trace(example(task_name, seed).x)
