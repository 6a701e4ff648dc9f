"""Toy-task training in the background: one job per (task, seed), shared by every session of the server process.

Training is seeded (tasks.train draws from private generators), so a job's weights are those any session would
train: a class that presses Train forty times trains once. The registry is bounded: running jobs are never
dropped, finished ones beyond FINISHED_KEPT go, least recently asked for first. No streamlit.
"""

from __future__ import annotations

import atexit
import ctypes
import math
import threading
from collections import OrderedDict
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

from . import tasks, unit_ranking
from .guard import ResourceError

MAX_SNAPSHOTS = 24  # weights kept along one training, init and final included
FINISHED_KEPT = 8  # finished jobs the registry keeps (sessions may hold theirs longer)
MAX_RUNNING = 4  # jobs training at once: each keeps a core busy for seconds
MEMO_KEPT = 4  # values derived from a job (e.g. a ranking, a heatmap) kept with it
QUANTITIES = ("f", "i", "o", "g", "c", "h")


class Progress(NamedTuple):
    """Where a training stands: steps done, the most it may run, and the loss of every step so far."""

    step: int
    max_steps: int
    losses: tuple[float, ...]


class TrainingJob:
    """One toy task trained from one seed in a daemon thread; snapshots of its weights are kept along the way."""

    def __init__(self, task_name: str, seed: int) -> None:
        self.task_name, self.seed = task_name, seed
        self.result: tasks.TrainResult | None = None
        self.error = ""  # why there is no result: training failed or was cancelled
        self._lock = threading.Lock()
        self._stop, self._finished = threading.Event(), threading.Event()
        self._losses: list[float] = []
        self._snapshots: list[tasks.Snapshot] = []
        self._stride = 1  # a snapshot every `stride` steps; doubled whenever they would not fit
        self._memo: OrderedDict[tuple, object] = OrderedDict()
        self._thread = threading.Thread(target=self._train, name=f"train {task_name} {seed}", daemon=True)

    def __repr__(self) -> str:
        state = "running" if not self.done else self.error or "done"
        return f"TrainingJob({self.task_name!r}, seed={self.seed}, {state})"

    @property
    def done(self) -> bool:
        """Finished: with a result, or with an error (failed or cancelled)."""
        return self._finished.is_set()

    @property
    def progress(self) -> Progress:
        with self._lock:
            losses = tuple(self._losses)
        return Progress(len(losses), tasks.get_task(self.task_name).max_steps, losses)

    @property
    def snapshots(self) -> tuple[tasks.Snapshot, ...]:
        """The weights at init (step 0), at evenly spaced steps and, once done, the final ones; MAX_SNAPSHOTS at
        most (thinned to every other one whenever they would not fit)."""
        with self._lock:
            return tuple(self._snapshots)

    def cancel(self) -> None:
        """Stop after the current step; the job then ends with an error saying so, and no result."""
        self._stop.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the job is done (or `timeout` seconds pass); whether it is done."""
        return self._finished.wait(timeout)

    def memo(self, key: tuple, compute: Callable[[], object]):
        """compute(), once per key while it is one of the MEMO_KEPT last asked for (derived from this job's
        weights, which never change once done)."""
        with self._lock:
            if key in self._memo:
                self._memo.move_to_end(key)
                return self._memo[key]
        value = compute()  # outside the lock: two sessions may both compute it, neither waits on the other
        with self._lock:
            self._memo[key] = value
            while len(self._memo) > MEMO_KEPT:
                self._memo.popitem(last=False)
        return value

    def ranking(self, seed: int) -> list[unit_ranking.UnitScore]:
        """The trained units, best tracker of the task's hidden variable (on examples from `seed`) first; computed
        once per seed while memoised. Only for a job with a result."""
        return self.memo(("ranking", seed), lambda: unit_ranking.rank_units(self.task_name, self.result, seed=seed))

    def _on_step(self, step: int, lstm: nn.LSTM, head: nn.Linear, loss: float) -> None:
        snapshot = tasks.Snapshot.of(step, lstm, head) if step % self._stride == 0 else None
        with self._lock:
            if not math.isnan(loss):
                self._losses.append(loss)
            if snapshot is not None:
                self._snapshots.append(snapshot)
                if len(self._snapshots) > MAX_SNAPSHOTS - 1:  # one place is kept for the final weights
                    self._stride *= 2
                    self._snapshots = [s for s in self._snapshots if s.step % self._stride == 0]

    def _train(self) -> None:
        _one_openmp_thread()
        try:
            result = tasks.train(self.task_name, seed=self.seed, on_step=self._on_step, stop=self._stop.is_set)
            if self._stop.is_set():
                self.error = f"Training was cancelled after {result.steps} steps."
            else:
                final = tasks.Snapshot.of(result.steps, result.lstm, result.head)
                with self._lock:
                    if self._snapshots[-1].step != result.steps:
                        self._snapshots.append(final)
                self.result = result
        except Exception as err:  # any kind: the page shows it; the server goes on
            self.error = f"Training failed: {type(err).__name__}: {err}"
        finally:
            self._finished.set()


def _one_openmp_thread() -> None:
    """Run this thread's torch ops on one OpenMP thread. For these tiny LSTMs, intra-op threads only wait on each
    other: memory trained in 0.22 s on one against 1.1 s on two (measured on a busy 2-core machine). OpenMP's
    thread count is per OS thread, so the server's other threads keep theirs (torch.set_num_threads: all of them)."""
    with suppress(OSError, AttributeError):  # torch without a bundled GNU OpenMP (another platform, build): as it is
        ctypes.CDLL(str(Path(torch.__file__).parent / "lib" / "libgomp.so.1")).omp_set_num_threads(1)


_jobs: OrderedDict[tuple[str, int], TrainingJob] = OrderedDict()
_jobs_lock = threading.Lock()


def start(task_name: str, seed: int) -> TrainingJob:
    """The job training `task_name` from `seed`: the running or finished one, or a new one started now (a failed
    or cancelled one is started again). Raises ValueError for an unknown task, ResourceError when MAX_RUNNING
    jobs are training already."""
    task = tasks.get_task(task_name)
    key = (task.name, int(seed))
    with _jobs_lock:
        job = _jobs.get(key)
        if job is None or (job.done and job.error):
            if sum(not j.done for j in _jobs.values()) >= MAX_RUNNING:
                raise ResourceError(f"{MAX_RUNNING} toy tasks are training on this server already: try again in a "
                                    "few seconds.")
            job = TrainingJob(*key)
            _jobs[key] = job
            job._thread.start()
        _jobs.move_to_end(key)
        _evict()
    return job


@atexit.register
def _stop_all(timeout_s: float = 5.0) -> None:
    """At interpreter exit, stop every running job and wait for it: a daemon thread still inside torch while
    Python finalises aborts the process ("terminate called without an active exception")."""
    with _jobs_lock:
        running = [job for job in _jobs.values() if not job.done]
    for job in running:
        job.cancel()
    for job in running:
        job._thread.join(timeout_s)  # not wait(): the thread is still unwinding when the job says it is done


def find(task_name: str, seed: int) -> TrainingJob | None:
    """The job for (task, seed) if the registry still has it."""
    key = (task_name, int(seed))
    with _jobs_lock:
        job = _jobs.get(key)
        if job is not None:
            _jobs.move_to_end(key)
        return job


def _evict() -> None:
    """Drop the least recently asked-for finished jobs beyond FINISHED_KEPT (caller holds the lock)."""
    finished = [key for key, job in _jobs.items() if job.done]
    for key in finished[:max(0, len(finished) - FINISHED_KEPT)]:
        del _jobs[key]


def through_training(snapshots: tuple[tasks.Snapshot, ...], x: Tensor) -> dict[str, np.ndarray]:
    """Each gate and state of layer 0, direction 0, batch element 0 on the input x under every snapshot's weights,
    (S, T, H) each: what every unit did at each step, at each point of training."""
    traces = [snapshot.model.trace(x) for snapshot in snapshots]
    return {name: np.stack([getattr(trace, name)[0, 0, :, 0].numpy() for trace in traces]) for name in QUANTITIES}


def readouts(task_name: str, weights: tasks.TrainResult | tasks.Snapshot,
             seeds: range) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """The task's examples of these seeds: (title, target (T,) with NaN where there is none, the prediction (T,))."""
    shown = []
    for seed in seeds:
        seq, target = tasks.example_with_target(task_name, seed)
        words = f": {''.join(seq.labels)}" if seq.vocab else ""
        shown.append((f"example {seed}{words}", target[:, 0], weights.predict(seq.x)[:, 0, 0].numpy()))
    return shown
