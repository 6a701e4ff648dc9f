"""Helpers for driving the Streamlit app in a real headless Chromium (Playwright, no pytest-playwright).

Used by tests/test_browser.py and docs/make_screenshots.py. Playwright's own browser download cannot
work offline, so Debian's /usr/bin/chromium is launched via `executable_path`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
APP_PATH = REPO_ROOT / "app.py"
SERVER_START_TIMEOUT_S = 60.0
APP_TIMEOUT_MS = 60_000
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
    "--disable-dev-shm-usage",
]


def find_chromium() -> str | None:
    """Path of a system Chromium, or None."""
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def have_playwright() -> bool:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return False
    return True


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200 and response.read().strip() == b"ok"
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def streamlit_process(app_path: Path | str = APP_PATH, timeout_s: float = SERVER_START_TIMEOUT_S,
                      env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run `streamlit run app_path` on a free loopback port (with `env` added to the environment); yields
    (base URL, the server's Popen), e.g. for a load test to read the server's memory from /proc/<pid>.

    The process is always stopped on exit: terminated, then killed after a grace period.
    """
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(app_path), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true",
           "--browser.gatherUsageStats", "false"]
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile(mode="w+b") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                                env={**os.environ, **(env or {})})
        try:
            deadline = time.monotonic() + timeout_s
            while not _healthy(f"{base}/_stcore/health"):
                exited = proc.poll() is not None
                if exited or time.monotonic() > deadline:
                    log.seek(0)
                    output = log.read().decode(errors="replace")[-4000:]
                    why = f"exited with {proc.returncode}" if exited else f"not up in {timeout_s:g} s"
                    raise RuntimeError(f"streamlit server {why}; its output:\n{output}")
                time.sleep(0.25)
            yield base, proc
        finally:
            stop_process(proc)


@contextlib.contextmanager
def streamlit_server(app_path: Path | str = APP_PATH, query: str = "",
                     timeout_s: float = SERVER_START_TIMEOUT_S) -> Iterator[str]:
    """Run `streamlit run app_path` on a free loopback port; yields the base URL (plus `query`).

    The process is always stopped on exit: terminated, then killed after a grace period.
    """
    with streamlit_process(app_path, timeout_s) as (base, _proc):
        yield f"{base}/{query.lstrip('/')}" if query else base


def launch_browser(playwright, **kwargs):
    """Headless Debian Chromium through Playwright."""
    executable = find_chromium()
    if executable is None:
        raise RuntimeError("no chromium found (looked at /usr/bin/chromium and PATH)")
    return playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS, **kwargs)


# Every Plotly chart on the page (the other tabs' figures, the explorer's two): titles, annotations and heatmaps.
# Heatmap z may be typed arrays: copied to lists. Plain strings, so sync pages here and async ones
# (tests/load_support.py) share them.
READ_CHARTS_JS = r"""() => {
    const plain = (s) => (s || '').replace(/<[^>]*>/g, '').replace(/\u200b/g, '').trim();
    const toList = (a) => (a == null ? null : Array.from(a, (row) =>
        (row != null && typeof row === 'object' && 'length' in row) ? Array.from(row) : row));
    const plots = document.querySelectorAll('.js-plotly-plot');
    return Array.from(plots, (p) => {
        const layout = p.layout || {};
        const title = typeof layout.title === 'string' ? layout.title : (layout.title && layout.title.text);
        const traces = p._fullData || p.data || [];
        return {
            title: plain(title),
            annotations: (layout.annotations || []).map((a) => plain(a.text)),
            heatmaps: traces.filter((t) => t.type === 'heatmap')
                .map((t) => ({name: t.name || '', z: toList(t.z)})),
            drawn: Boolean(p._fullData && p._fullData.length && p.querySelector('.main-svg')),
        };
    });
}"""
# The explorer's state as the page shows it: t, unit and batch (the root's data attributes) and the six step
# heatmaps' z (batch × units) by quantity, read from its Plotly div; null before it is drawn.
READ_EXPLORER_JS = r"""() => {
    const root = document.querySelector('[data-testid=lvx]');
    const plot = root && root.querySelector('[data-testid=lvx-step]');
    if (!root || !plot || !plot.data || !plot.querySelector('.main-svg')) return null;
    const rows = (z) => Array.from(z, (row) => Array.from(row));
    return {t: Number(root.dataset.t), unit: Number(root.dataset.unit), batch: Number(root.dataset.batch),
            z: Object.fromEntries(plot.data.map((trace) => [trace.name, rows(trace.z)]))};
}"""
# Ready: the script has finished its run and the explorer is drawn (at step t, when t is not null).
STEP_READY_JS = r"""(t) => {
    const app = document.querySelector('[data-testid=stApp]');
    if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
    const explorer = (""" + READ_EXPLORER_JS + r""")();
    return Boolean(explorer) && Object.keys(explorer.z).length === 6 && (t === null || explorer.t === t);
}"""
STEP_KEYS = ("f", "i", "o", "g", "c", "h")


def wait_for_app(page, t: int | None = None, timeout_ms: int = APP_TIMEOUT_MS) -> None:
    """Wait until the script has finished its run and the explorer is drawn (at step `t` if given, e.g. after
    stepping).

    On a timeout, the error says what the page showed instead (script state, charts, messages).
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_selector("[data-testid=stApp]", state="attached", timeout=timeout_ms)
        page.wait_for_function(STEP_READY_JS, arg=t, timeout=timeout_ms, polling=200)
    except PlaywrightTimeout as err:
        want = "" if t is None else f" at t={t}"
        raise AssertionError(f"app not ready{want} within {timeout_ms / 1000:g} s: {describe_page(page)}") \
            from err


def describe_page(page) -> str:
    """Script state, the explorer's t, chart titles, and any exception or alert boxes: for failure messages."""
    state = page.evaluate(
        "document.querySelector('[data-testid=stApp]')?.getAttribute('data-test-script-state') ?? 'no stApp'")
    boxes = page.evaluate("""Array.from(
        document.querySelectorAll('[data-testid=stException], [data-testid=stAlert]'),
        (e) => e.innerText.slice(0, 600))""")
    explorer = page.evaluate(READ_EXPLORER_JS)
    charts = [[c["title"], *c["annotations"]] for c in read_charts(page)]
    return (f"script state {state}; explorer at t={explorer['t'] if explorer else None}; charts {charts}; "
            f"messages {boxes}")


def read_charts(page) -> list[dict]:
    """Every Plotly chart on the page, in page order: {"title", "annotations" (plain text),
    "heatmaps": [{"name", "z" (nested lists)}], "drawn"}."""
    return page.evaluate(READ_CHARTS_JS)


def explorer_state(page) -> dict | None:
    """The explorer as drawn: {"t", "unit", "batch", "z": {"f": rows, …, "h": rows}}, or None before it is."""
    return page.evaluate(READ_EXPLORER_JS)


def click_cell(page, quantity: str, unit: int, batch: int) -> None:
    """Click the step heatmap cell of (batch, unit) of one quantity, where Plotly draws it."""
    index = list(STEP_KEYS).index(quantity)
    x, y = page.evaluate("""([index, unit, batch]) => {
        const plot = document.querySelector('[data-testid=lvx-step]');
        const axis = index === 0 ? '' : String(index + 1);
        const xa = plot._fullLayout['xaxis' + axis], ya = plot._fullLayout['yaxis' + axis];
        const box = plot.getBoundingClientRect();
        return [box.left + xa._offset + xa.l2p(unit), box.top + ya._offset + ya.l2p(batch)];
    }""", [index, unit, batch])
    page.mouse.click(x, y)


def browser_marks() -> list:
    """The pytest marks of a module that drives Chromium: `browser`, skipped where Playwright or Chromium is
    missing."""
    import pytest

    return [pytest.mark.browser,
            pytest.mark.skipif(not have_playwright(), reason="the playwright Python package is not installed"),
            pytest.mark.skipif(find_chromium() is None, reason="no chromium at /usr/bin/chromium or on PATH")]


def stop_process(proc: subprocess.Popen, timeout_s: float = 15) -> None:
    """Terminate a server, killing it if it does not stop within timeout_s."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout_s)
