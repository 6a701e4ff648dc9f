"""Several sessions in one server process (AppTest sessions share the process as browser sessions do): the
memory all sessions' traces hold is bounded, and a session that is refused keeps working."""

from __future__ import annotations

import gc

import numpy as np
import pytest
from app_support import assert_clean, start
from figure_data import step_z

from lstm_viz import guard
from lstm_viz.pipeline import AppConfig

pytestmark = pytest.mark.app


def test_a_session_is_refused_while_others_hold_the_servers_memory_and_admitted_after(monkeypatch):
    gc.collect()
    first = start(seq_len=20_000, hidden_size=64)  # ≈ 62 MB of trace
    held = guard.server_bytes()  # the first session's, what other tests' sessions hold, the baseline
    second = start()
    good = step_z(second, "f")
    config = AppConfig(seq_len=20_000, hidden_size=64)
    need = guard.peak_bytes(config.lstm_config(), 20_000, config.batch_size)
    monkeypatch.setenv("LSTM_VIZ_MAX_TOTAL_GB", str((held + need / 2) / 1e9))  # room for it once the first leaves
    second.number_input(key="seq_len").set_value(20_000)
    second.number_input(key="hidden_size").set_value(64).run()  # the same again: does not fit beside the first
    assert_clean(second)
    assert any("the server is busy" in e.value for e in second.error), [e.value for e in second.error]
    np.testing.assert_array_equal(step_z(second, "f"), good)  # its last good view stays
    assert_clean(first)
    del first  # the first user leaves: their session and trace are gone
    gc.collect()
    second.run()
    assert_clean(second)
    assert not second.error, [e.value for e in second.error]
    assert step_z(second, "f").shape == (AppConfig().batch_size, 64)


def test_the_data_of_sessions_whose_browser_has_gone_is_released_at_once():
    from lstm_viz import resolve
    from lstm_viz.session import SessionData, release_disconnected
    from lstm_viz.view import Sources

    gc.collect()
    before = guard.held_bytes()
    config = AppConfig(seq_len=2_000, hidden_size=64)
    gone, here = SessionData(owner="gone"), SessionData(owner="here")
    for session in (gone, here):
        resolve.resolve(config, Sources(), {}, resolve.ModelChoice(), session)
    one = guard.trace_bytes(config.lstm_config(), 2_000, config.batch_size)
    assert guard.held_bytes() - before == 2 * one
    assert release_disconnected(lambda owner: owner != "gone") == 1  # (other tests' sessions stay connected)
    assert guard.held_bytes() - before == one  # the gone session's trace, uncounted because it is freed
    assert gone.last_good is None
    assert here.last_good is not None
    assert release_disconnected(lambda owner: owner != "gone") == 0  # nothing left to release
