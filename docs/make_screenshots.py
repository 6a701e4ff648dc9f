"""Write the README's screenshots by driving the app in headless Chromium:   python docs/make_screenshots.py

docs/screenshot-default.png  the default view: configuration, step controls and the six per-step heatmaps
docs/screenshot-shapes.png   after the "nn.LSTM(10, 20, 2) on randn(5, 3, 10)" preset: the Shapes tab,
                             with the preset's explanation and the shape tables
docs/screenshot-trained.png  the "remember the first value" toy task trained in the app: loss curve, gates
                             over time (forget gates that hold)
Needs the playwright Python package and a system Chromium (see tests/browser_support.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent / "tests"))

from browser_support import (  # noqa: E402
    launch_browser,
    step_charts,
    streamlit_server,
    wait_for_app,
)

WIDTH = 1400
PRESET_BUTTON = "Preset: nn.LSTM(10, 20, 2) on randn(5, 3, 10)"


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


def default_view(page, url: str, path: Path) -> None:
    """The sidebar and the main column from the title down to the last of the six per-step heatmaps."""
    page.goto(url)
    wait_for_app(page)
    hide_toolbar(page)
    charts = page.locator("[data-testid=stPlotlyChart]")
    step_boxes = [charts.nth(i).bounding_box() for i in {q["chart"] for q in step_charts(page).values()}]
    headings = ("[data-testid=stSidebarUserContent] h2", "[data-testid=stMain] h1")
    tops = [page.locator(sel).first.bounding_box()["y"] for sel in headings]
    top = max(0, min(tops) - 24)
    bottom = max(b["y"] + b["height"] for b in step_boxes) + 16
    page.screenshot(path=str(path), clip={"x": 0, "y": top, "width": WIDTH, "height": bottom - top})


def shapes_view(page, url: str, path: Path) -> None:
    """The Shapes tab after the classic preset: the explanation box and the shape tables."""
    page.goto(url)
    wait_for_app(page)
    hide_toolbar(page)
    page.get_by_role("button", name=PRESET_BUTTON).click()
    page.wait_for_function(
        "() => document.querySelector('.st-key-hidden_size input')?.value === '20'", timeout=60_000)
    wait_for_app(page)
    page.get_by_role("tab", name="Shapes").click()
    panel = page.locator("[data-testid=stTabPanel]:visible")
    explanation = panel.locator("[data-testid=stAlert]").filter(has_text="nn.LSTM(10, 20, 2)")
    explanation.wait_for(state="visible", timeout=60_000)
    tables = panel.locator("table")  # st.table or Markdown tables
    tables.last.wait_for(state="visible", timeout=60_000)
    tabs = page.locator("[data-testid=stTabs]").first
    boxes = [tabs.bounding_box(), explanation.bounding_box()] + [
        tables.nth(i).bounding_box() for i in range(tables.count())]
    page.screenshot(path=str(path), clip=union_box(boxes))


def trained_view(page, url: str, path: Path) -> None:
    """The memory toy task after training: its loss curve and the gates over time."""
    page.goto(f"{url}/?model_source=toy+task&task=memory&timestep=3")
    wait_for_app(page)
    hide_toolbar(page)
    page.get_by_role("button", name="Train").click()
    page.get_by_text("Trained in").wait_for(timeout=120_000)
    wait_for_app(page)
    main_column = page.locator("[data-testid=stMain] h1").first.bounding_box()
    over_time = page.locator("[data-testid=stPlotlyChart]").nth(2).bounding_box()  # loss, step, over time
    top = main_column["y"] + main_column["height"]
    bottom = over_time["y"] + over_time["height"] + 16
    page.screenshot(path=str(path), clip={"x": 300, "y": top, "width": WIDTH - 300, "height": bottom - top})


def main() -> None:
    from playwright.sync_api import sync_playwright

    with streamlit_server() as url, sync_playwright() as pw:
        browser = launch_browser(pw)
        try:
            page = browser.new_page(viewport={"width": WIDTH, "height": 1800})
            default_view(page, url, DOCS / "screenshot-default.png")
            page = browser.new_page(viewport={"width": WIDTH, "height": 3000})
            shapes_view(page, url, DOCS / "screenshot-shapes.png")
            page = browser.new_page(viewport={"width": WIDTH, "height": 2400})
            trained_view(page, url, DOCS / "screenshot-trained.png")
        finally:
            browser.close()
    for name in ("screenshot-default.png", "screenshot-shapes.png", "screenshot-trained.png"):
        print(DOCS / name)


if __name__ == "__main__":
    main()
