"""What one browser session keeps between reruns: its last good run, the weights it uploaded, the toy tasks it
trained (references to the server's shared training jobs). No streamlit: the app keeps one SessionData in its
session state and asks it, never a loose cache.
"""

from __future__ import annotations

import gc
import hashlib
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable

from . import guard, loading
from .config import LSTMConfig
from .model import InstrumentedLSTM
from .training import TrainingJob

EXPLORER_WINDOWS_KEPT = 2  # explorer payloads (≤ 8 MB each) kept per session: the current window and the last
# Reading a weights file holds the file, the tensors torch.load unpacks (no more than the file: stored
# uncompressed, checked) and the model's float copies; 4x leaves room for a float16 file upcast to float32.
WEIGHTS_READ_BYTES_PER_BYTE = 4
WEIGHTS_KEPT = 2  # loaded models kept per session: the current one and the one before (switching back is free)
TRAINED_KEPT = 4  # toy-task trainings a session keeps (each a few hundred kB of snapshots)


class Upload:
    """An uploaded file's bytes and their digest, hashed once per rerun (files reach 50 MB)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.digest = hashlib.sha1(data).hexdigest()


class Window:
    """An explorer window's payload, counted against the server's memory while a session keeps it."""

    __slots__ = ("trace", "data", "__weakref__")

    def __init__(self, trace, data: bytes) -> None:
        self.trace, self.data = trace, data
        guard.hold(self, len(data))


class SessionData:
    """One session's memory. Every entry is bounded: a session that browses for hours holds no more; and once its
    browser has gone (`release_disconnected`), it holds nothing."""

    def __init__(self, owner: str = "") -> None:
        self.owner = owner  # the server's id of the session, to ask whether its browser is still connected
        _live.add(self)
        self.clear()

    def clear(self) -> None:
        """Forget everything: runs, weights, trained tasks, windows (all are recomputed when needed again)."""
        self.last_good_key: str | None = None
        self.last_good = None  # the resolve.Resolved the page showed last without a problem
        self._lstms: OrderedDict[str, dict[str, LSTMConfig]] = OrderedDict()
        self._weights: OrderedDict[tuple[str, str], InstrumentedLSTM] = OrderedDict()
        self.trained: OrderedDict[tuple[str, int], TrainingJob] = OrderedDict()  # (task, seed): trained here
        self._windows: OrderedDict[tuple, Window] = OrderedDict()
        self.cancel_requested = False  # the user pressed Cancel while a run was computing
        self.cancelled_key: str | None = None  # the run they cancelled: not started again until they ask

    def request_cancel(self) -> None:
        self.cancel_requested = True

    def run_again(self) -> None:
        self.cancel_requested, self.cancelled_key = False, None

    def explorer_window(self, trace, where: tuple, build: Callable[[], bytes], window_bytes: int) -> bytes:
        """The explorer's window payload of `trace` at `where` (layer, direction, start, stop), built once while it
        is one of the EXPLORER_WINDOWS_KEPT last used: the current window and the one before. Building it is
        charged `window_bytes` (its bound) to the server's memory."""
        key = (id(trace), *where)
        entry = self._windows.get(key)
        if entry is None or entry.trace is not trace:  # an id can be reused by a later trace: check it is this one
            with guard.charged(window_bytes, "the explorer's window"):
                entry = Window(trace, build())
            self._windows[key] = entry
        self._windows.move_to_end(key)
        while len(self._windows) > EXPLORER_WINDOWS_KEPT:
            self._windows.popitem(last=False)
        return entry.data

    def empty(self) -> bool:
        return not (self.last_good or self._weights or self._windows or self.trained or self._lstms)

    def remember(self, key: str, resolved) -> None:
        self.last_good_key, self.last_good = key, resolved

    def training(self, task_name: str, seed: int) -> TrainingJob | None:
        """The training of (task, seed) this session started (running, finished, failed or cancelled), if any."""
        job = self.trained.get((task_name, seed))
        if job is not None:
            self.trained.move_to_end((task_name, seed))
        return job

    def keep_training(self, job: TrainingJob) -> None:
        """Remember a training this session started; the TRAINED_KEPT most recent stay."""
        self.trained[(job.task_name, job.seed)] = job
        self.trained.move_to_end((job.task_name, job.seed))
        while len(self.trained) > TRAINED_KEPT:
            self.trained.popitem(last=False)

    def lstms_in(self, upload: Upload) -> dict[str, LSTMConfig]:
        """The LSTMs in an uploaded file by prefix (raises loading.WeightsError); read once per file."""
        return _kept(self._lstms, upload.digest, lambda: _read(loading.list_lstms, upload.data))

    def weights(self, upload: Upload, prefix: str) -> InstrumentedLSTM:
        """The LSTM at `prefix` in an uploaded file (raises loading.WeightsError); loaded once per (file, prefix)."""
        return _kept(self._weights, (upload.digest, prefix), lambda: _read(loading.load_lstm, upload.data, prefix))


def _read(load, data: bytes, *args):
    """A weights file read with its memory charged to the server: torch.load holds the file, the tensors it
    unpacks (at most the file's size: the archive is stored uncompressed, checked) and their float copies."""
    with guard.charged(WEIGHTS_READ_BYTES_PER_BYTE * len(data), "reading the weights file"):
        return load(data, *args)


_live: weakref.WeakSet[SessionData] = weakref.WeakSet()
_live_lock = threading.Lock()


def release_disconnected(connected: Callable[[str], bool]) -> int:
    """Empty the SessionData of every session whose browser has gone (`connected(owner)` is False): the server
    keeps a disconnected session for a while in case it comes back, but its traces need not wait with it.
    Returns how many were released."""
    with _live_lock:
        gone = [data for data in list(_live) if data.owner and not data.empty() and not connected(data.owner)]
        for data in gone:
            data.clear()
    if gone:
        gc.collect()  # a trace in a reference cycle is freed, and uncounted, now rather than at some later collection
    return len(gone)


def _kept(entries: OrderedDict, key, load):
    """entries[key], loaded on a miss; the WEIGHTS_KEPT most recently used stay."""
    if key in entries:
        entries.move_to_end(key)
        return entries[key]
    value = load()
    entries[key] = value
    while len(entries) > WEIGHTS_KEPT:
        entries.popitem(last=False)
    return value
