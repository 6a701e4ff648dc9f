"""Layer 4: the app in a real headless Chromium, served by `streamlit run` on a free loopback port.

Checks what AppTest cannot: that the page renders the six per-step heatmaps, that stepping through time
redraws them with new data, and that settings in the URL reach the figures. Screenshots of each run go
to test-artifacts/ (gitignored) for a look when something fails. Two checks cover what only a browser shows:
playback that keeps going, and colour scales that plotly.js itself knows.
"""

from __future__ import annotations

import time

import pytest
from browser_support import (
    REPO_ROOT,
    STEP_QUANTITIES,
    find_chromium,
    have_playwright,
    launch_browser,
    read_charts,
    step_charts,
    streamlit_server,
    timestep_slider,
    wait_for_app,
)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not have_playwright(), reason="the playwright Python package is not installed"),
    pytest.mark.skipif(find_chromium() is None, reason="no chromium at /usr/bin/chromium or on PATH"),
]

ARTIFACTS = REPO_ROOT / "test-artifacts"
VIEWPORT = {"width": 1400, "height": 1800}


@pytest.fixture(scope="module")
def server():
    """Base URL of one `streamlit run app.py` for the whole module (torch imports once)."""
    with streamlit_server() as url:
        yield url


@pytest.fixture(scope="module")
def browser_context():
    """One Chromium and one context for the module (the app's static files load once); a page per test,
    and each page is its own Streamlit session."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = launch_browser(pw)
        try:
            yield chromium.new_context(viewport=VIEWPORT)
        finally:
            chromium.close()


@pytest.fixture
def page(browser_context):
    page = browser_context.new_page()
    try:
        yield page
    finally:
        page.close()


def screenshot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))


def assert_step_heatmaps(page, t: int) -> dict[str, list[list[float]]]:
    """The six quantities are drawn for step t, each a non-empty numeric heatmap; returns their z."""
    charts = step_charts(page)
    assert sorted(charts) == sorted(STEP_QUANTITIES), [c for c in charts]
    zs = {}
    for name, chart in charts.items():
        assert chart["title"].endswith(f"· t={t}"), chart["title"]
        z = chart["z"]
        assert z and all(row and len(row) == len(z[0]) for row in z), (name, z)
        assert all(isinstance(v, (int, float)) for row in z for v in row), (name, z)
        zs[name] = z
    return zs


def test_six_quantities_and_stepping_through_time(server, page):
    page.goto(server)
    wait_for_app(page)
    before = assert_step_heatmaps(page, 0)

    page.get_by_role("button", name="Next").click()
    wait_for_app(page, t=1)
    after = assert_step_heatmaps(page, 1)
    for name in STEP_QUANTITIES:
        assert after[name] != before[name], f"{name}: same data at t=0 and t=1"

    thumb = timestep_slider(page)
    thumb.focus()
    thumb.press("ArrowRight")
    wait_for_app(page, t=2)
    third = assert_step_heatmaps(page, 2)
    assert third["hidden state"] != after["hidden state"]
    page.wait_for_function("() => new URLSearchParams(location.search).get('timestep') === '2'")
    screenshot(page, "browser-step-t2.png")


def test_url_settings_reach_the_figures(server, page):
    page.goto(f"{server}/?hidden_size=5&seq_len=7&timestep=3")
    wait_for_app(page, t=3)
    zs = assert_step_heatmaps(page, 3)
    for name, z in zs.items():
        assert len(z) == 2, f"{name}: {len(z)} batch rows, want the default 2"
        assert {len(row) for row in z} == {5}, f"{name}: rows of {[len(r) for r in z]} units, want 5"
    assert timestep_slider(page).get_attribute("max") == "6"  # seq_len 7: steps 0..6
    screenshot(page, "browser-url-settings.png")


@pytest.fixture(scope="module")
def default_page(server, browser_context):
    """One loaded default view, shared by the checks below that only read it (or, last, play it)."""
    page = browser_context.new_page()
    page.goto(server)
    wait_for_app(page)
    try:
        yield page
    finally:
        page.close()


# Colour-scale names plotly.js itself resolves; others (plotly.py's "RdBu_r", "Plasma", …) exist only in
# plotly.py, which turns them into explicit lists when it validates a figure.
PLOTLY_JS_SCALES = {"Blackbody", "Bluered", "Blues", "Cividis", "Earth", "Electric", "Greens", "Greys", "Hot",
                    "Jet", "Picnic", "Portland", "Rainbow", "RdBu", "Reds", "Viridis", "YlGnBu", "YlOrRd"}


def test_colour_scales_are_known_to_plotly_js(default_page):
    sent = default_page.evaluate("""() => Array.from(
        document.querySelectorAll('[data-testid=stPlotlyChart] .js-plotly-plot'), (p) => [
            ...Object.entries(p.layout || {}).filter(([k]) => k.startsWith('coloraxis'))
                .map(([k, v]) => [k, v.colorscale]),
            ...(p.data || []).map((t, i) => ['trace ' + i, t.colorscale])])""")
    unknown = [(chart, where, scale) for chart, scales in enumerate(sent) for where, scale in scales
               if isinstance(scale, str) and scale not in PLOTLY_JS_SCALES]
    assert not unknown, f"(chart, axis or trace, colorscale) that plotly.js does not know: {unknown}"


FORGET_TITLE_JS = """() => {
    const plot = document.querySelector('[data-testid=stPlotlyChart] .js-plotly-plot');
    const notes = plot && plot.layout && plot.layout.annotations;
    return notes && notes.length ? String(notes[0].text) : null;
}"""


def test_play_advances_on_its_own(default_page):
    page = default_page
    start = int(step_charts(page)["forget gate"]["title"].rsplit("t=", 1)[1])
    page.get_by_role("button", name="Play").click()
    seen = {start}
    try:  # the click itself moves one step; any further step comes only from the fragment's timer (0.6 s)
        deadline = time.monotonic() + 30
        while len(seen) < 3 and time.monotonic() < deadline:
            title = page.evaluate(FORGET_TITLE_JS)
            if title and "t=" in title:
                seen.add(int(title.rsplit("t=", 1)[1]))
            page.wait_for_timeout(100)
    finally:
        page.get_by_role("button", name="Pause").click()
    assert len(seen) >= 3, f"playback showed only the steps {sorted(seen)} in 30 s"


def test_train_a_toy_task_then_step_through_its_trace(server, page):
    page.goto(f"{server}/?model_source=toy+task&task=memory")
    wait_for_app(page, t=0)
    untrained = assert_step_heatmaps(page, 0)
    page.get_by_role("button", name="Train").click()
    page.get_by_text("Trained in").wait_for(timeout=120_000)
    wait_for_app(page, t=0)
    trained = assert_step_heatmaps(page, 0)
    assert trained["forget gate"] != untrained["forget gate"]  # training changed the gates
    page.get_by_role("button", name="Next").click()
    wait_for_app(page, t=1)
    assert_step_heatmaps(page, 1)
    screenshot(page, "browser-trained-memory-t1.png")


def test_an_oversized_upload_is_refused_and_the_view_stays(server, page, tmp_path):
    page.goto(server)
    wait_for_app(page, t=0)
    before = assert_step_heatmaps(page, 0)
    page.get_by_test_id("stSelectbox").filter(has_text="input source").click()
    page.get_by_role("option", name="file", exact=True).click()
    page.get_by_text("no file yet").wait_for()
    too_big = tmp_path / "big.csv"
    too_big.write_bytes(b"0\n" * (26 * 2**20))  # 52 MiB of one-column CSV: over maxUploadSize (50 MB)
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(too_big)
    page.get_by_text("File must be 50.0MB or smaller").wait_for()
    wait_for_app(page, t=0)
    assert assert_step_heatmaps(page, 0) == before  # the last good view, untouched
    assert page.get_by_text("no file yet").count() == 1  # the app never received the file
    screenshot(page, "browser-oversized-upload.png")


READ_LINES_JS = r"""() => Array.from(document.querySelectorAll('[data-testid=stPlotlyChart] .js-plotly-plot'), (p) => ({
    title: (p.layout?.title?.text || '').replace(/<[^>]*>/g, ''),
    traces: (p._fullData || []).map((t) => ({name: t.name, x: Array.from(t.x || []), y: Array.from(t.y || [])})),
}))"""
CHART_TITLED_JS = r"""(prefix) => {
    const app = document.querySelector('[data-testid=stApp]');
    if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return false;
    return Array.from(document.querySelectorAll('[data-testid=stPlotlyChart] .js-plotly-plot')).some(
        (p) => p._fullData && p.querySelector('.main-svg')
            && (p.layout?.title?.text || '').replace(/<[^>]*>/g, '').startsWith(prefix));
}"""


def choose(page, label: str, option: str) -> None:
    """Pick `option` in the Streamlit selectbox labelled `label`."""
    page.get_by_role("combobox", name=label, exact=True).click()  # Streamlit 1.67: a react-aria combobox
    page.get_by_role("option", name=option, exact=True).click()


def type_number(page, label: str, value: int) -> None:
    field = page.locator("[data-testid=stSidebar]").get_by_label(label, exact=True)
    field.fill(str(value))
    field.press("Enter")


def settled(page, url_has: str) -> None:
    """Wait until the URL says `url_has` (key=value) and the run that wrote it has finished."""
    key, value = url_has.split("=")
    page.wait_for_function(f"() => new URLSearchParams(location.search).get('{key}') === '{value}'")
    page.wait_for_function("() => document.querySelector('[data-testid=stApp]')"
                           "?.getAttribute('data-test-script-state') === 'notRunning'")


def test_a_copied_link_reopens_the_same_view(server, browser_context, page):
    page.goto(f"{server}/?input_source=signal&signal_kind=square&seed=7&dtype=float64&num_layers=2"
              "&bidirectional=true&batch_size=3")
    wait_for_app(page, t=0)
    choose(page, "layer", "1")
    page.get_by_text("over time · layer 1 · forward").wait_for()
    choose(page, "direction", "reverse")
    page.get_by_text("over time · layer 1 · reverse").wait_for()
    thumb = timestep_slider(page)
    for t in range(1, 6):
        thumb.focus()
        thumb.press("ArrowRight")
        wait_for_app(page, t=t)
    type_number(page, "unit", 3)
    settled(page, "unit=3")
    type_number(page, "batch element", 1)
    settled(page, "batch_index=1")
    page.get_by_role("tab", name="Unit drill-down").click()
    settled(page, "tab=unit")
    page.wait_for_function(CHART_TITLED_JS, arg="unit 3 over time · batch 1", timeout=60_000)
    shown = page.evaluate(READ_LINES_JS)
    link = page.url
    screenshot(page, "browser-link-before.png")

    fresh = browser_context.browser.new_context(viewport=VIEWPORT)  # no session, cookies or state shared
    try:
        again = fresh.new_page()
        again.goto(link)
        again.wait_for_function(CHART_TITLED_JS, arg="unit 3 over time · batch 1", timeout=60_000)
        assert again.get_by_role("tab", selected=True).inner_text().strip() == "Unit drill-down"
        reopened = again.evaluate(READ_LINES_JS)
        assert reopened == shown  # the same lines, every value (float64 signal, seed 7, layer/direction panels)
        screenshot(again, "browser-link-after.png")
        for each in (page, again):  # and the step view is at the same place: t=5, layer 1, reverse
            each.get_by_role("tab", name="Step through time").click()
            wait_for_app(each, t=5)
        assert step_charts(again) == step_charts(page)
        assert "layer 1 · reverse" in " ".join(c["title"] for c in read_charts(again))
    finally:
        fresh.close()
