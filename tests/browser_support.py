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
STEP_QUANTITIES = ("forget gate", "input gate", "output gate", "candidate", "cell state", "hidden state")


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
def streamlit_process(app_path: Path | str = APP_PATH,
                      timeout_s: float = SERVER_START_TIMEOUT_S) -> Iterator[tuple[str, subprocess.Popen]]:
    """Run `streamlit run app_path` on a free loopback port; yields (base URL, the server's Popen), e.g. for
    a load test to read the server's memory from /proc/<pid>.

    The process is always stopped on exit: terminated, then killed after a grace period.
    """
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(app_path), "--server.port", str(port),
           "--server.address", "127.0.0.1", "--server.headless", "true",
           "--browser.gatherUsageStats", "false"]
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile(mode="w+b") as log:
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
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
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


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


# A per-step quantity is named by a chart text (a layout title or an annotation) such as
# "<b>forget gate f<sub>t</sub></b> · t=3". The app may draw the six quantities as six figures or as one
# figure of six subplots: both are read. Heatmap z arrives as typed arrays (Plotly's bdata): copied to lists.
# The scripts are plain strings, so sync pages here and async ones (tests/load_support.py) share them.
READ_CHARTS_JS = r"""() => {
    const plain = (s) => (s || '').replace(/<[^>]*>/g, '').replace(/\u200b/g, '').trim();
    const toList = (a) => (a == null ? null : Array.from(a, (row) =>
        (row != null && typeof row === 'object' && 'length' in row) ? Array.from(row) : row));
    const plots = document.querySelectorAll('[data-testid=stPlotlyChart] .js-plotly-plot');
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
_READY_JS = r"""(t) => {
    const app = document.querySelector('[data-testid=stApp]');
    if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
    const plots = Array.from(document.querySelectorAll('[data-testid=stPlotlyChart] .js-plotly-plot'));
    const drawn = (p) => p._fullData && p._fullData.length && p.querySelector('.main-svg');
    if (!plots.length || !plots.every(drawn)) return false;
    const words = %s;
    const texts = plots.flatMap((p) => [p.layout?.title?.text || p.layout?.title || '',
                                        ...(p.layout?.annotations || []).map((a) => a.text || '')])
        .map((s) => String(s).replace(/<[^>]*>/g, ''));
    const suffix = t === null ? /· t=\d+$/ : new RegExp('· t=' + t + '$');
    return words.every((w) => texts.some((s) => s.startsWith(w) && suffix.test(s)));
}"""
STEP_READY_JS = _READY_JS % list(STEP_QUANTITIES)  # arg t: the step to wait for, or null for any
STEP_KEYS = dict(zip(STEP_QUANTITIES, ("f", "i", "o", "g", "c", "h"), strict=True))


def wait_for_app(page, t: int | None = None, timeout_ms: int = APP_TIMEOUT_MS) -> None:
    """Wait until the script has finished its run and every Plotly chart is drawn, the six per-step
    quantities among them (at step `t` if given, e.g. after moving the timestep).

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
    """Script state, chart titles, and any exception or alert boxes on the page: for failure messages."""
    state = page.evaluate(
        "document.querySelector('[data-testid=stApp]')?.getAttribute('data-test-script-state') ?? 'no stApp'")
    boxes = page.evaluate("""Array.from(
        document.querySelectorAll('[data-testid=stException], [data-testid=stAlert]'),
        (e) => e.innerText.slice(0, 600))""")
    charts = [[c["title"], *c["annotations"]] for c in read_charts(page)]
    return f"script state {state}; charts {charts}; messages {boxes}"


def read_charts(page) -> list[dict]:
    """Every Plotly chart on the page, in page order: {"title", "annotations" (plain text),
    "heatmaps": [{"name", "z" (nested lists)}], "drawn"}."""
    return page.evaluate(READ_CHARTS_JS)


def step_charts(page) -> dict[str, dict]:
    """The six per-step heatmaps by quantity ("forget gate", …): {"title", "z", "chart" (index)}.

    A quantity's title is a chart's title or one of its annotations, "<quantity> … · t=<t>"; its z is the
    chart's only heatmap, or the heatmap named f, i, o, g, c or h, or else the one in the title's place.
    """
    return charts_by_quantity(read_charts(page))


def charts_by_quantity(charts: list[dict]) -> dict[str, dict]:
    """`step_charts` of charts already read (`read_charts`, or READ_CHARTS_JS evaluated by an async page)."""
    found = {}
    for index, chart in enumerate(charts):
        texts = [chart["title"], *chart["annotations"]]
        titles = [s for s in texts if "· t=" in s]
        for word, key in STEP_KEYS.items():
            title = next((s for s in titles if s.startswith(word)), None)
            if title is None:
                continue
            heatmaps = chart["heatmaps"]
            named = [h for h in heatmaps if h["name"] == key]
            if len(heatmaps) == 1:
                z = heatmaps[0]["z"]
            elif named:
                z = named[0]["z"]
            else:
                place = titles.index(title)
                z = heatmaps[place]["z"] if place < len(heatmaps) else None
            found[word] = {"title": title, "z": z, "chart": index}
    return found


def timestep_slider(page):
    """The timestep slider's focusable thumb (Streamlit 1.67: a hidden <input type=range>)."""
    slider = page.locator("[data-testid=stSlider]").filter(has_text="timestep t")
    return slider.locator("[role=slider], input[type=range]").first
