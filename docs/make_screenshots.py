"""Write the README's screenshots by driving the app in headless Chromium:   python3 docs/make_screenshots.py

docs/screenshot-default.png  the default view at 1440 px: the sidebar, and the "Step through time" tab's time
                             explorer (controls, the six step heatmaps, the live cell diagram) at t = 3,
                             reached with the → key
docs/screenshot-trained.png  the "remember the first value" toy task trained in the app, at the last step (End):
                             the explorer's over-time figure (input, gates, c, h, then the task's target and the
                             trained model's prediction); the loss curve too when it sits right above
docs/screenshot-cell.png     the live cell diagram and its equations after clicking a cell of the c heatmap
                             (unit 3, batch element 1): the unit's own terms, sent by Python
docs/screenshot-phone.png    the default view at 390 px from the tabs down: the explorer in its phone layout
                             (step heatmaps two to a row, the cell diagram below them)
docs/screenshot-shapes.png   after the "nn.LSTM(10, 20, 2) on randn(5, 3, 10)" preset: the Shapes tab,
                             with the preset's explanation and the shape tables
docs/screens/{default,lesson,trained}-{1440,1100,390}.png
                             what a screen of that width shows, from the top of the page (the sidebar collapses
                             below 640 px): the default view; the guided lesson at its "memory-trained" step with
                             the answer revealed; the memory toy task trained, scrolled to "Watch the gates learn"
Needs the playwright Python package and a system Chromium (see tests/browser_support.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent / "tests"))

from browser_support import (  # noqa: E402
    click_cell,
    explorer_state,
    launch_browser,
    streamlit_server,
    wait_for_app,
)

WIDTH = 1440
PHONE_WIDTH = 390
PRESET_BUTTON = "Preset: nn.LSTM(10, 20, 2) on randn(5, 3, 10)"
LOSS_GAP_PX = 120  # the trained view takes in the loss curve only when it is at most this far above the figure
UNIT_TERMS_PENDING = "arrives for the unit"  # the equations' note until Python has sent the unit's terms


def union_box(boxes: list[dict], pad: int = 16, width: int = WIDTH) -> dict:
    """The rectangle around `boxes` (Playwright bounding boxes), padded, clamped to the page width."""
    x0 = max(0, min(b["x"] for b in boxes) - pad)
    y0 = max(0, min(b["y"] for b in boxes) - pad)
    x1 = min(width, max(b["x"] + b["width"] for b in boxes) + pad)
    y1 = max(b["y"] + b["height"] for b in boxes) + pad
    return {"x": x0, "y": y0, "width": x1 - x0, "height": y1 - y0}


def hide_toolbar(page) -> None:
    """Streamlit's header (Deploy button, menu) is not part of the app: keep it out of the pictures."""
    page.add_style_tag(content="[data-testid=stHeader] { display: none !important; }")


def box(page, selector: str) -> dict:
    """The bounding box of the first element matching `selector` (it must be laid out)."""
    found = page.locator(selector).first.bounding_box()
    if found is None:
        raise AssertionError(f"{selector} is not laid out")
    return found


def settle(page, ms: int = 600) -> None:
    """Let Plotly finish its redraws and transitions before a picture is taken."""
    page.wait_for_timeout(ms)


def step_right(page, steps: int) -> None:
    """Step the explorer forward with the → key (the page, not a widget, has the focus)."""
    page.locator("[data-testid=stMain] h1").first.click()
    for _ in range(steps):
        page.keyboard.press("ArrowRight")
    wait_for_app(page, t=steps)


def explorer_middle_bottom(page, pad: int = 12) -> float:
    """Just below the explorer's step heatmaps and cell diagram, above the over-time figure's title."""
    parts = [box(page, "[data-testid=lvx-step]"), box(page, "[data-testid=lvx-cell]")]
    bottom = max(b["y"] + b["height"] for b in parts) + pad
    return min(bottom, box(page, "[data-testid=lvx-time]")["y"] + 6)


def open_default(page, url: str) -> None:
    page.goto(url)
    wait_for_app(page, t=0)
    hide_toolbar(page)


def default_view(page, url: str, path: Path) -> None:
    """The sidebar and the main column from the title down to the explorer's step heatmaps and cell diagram."""
    open_default(page, url)
    step_right(page, 3)
    settle(page)
    headings = ("[data-testid=stSidebarUserContent] h2", "[data-testid=stMain] h1")
    top = max(0, min(box(page, sel)["y"] for sel in headings) - 24)
    bottom = explorer_middle_bottom(page)
    page.screenshot(path=str(path), clip={"x": 0, "y": top, "width": WIDTH, "height": bottom - top})


def cell_view(page, url: str, path: Path) -> None:
    """The live cell diagram and equations for one unit, chosen by clicking its cell in the c heatmap."""
    open_default(page, url)
    step_right(page, 3)
    page.locator("[data-testid=lvx-step]").scroll_into_view_if_needed()
    click_cell(page, "c", unit=3, batch=1)
    shown = explorer_state(page)
    if (shown["t"], shown["unit"], shown["batch"]) != (3, 3, 1):
        raise AssertionError(f"clicking c[batch 1, unit 3] at t=3 selected {shown}")
    page.wait_for_function("() => new URLSearchParams(location.search).get('unit') === '3'", timeout=30_000)
    wait_for_app(page, t=3)
    page.wait_for_function(
        "(pending) => !document.querySelector('[data-testid=lvx-equations]').innerText.includes(pending)",
        arg=UNIT_TERMS_PENDING, timeout=30_000)
    settle(page)
    cell = page.locator("[data-testid=lvx-cell]").first
    cell.scroll_into_view_if_needed()
    page.screenshot(path=str(path), clip=union_box([cell.bounding_box()], pad=12))


def phone_view(page, url: str, path: Path) -> None:
    """The explorer at phone width: controls, two-column step heatmaps, the cell diagram below them."""
    open_default(page, url)
    step_right(page, 3)
    settle(page)
    top = box(page, "[data-testid=stTabs]")["y"] - 12
    bottom = explorer_middle_bottom(page)
    page.screenshot(path=str(path), clip={"x": 0, "y": top, "width": PHONE_WIDTH, "height": bottom - top})


def shapes_view(page, url: str, path: Path) -> None:
    """The Shapes tab after the classic preset: the explanation box and the shape tables."""
    open_default(page, url)
    page.get_by_role("button", name=PRESET_BUTTON).click()
    page.wait_for_function(
        "() => document.querySelector('.st-key-hidden_size input')?.value === '20'", timeout=60_000)
    wait_for_app(page)
    page.get_by_role("tab", name="Shapes").click()
    panel = page.locator("[data-testid=stTabPanel]:visible")
    explanation = panel.locator("[data-testid=stAlert]").filter(has_text="nn.LSTM(10, 20, 2)")
    explanation.wait_for(state="visible", timeout=60_000)
    tables = panel.locator("table:visible")  # st.table or Markdown tables (not those in a closed expander)
    tables.last.wait_for(state="visible", timeout=60_000)
    tabs = page.locator("[data-testid=stTabs]").first
    boxes = [tabs.bounding_box(), explanation.bounding_box()] + [
        tables.nth(i).bounding_box() for i in range(tables.count())]
    page.screenshot(path=str(path), clip=union_box(boxes))


def warn_if_task_row_empty(page) -> None:
    """Say so (the picture is still taken) when the over-time figure's target or prediction has no value to draw."""
    finite = page.evaluate("""() => Object.fromEntries(
        document.querySelector('[data-testid=lvx-time]').data
            .filter((trace) => trace.name === 'target' || trace.name === 'prediction')
            .map((trace) => [trace.name, Array.from(trace.y).filter(Number.isFinite).length]))""")
    empty = [name for name in ("target", "prediction") if not finite.get(name)]
    if empty:
        print(f"warning: screenshot-trained.png: the over-time figure draws no {' and no '.join(empty)} "
              f"(finite values per trace: {finite})", file=sys.stderr)


def trained_view(page, url: str, path: Path) -> None:
    """The memory toy task after training, at its last step: the explorer's over-time figure down to its target
    and prediction row (and the loss curve, should it ever sit right above the figure)."""
    page.goto(f"{url}/?model_source=toy+task&task=memory")
    wait_for_app(page)
    hide_toolbar(page)
    page.get_by_role("button", name="Train").click()
    page.get_by_text("Trained in").wait_for(timeout=120_000)
    wait_for_app(page)
    page.locator("[data-testid=stMain] h1").first.click()
    page.keyboard.press("End")
    page.wait_for_function(
        "() => { const r = document.querySelector('[data-testid=lvx]');"
        " const s = r && r.querySelector('.lvx-slider'); return s && r.dataset.t === s.max; }", timeout=30_000)
    wait_for_app(page)
    settle(page, 1000)
    warn_if_task_row_empty(page)
    over_time = box(page, "[data-testid=lvx-time]")
    parts = [over_time]
    loss = page.locator("[data-testid=stPlotlyChart]").filter(has_text="training loss")
    if loss.count():  # the loss curve when it sits right above (the step heatmaps come between them today)
        loss_box = loss.first.bounding_box()
        if loss_box and 0 <= over_time["y"] - (loss_box["y"] + loss_box["height"]) < LOSS_GAP_PX:
            parts.append(loss_box)
    clip = union_box(parts, pad=12)
    top = min(b["y"] for b in parts)  # not above: the cell's equations end just over the figure's own margin
    clip["height"] -= top - clip["y"]
    clip["y"] = top
    page.screenshot(path=str(path), clip=clip)


SCREEN_WIDTHS = {1440: 900, 1100: 800, 390: 844}  # width -> a screen's height at that width (a phone's: 844)
SCREENS = DOCS / "screens"


def wait_until_trained(page) -> None:
    """Training runs in the background: wait until the page shows the trained model and its panel."""
    page.get_by_text("Watch the gates learn").wait_for(timeout=180_000)
    wait_for_app(page)


def screen_default(page, url: str) -> None:
    open_default(page, url)


def screen_lesson(page, url: str) -> None:
    """The lesson's trained-memory step after the class has predicted: the answer shown, the unit's lines outlined."""
    page.goto(f"{url}/?lesson=memory-trained")  # opens the Unit drill-down tab: no explorer to wait for
    page.get_by_text("cell state c follows").first.wait_for(timeout=180_000)  # trained: its best unit is open
    hide_toolbar(page)
    page.get_by_role("button", name="Reveal the answer").click()
    page.get_by_text("Training learnt to hold the gate open").first.wait_for(timeout=60_000)
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", timeout=60_000)
    page.wait_for_function(  # the sidebar redrawn with the step's settings (a phone's is collapsed: no inputs)
        "() => { const inputs = [...document.querySelectorAll('[data-testid=stSidebar] input')];"
        " return !inputs.length || inputs.some((e) => e.value === 'toy task'); }", timeout=60_000)


def screen_trained(page, url: str) -> None:
    """The memory task trained here, scrolled to the training-step slider and the unit through training."""
    page.goto(f"{url}/?model_source=toy+task&task=memory")
    wait_for_app(page)
    hide_toolbar(page)
    page.get_by_role("button", name="Train").click()
    wait_until_trained(page)
    page.get_by_role("button", name="in the explorer").click()  # "Open unit N in the explorer": the best tracker
    page.get_by_text("Watch the gates learn").wait_for()
    wait_for_app(page)
    page.get_by_text("Watch the gates learn").scroll_into_view_if_needed()
    page.evaluate("document.querySelector('[data-testid=stMain]').scrollBy(0, -24)")


def screens(browser, url: str) -> None:
    """docs/screens/<view>-<width>.png: each view as a screen of that width shows it."""
    SCREENS.mkdir(exist_ok=True)
    for view, open_view in (("default", screen_default), ("lesson", screen_lesson), ("trained", screen_trained)):
        for width, height in SCREEN_WIDTHS.items():
            page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
            open_view(page, url)
            settle(page, 1000)
            path = SCREENS / f"{view}-{width}.png"
            page.screenshot(path=str(path))
            page.close()
            print(path)


def main() -> None:
    from playwright.sync_api import sync_playwright

    shots = (  # name, how, viewport width and height (tall: Streamlit scrolls inside its own container), scale
        ("screenshot-default.png", default_view, WIDTH, 2400, 1),
        ("screenshot-cell.png", cell_view, WIDTH, 2400, 2),  # a close-up: the diagram's labels are small
        ("screenshot-phone.png", phone_view, PHONE_WIDTH, 4000, 2),  # a phone's screen is dense
        ("screenshot-shapes.png", shapes_view, WIDTH, 3000, 1),
        ("screenshot-trained.png", trained_view, WIDTH, 4000, 1),
    )
    with streamlit_server() as url, sync_playwright() as pw:
        browser = launch_browser(pw)
        try:
            screens(browser, url)
            for name, shoot, width, height, scale in shots:
                page = browser.new_page(viewport={"width": width, "height": height}, device_scale_factor=scale)
                shoot(page, url, DOCS / name)
                page.close()
                print(DOCS / name)
        finally:
            browser.close()


if __name__ == "__main__":
    main()
