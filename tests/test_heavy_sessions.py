"""Two heavy sessions against one `streamlit run app.py` with a small server budget (LSTM_VIZ_MAX_TOTAL_GB): the
server's resident memory, sampled all along, never passes the budget; the second heavy trace is refused while
the first is held, with the last good view kept; the first session's long CSV export is refused (offering the
.npz); and once the first user's browser has gone, the second is admitted without waiting for Streamlit's
session TTL.

Sizes: a trace of hidden_size 64, batch 8 and 32,000 steps holds ~460 MB (~880 MB charged while computed by the
fused engine, with its temporaries and the parity check); the server itself takes ~0.3–0.5 GB once torch and the
first run are in. A 1.6 GB budget fits the baseline and one such run, not a second beside the first's trace. The
shape is one where the cost model clearly prefers the fused engine (~1.6x faster): at hidden_size 256, batch 8 and
8,000 steps the two engines were within 10% of each other, and a server that calibrated the stepwise one faster
charged 1.2 GB (its peak factor is 2.6, not 1.9), which no 1.6 GB budget can fit beside the baseline.
"""

from __future__ import annotations

import pytest
from browser_support import (
    CHROMIUM_ARGS,
    READ_EXPLORER_JS,
    browser_marks,
    find_chromium,
    streamlit_process,
    wait_for_app,
)
from load_support import RssSampler, proc_status_mb

from lstm_viz import guard
from lstm_viz.pipeline import AppConfig

pytestmark = [*browser_marks(), pytest.mark.load]

BUDGET_GB = 1.6
HIDDEN, BATCH, STEPS = 64, 8, 32_000
HEAVY = f"hidden_size={HIDDEN}&batch_size={BATCH}&seq_len={STEPS}"
TIMEOUT_MS = 180_000  # a heavy trace on 2 busy cores, and a first draw


def error_boxes(page) -> list[str]:
    return page.evaluate("""() => Array.from(document.querySelectorAll(
        '[data-testid=stException], [data-testid=stAlertContentError]'), (e) => e.innerText)""")


def test_two_heavy_sessions_stay_within_the_server_budget():
    from playwright.sync_api import sync_playwright

    heavy = AppConfig(hidden_size=HIDDEN, batch_size=BATCH, seq_len=STEPS)
    charged = guard.peak_bytes(heavy.lstm_config(), heavy.seq_len, heavy.batch_size)
    held = guard.trace_bytes(heavy.lstm_config(), heavy.seq_len, heavy.batch_size)
    baseline = (0.3e9, 0.5e9)  # what the server takes itself, least and most
    assert baseline[0] + held + charged > BUDGET_GB * 1e9 > baseline[1] + charged  # as the docstring says
    env = {"LSTM_VIZ_MAX_TOTAL_GB": str(BUDGET_GB)}
    with streamlit_process(env=env) as (base, server), sync_playwright() as pw, \
            RssSampler(server.pid, 0.0, interval=0.2) as rss:
        browser = pw.chromium.launch(executable_path=find_chromium(), args=CHROMIUM_ARGS)
        first_user, second_user = browser.new_context(), browser.new_context()
        first, second = first_user.new_page(), second_user.new_page()
        second.goto(base)  # a small run first: the second user's last good view
        wait_for_app(second, t=0, timeout_ms=TIMEOUT_MS)
        first.goto(f"{base}/?{HEAVY}")
        wait_for_app(first, t=0, timeout_ms=TIMEOUT_MS)
        assert error_boxes(first) == []
        assert len(first.evaluate(READ_EXPLORER_JS)["z"]["c"][0]) == HIDDEN

        # The first user's long CSV: 98 M values, refused before any work, pointing at the .npz.
        first.get_by_role("tab", name="Export").click()
        first.get_by_text("download the .npz instead").first.wait_for(timeout=TIMEOUT_MS)
        assert first.get_by_role("button", name="Trace (long CSV)").is_disabled()

        # The second user asks for the same in the sidebar: refused while the first holds its trace, last good view
        # kept.
        for label, value in (("seq_len", STEPS), ("batch_size", BATCH), ("hidden_size", HIDDEN)):
            field = second.locator("[data-testid=stSidebar]").get_by_label(label, exact=True)
            field.fill(str(value))
            field.press("Enter")
            wait_for_app(second, timeout_ms=TIMEOUT_MS)
        second.get_by_text("the server is busy").wait_for(timeout=TIMEOUT_MS)
        wait_for_app(second, t=0, timeout_ms=TIMEOUT_MS)
        assert second.get_by_text("Showing the last good input").count() == 1
        assert len(second.evaluate(READ_EXPLORER_JS)["z"]["c"][0]) == AppConfig().hidden_size  # from before

        # The first user closes the tab: the next run anywhere releases their trace, and the second is admitted.
        first_user.close()
        second.wait_for_timeout(1000)  # the server notices the closed websocket
        second.goto(f"{base}/?{HEAVY}")  # (the page's own link says what it shows: the last good settings)
        wait_for_app(second, t=0, timeout_ms=TIMEOUT_MS)
        assert error_boxes(second) == [], error_boxes(second)
        assert len(second.evaluate(READ_EXPLORER_JS)["z"]["c"][0]) == HIDDEN
        peak_mb = max(proc_status_mb(server.pid, "VmHWM"), max(mb for _, mb in rss.samples))
        browser.close()
    budget_mib = BUDGET_GB * 1e9 / 2**20  # /proc reports kB of 1024 bytes
    print(f"\nserver peak RSS {peak_mb:.0f} MiB against a budget of {budget_mib:.0f} MiB "
          f"(samples: {len(rss.samples)}, last {rss.samples[-1][1]:.0f} MiB)")
    assert peak_mb <= budget_mib, f"server peak RSS {peak_mb:.0f} MiB > budget {budget_mib:.0f} MiB"
