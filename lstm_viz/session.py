"""What one browser session keeps between reruns: its last good run, the weights it uploaded, the toy tasks it
trained. No streamlit: the app keeps one SessionData in its session state and asks it, never a loose cache.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass

from . import tasks
from .config import LSTMConfig
from .loading import list_lstms, load_lstm
from .model import InstrumentedLSTM

EXPLORER_WINDOWS_KEPT = 2  # explorer payloads (≤ 8 MB each) kept per session: the current window and the last
WEIGHTS_KEPT = 2  # loaded models kept per session: the current one and the one before (switching back is free)


class Upload:
    """An uploaded file's bytes and their digest, hashed once per rerun (files reach 50 MB)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.digest = hashlib.sha1(data).hexdigest()


@dataclass(frozen=True)
class TrainedTask:
    """A toy task trained in this session, and its LSTM converted once for tracing."""

    result: tasks.TrainResult
    model: InstrumentedLSTM


class SessionData:
    """One session's memory. Every entry is bounded: a session that browses for hours holds no more."""

    def __init__(self) -> None:
        self.last_good_key: str | None = None
        self.last_good = None  # the resolve.Resolved the page showed last without a problem
        self._lstms: OrderedDict[str, dict[str, LSTMConfig]] = OrderedDict()
        self._weights: OrderedDict[tuple[str, str], InstrumentedLSTM] = OrderedDict()
        self.trained: dict[tuple[str, int], TrainedTask] = {}
        self._windows: OrderedDict[tuple, tuple[object, bytes]] = OrderedDict()

    def explorer_window(self, trace, where: tuple, build) -> bytes:
        """The explorer's window payload of `trace` at `where` (layer, direction, start, stop), built once while it
        is one of the EXPLORER_WINDOWS_KEPT last used: the current window and the one before."""
        key = (id(trace), *where)
        entry = self._windows.get(key)
        if entry is None or entry[0] is not trace:  # an id can be reused by a later trace: check it is this one
            entry = (trace, build())
            self._windows[key] = entry
        self._windows.move_to_end(key)
        while len(self._windows) > EXPLORER_WINDOWS_KEPT:
            self._windows.popitem(last=False)
        return entry[1]

    def remember(self, key: str, resolved) -> None:
        self.last_good_key, self.last_good = key, resolved

    def lstms_in(self, upload: Upload) -> dict[str, LSTMConfig]:
        """The LSTMs in an uploaded file by prefix (raises loading.WeightsError); read once per file."""
        return _kept(self._lstms, upload.digest, lambda: list_lstms(upload.data))

    def weights(self, upload: Upload, prefix: str) -> InstrumentedLSTM:
        """The LSTM at `prefix` in an uploaded file (raises loading.WeightsError); loaded once per (file, prefix)."""
        return _kept(self._weights, (upload.digest, prefix), lambda: load_lstm(upload.data, prefix=prefix))


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
