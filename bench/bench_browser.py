"""Slider move to repainted heatmaps, in headless Chromium: the latency a user feels when stepping.

    python bench/bench_browser.py [--steps 15] [--query "seq_len=256&batch_size=8&hidden_size=256&num_layers=2"]

Starts `streamlit run app.py` on a free loopback port, focuses the timestep slider, presses ArrowRight and
times until the step figure (polled every 10 ms) shows the new t. Medians; never a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from browser_support import launch_browser, streamlit_server, timestep_slider, wait_for_app  # noqa: E402

SHOWS_STEP = """(t) => {
  const plot = document.querySelector('[data-testid=stPlotlyChart] .js-plotly-plot');
  const notes = plot && plot.layout && plot.layout.annotations;
  return Boolean(notes && notes.length && notes[0].text.endsWith('t=' + t));
}"""


def measure(query: str, steps: int) -> list[float]:
    from playwright.sync_api import sync_playwright

    with streamlit_server(query=query) as url, sync_playwright() as pw:
        browser = launch_browser(pw)
        page = browser.new_page(viewport={"width": 1400, "height": 1800})
        page.goto(f"{url}/?{query}" if query else url)
        wait_for_app(page)
        slider = timestep_slider(page)
        last = int(slider.get_attribute("max"))
        times = []
        for t in range(1, min(steps, last) + 1):
            slider.focus()
            start = time.perf_counter()
            slider.press("ArrowRight")
            page.wait_for_function(SHOWS_STEP, arg=t, polling=10, timeout=30_000)
            times.append(time.perf_counter() - start)
        browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--query", action="append", default=None, help="URL settings; repeatable")
    args = parser.parse_args()
    for query in args.query or ["", "seq_len=256&batch_size=8&hidden_size=256&num_layers=2"]:
        times = measure(query, args.steps)
        print(f"{query or 'default config':>55}: slider → repaint median {1e3 * statistics.median(times):.0f} ms, "
              f"p90 {1e3 * sorted(times)[int(0.9 * len(times))]:.0f} ms over {len(times)} steps", flush=True)


if __name__ == "__main__":
    main()
