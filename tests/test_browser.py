"""Layer 4: the app in a real headless Chromium, served by `streamlit run` on a free loopback port.

Checks what AppTest cannot: the time explorer steps in the page (keys, buttons, Play) with the trace's exact
values and no server round trip, a cell click reaches Python's view, settings in the URL reach the page, a
copied link reopens the same view, and the exported explorer steps offline. Screenshots of each run go to
test-artifacts/ (gitignored) for a look when something fails.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from app_support import reference_trace
from browser_support import (
    REPO_ROOT,
    STEP_KEYS,
    browser_marks,
    click_cell,
    explorer_state,
    launch_browser,
    read_charts,
    streamlit_server,
    wait_for_app,
)

from lstm_viz import tasks
from lstm_viz.explorer import to_html
from lstm_viz.pipeline import AppConfig

pytestmark = browser_marks()

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


def assert_step_heatmaps(page, t: int) -> dict[str, np.ndarray]:
    """The explorer shows step t: six numeric heatmaps (batch × units); returns their z by quantity."""
    shown = explorer_state(page)
    assert shown is not None, shown and shown["t"]
    assert shown["t"] == t, shown and shown["t"]
    assert sorted(shown["z"]) == sorted(STEP_KEYS)
    return {name: np.asarray(z, dtype=np.float64) for name, z in shown["z"].items()}


def assert_trace_values(page, trace, t: int, layer: int = 0, direction: int = 0) -> None:
    """The six heatmaps drawn in the page equal lstm_viz's trace at step t, to 1e-6."""
    zs = assert_step_heatmaps(page, t)
    for name in STEP_KEYS:
        np.testing.assert_allclose(zs[name], trace.get(name)[layer, direction, t].numpy(), rtol=0, atol=1e-6,
                                   err_msg=f"{name} at t={t}")


class SentFrames:
    """Websocket frames the page sends to the server (every rerun request is one), counted through CDP."""

    def __init__(self, page):
        self.count = 0
        session = page.context.new_cdp_session(page)
        session.on("Network.webSocketFrameSent", self._sent)
        session.send("Network.enable")

    def _sent(self, _event) -> None:
        self.count += 1


def explorer_t(page) -> int:
    return int(page.evaluate("document.querySelector('[data-testid=lvx]').dataset.t"))


def test_arrow_keys_step_in_the_page_with_the_traces_values_and_no_server_round_trip(server, page):
    sent = SentFrames(page)
    page.goto(server)
    wait_for_app(page, t=0)
    trace = reference_trace(AppConfig())
    assert_trace_values(page, trace, 0)
    page.wait_for_timeout(500)  # let the first run's own messages settle
    before = sent.count
    page.locator("h1").first.click()  # focus on the page body, not a widget
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => document.querySelector('[data-testid=lvx]').dataset.t === '1'", timeout=2000)
    assert_trace_values(page, trace, 1)
    assert sent.count == before, "stepping sent a message to the server"
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowLeft")
    assert_trace_values(page, trace, 2)
    assert sent.count == before
    # Once the user stops, Python learns t (debounced): one report, and the URL follows.
    page.wait_for_function("() => new URLSearchParams(location.search).get('timestep') === '2'", timeout=30_000)
    assert sent.count > before
    page.keyboard.press("End")
    assert_trace_values(page, trace, AppConfig().seq_len - 1)
    page.keyboard.press("Home")
    assert_trace_values(page, trace, 0)
    # the step's label ("t=0") says no more than t: not repeated after it
    assert page.locator("[data-testid=lvx-readout]").inner_text() == f"t = 0 of 0–{AppConfig().seq_len - 1}"
    screenshot(page, "browser-explorer-keys.png")


def test_clicking_a_cell_inspects_that_unit_and_python_follows(server, page):
    page.goto(server)
    wait_for_app(page, t=0)
    trace = reference_trace(AppConfig())
    page.locator("h1").first.click()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowRight")
    page.locator("[data-testid=lvx-step]").scroll_into_view_if_needed()
    click_cell(page, "c", unit=3, batch=1)
    shown = explorer_state(page)
    assert (shown["t"], shown["unit"], shown["batch"]) == (2, 3, 1)
    # The page reports the choice; Python stores it (the sidebar and the URL follow) and sends the unit's terms.
    page.wait_for_function("() => new URLSearchParams(location.search).get('unit') === '3'", timeout=30_000)
    wait_for_app(page, t=2)
    assert page.locator("[data-testid=stSidebar]").get_by_label("unit", exact=True).input_value() == "3"
    equations = page.locator("[data-testid=lvx-equations]")
    f = trace.f[0, 0, 2, 1, 3].item()
    page.wait_for_function("() => !document.querySelector('[data-testid=lvx-equations]')"
                           ".innerText.includes('arrives for the unit')", timeout=30_000)
    assert f"{f:.4f}".replace("-", "−") in equations.locator("[data-eq=f]").inner_text()
    # The typeset equation panel (Python) shows the same unit, batch element and step.
    page.get_by_text("Equations at t = 2, typeset").click()
    panel = page.get_by_text("unit 3, batch element 1")
    panel.wait_for()
    assert page.locator("[data-testid=stMarkdownContainer] .katex").count() >= 6
    screenshot(page, "browser-explorer-cell-click.png")


def test_stepping_past_the_window_in_hand_brings_the_next_one(server, page):
    config = AppConfig(seq_len=300, hidden_size=512, batch_size=8)  # ~98 kB a step: 85-step windows of 8 MB
    page.goto(f"{server}/?seq_len=300&hidden_size=512&batch_size=8")
    wait_for_app(page, t=0)
    page.locator("h1").first.click()
    page.keyboard.press("End")  # beyond the window: the page asks Python for the one holding t=299, then goes
    page.wait_for_function("() => document.querySelector('[data-testid=lvx]').dataset.t === '299'",
                           timeout=60_000)
    trace = reference_trace(config)
    assert_trace_values(page, trace, 299)
    # Every report the page sent on the way (the window request, then the pause) said 299, not the edge it
    # waited at: once Python has them all, the page is still at 299.
    page.wait_for_function("() => new URLSearchParams(location.search).get('timestep') === '299'", timeout=30_000)
    wait_for_app(page, t=299)
    page.wait_for_timeout(1000)
    assert_trace_values(page, trace, 299)
    page.keyboard.press("ArrowLeft")
    assert_trace_values(page, trace, 298)  # within the new window: no wait


def test_play_advances_and_pause_stops(server, page):
    page.goto(f"{server}/?seq_len=60")
    wait_for_app(page, t=0)
    page.get_by_role("combobox", name="play speed").select_option("16")
    page.get_by_role("button", name="Play").click()
    seen, deadline = set(), time.monotonic() + 20
    while len(seen) < 4 and time.monotonic() < deadline:
        seen.add(explorer_t(page))
        page.wait_for_timeout(50)
    page.get_by_role("button", name="Pause").click()
    assert len(seen) >= 4, f"playback showed only the steps {sorted(seen)} in 20 s"
    stopped = explorer_t(page)
    page.wait_for_timeout(800)
    assert explorer_t(page) == stopped, "still stepping after Pause"
    page.wait_for_function(f"() => new URLSearchParams(location.search).get('timestep') === '{stopped}'",
                           timeout=30_000)  # Python learns where playback stopped


def test_url_settings_reach_the_figures(server, page):
    page.goto(f"{server}/?hidden_size=5&seq_len=7&timestep=3")
    wait_for_app(page, t=3)
    zs = assert_step_heatmaps(page, 3)
    for name, z in zs.items():
        assert z.shape == (2, 5), f"{name}: {z.shape}, want the default 2 batch rows × 5 units"
    assert page.locator("[data-testid=lvx] input[type=range]").get_attribute("max") == "6"  # steps 0..6
    screenshot(page, "browser-url-settings.png")


# Colour-scale names plotly.js itself resolves; others (plotly.py's "RdBu_r", "Plasma", …) exist only in
# plotly.py, which turns them into explicit lists when it validates a figure.
PLOTLY_JS_SCALES = {"Blackbody", "Bluered", "Blues", "Cividis", "Earth", "Electric", "Greens", "Greys", "Hot",
                    "Jet", "Picnic", "Portland", "Rainbow", "RdBu", "Reds", "Viridis", "YlGnBu", "YlOrRd"}


def test_colour_scales_are_known_to_plotly_js(server, page):
    page.goto(server)
    wait_for_app(page, t=0)
    sent = page.evaluate("""() => Array.from(document.querySelectorAll('.js-plotly-plot'), (p) => [
            ...Object.entries(p.layout || {}).filter(([k]) => k.startsWith('coloraxis'))
                .map(([k, v]) => [k, v.colorscale]),
            ...(p.data || []).map((t, i) => ['trace ' + i, t.colorscale])])""")
    assert len(sent) == 2  # the explorer's step and over-time figures
    unknown = [(chart, where, scale) for chart, scales in enumerate(sent) for where, scale in scales
               if isinstance(scale, str) and scale not in PLOTLY_JS_SCALES]
    assert not unknown, f"(chart, axis or trace, colorscale) that plotly.js does not know: {unknown}"


def test_train_a_toy_task_then_see_target_and_prediction(server, page):
    page.goto(f"{server}/?model_source=toy+task&task=memory")
    wait_for_app(page, t=0)
    untrained = assert_step_heatmaps(page, 0)
    over_time = "() => document.querySelector('[data-testid=lvx-time]').data.map((t) => t.name)"
    assert "target" in page.evaluate(over_time)
    assert "prediction" not in page.evaluate(over_time)
    page.get_by_role("button", name="Train").click()
    page.get_by_text("Trained in").wait_for(timeout=120_000)
    wait_for_app(page, t=0)
    page.wait_for_function(f"() => ({over_time})().includes('prediction')", timeout=60_000)
    trained = assert_step_heatmaps(page, 0)
    assert not np.array_equal(trained["f"], untrained["f"])  # training changed the gates
    lines = page.evaluate("""() => Object.fromEntries(document.querySelector('[data-testid=lvx-time]').data
        .filter((t) => t.name === 'target' || t.name === 'prediction').map((t) => [t.name, Array.from(t.y)]))""")
    _, target = tasks.example_with_target("memory", seed=0)
    assert lines["target"][-1] == pytest.approx(float(target[-1, 0]), abs=1e-6)  # the value to recall, at the end
    assert np.isnan(lines["target"][:-1]).all()  # no target before the last step: gaps in the line
    assert len(lines["prediction"]) == 25
    assert np.isfinite(lines["prediction"]).all()
    page.locator("h1").first.click()
    page.keyboard.press("End")
    assert_step_heatmaps(page, 24)
    assert page.locator("[data-testid=lvx-readout]").inner_text() == "t = 24 of 0–24 · “recall”"  # says more
    page.locator("[data-testid=lvx-time]").scroll_into_view_if_needed()
    screenshot(page, "browser-trained-memory.png")


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
    after = assert_step_heatmaps(page, 0)
    for name in STEP_KEYS:  # the last good view, untouched
        np.testing.assert_array_equal(after[name], before[name])
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
    page.get_by_text("layer 1 · forward").first.wait_for()
    choose(page, "direction", "reverse")
    page.get_by_text("layer 1 · reverse").first.wait_for()
    page.locator("h1").first.click()
    for _ in range(5):  # the reverse direction reads t+1 before t: "previous" (←) moves t up
        page.keyboard.press("ArrowLeft")
    assert explorer_t(page) == 5
    settled(page, "timestep=5")
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
        assert explorer_state(again) == explorer_state(page)
        assert "layer 1 · reverse" in " ".join(c["title"] for c in read_charts(again))
    finally:
        fresh.close()


def test_the_exported_explorer_steps_offline_from_a_file(browser_context, tmp_path):
    trace = reference_trace(AppConfig(num_layers=2, bidirectional=True))
    path = tmp_path / "explorer <b>.html"
    to_html(trace, path, t=2, layer=1, direction=0, unit=1, labels=[f"<img src=x onerror=alert({k})>"
                                                                     for k in range(trace.seq_len)],
            title="<script>alert('title')</script>")
    context = browser_context.browser.new_context(viewport=VIEWPORT)
    requests, dialogs = [], []
    context.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                  else (requests.append(route.request.url), route.abort()))
    try:
        page = context.new_page()
        page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
        page.goto(path.as_uri())
        page.wait_for_selector("[data-testid=lvx-step] .main-svg", timeout=30_000)
        assert_trace_values(page, trace, 2, layer=1)
        page.keyboard.press("ArrowRight")
        assert_trace_values(page, trace, 3, layer=1)
        page.get_by_role("button", name="Prev").click()
        assert_trace_values(page, trace, 2, layer=1)
        assert page.title() == "<script>alert('title')</script>"  # shown as text, never run
        assert "<img src=x" in page.locator("[data-testid=lvx-readout]").inner_text()
        assert not dialogs, (dialogs, requests)
        assert not requests, (dialogs, requests)
        screenshot(page, "browser-explorer-offline.png")
    finally:
        context.close()


# --- markup from strangers ----------------------------------------------------------------------

MARKUP = ("[sign in again](https://evil.example/login) ![logo](https://evil.example/x.png) "
          "<img src=x onerror=alert(1)> www.evil.example admin@evil.example")
FILE_MARKUP = "[sign in](evil.example) <img src=x onerror=alert(1)> www.evil.example admin@evil.example"  # no '/'
FOREIGN_JS = r"""(marker) => ({
    links: Array.from(document.querySelectorAll('a')).filter(
        (a) => /evil|ev\.il/.test(a.getAttribute('href') || '') || /evil|ev\.il|sign in/.test(a.textContent)).length,
    images: Array.from(document.querySelectorAll('img')).filter(
        (i) => /evil|^x$/.test(i.getAttribute('src') || '')).length,
    shown: document.body.innerText.replace(/\u2060/g, '').includes(marker),
})"""


def assert_plain_text(page, marker: str) -> None:
    """`marker` (a piece of the foreign string) is on the page as text, and nothing of it became a link or an
    image."""
    page.wait_for_function(f"(m) => ({FOREIGN_JS})(m).shown", arg=marker, timeout=60_000)
    found = page.evaluate(FOREIGN_JS, marker)
    assert found == {"links": 0, "images": 0, "shown": True}, found


def test_markup_from_urls_files_weights_and_typed_text_shows_as_plain_text(server, page, tmp_path):
    from urllib.parse import quote

    import torch

    from lstm_viz import list_lstms

    # A URL value: the name of the weights a link was made with, shown in a warning.
    page.goto(f"{server}/?model_source=uploaded%20weights&weights={quote(MARKUP)}")
    assert_plain_text(page, "[sign in again](https://evil.example/login) ![logo](https://evil.example/x.png)")
    assert_plain_text(page, "<img src=x onerror=alert(1)> www.evil.example admin@evil.example")
    screenshot(page, "browser-markup-url.png")
    # A weights key: two LSTMs, one under a prefix made of markup, named in the caption and the chooser.
    state = {f"{MARKUP}.{k}": v for k, v in torch.nn.LSTM(4, 3).state_dict().items()}
    state |= {f"b.{k}": v for k, v in torch.nn.LSTM(4, 5).state_dict().items()}
    weights = tmp_path / "model.pt"
    torch.save(state, weights)
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(weights)
    location = next(where for where in list_lstms(weights) if where != "b.")  # '/' is written ~1 in a location
    assert MARKUP.replace("/", "~1") in location
    assert_plain_text(page, f"Loaded model.pt at {location}:")
    screenshot(page, "browser-markup-weights.png")
    # A typed token, quoted in the error (tokens are split at spaces and clipped to 20 characters).
    page.goto(f"{server}/?input_source=typed&typed_text={quote('[a](https://ev.il/x), 1')}")
    assert_plain_text(page, '"[a](https://ev.il/x)" is not a number')
    # A file name, quoted in the input's caption.
    page.goto(f"{server}/?input_source=file")
    page.get_by_text("no file yet").first.wait_for()
    upload = tmp_path / f"{FILE_MARKUP}.csv"
    upload.write_bytes(b"1,2\n3,4\n5,6\n")
    page.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(upload)
    assert_plain_text(page, f"{FILE_MARKUP}.csv: CSV")
    screenshot(page, "browser-markup-file.png")
