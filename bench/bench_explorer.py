"""Stepping in the page: the time explorer's key press → repainted heatmaps, against the old slider step.

    PYTHONPATH=.:tests python3 bench/bench_explorer.py [--steps 25] [--old-steps 15] [--skip-long] [--no-baseline]

In headless Chromium (tests/browser_support.py), per config:
- baseline: commit d54318c's app (exported with git archive, run from its own tree with its own
  tests/browser_support.py): focus the Streamlit timestep slider, press ArrowRight, time until the step figure's
  annotation ends with the new t (Python clock, polled every 10 ms), as that commit's bench/bench_browser.py did;
- new, in the page: performance.now(), a keydown dispatched on document.body, then the next painted frame
  (requestAnimationFrame, then setTimeout 0); each step checks dataset.t and the heatmaps' hover text moved;
- new, real keys: page.keyboard.press, timed in the page from the event's timeStamp to the next painted frame,
  and from Python (press → the page shows the new t, polled every frame), as the baseline is timed;
- websocket frames the page sends (CDP Network.webSocketFrameSent) while stepping 20 times, 50 ms apart, and in
  the 2 s after (the debounced report);
- where a dispatched step's time goes: the explorer's draw calls, wrapped and timed in the page;
- first draw, from timestamps taken in the page (0 = navigation start).
Every explorer step sweeps t over 0…30 (ArrowRight, then ArrowLeft back): inside the first data window and the
first over-time display window, so no step waits for the server or redraws the over-time figure in full.
T=100,000, H=256, L=2 is estimated at 2.0 GB, just over the app's default per-trace budget: both apps run with
LSTM_VIZ_MAX_TRACE_GB=3 unless it is set. Medians; never a test.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from browser_support import launch_browser, streamlit_server  # noqa: E402

BASELINE = "d54318c"  # the last commit whose step tab was a Streamlit slider
CONFIGS = {
    "default (T=12, B=2, H=8, L=1)": "",
    "T=256, B=8, H=256, L=2": "seq_len=256&batch_size=8&hidden_size=256&num_layers=2",
    "T=100,000, B=1, H=256, L=2": "seq_len=100000&batch_size=1&hidden_size=256&num_layers=2&input_size=8",
}
LOAD_TIMEOUT_MS = 180_000

# Run in the exported old tree (cwd), with its own helpers: the old bench_browser.measure, minus its URL quirk.
OLD_STEPS = r"""
import json, sys, time
sys.path[:0] = ["tests", "bench"]
from playwright.sync_api import sync_playwright
from bench_browser import SHOWS_STEP
from browser_support import launch_browser, streamlit_server, timestep_slider, wait_for_app
query, steps = sys.argv[1], int(sys.argv[2])
with streamlit_server(query="?" + query if query else "") as url, sync_playwright() as pw:
    page = launch_browser(pw).new_page(viewport={"width": 1400, "height": 1800})
    page.goto(url)
    wait_for_app(page, timeout_ms=180_000)
    slider = timestep_slider(page)
    times = []
    for t in range(1, min(steps, int(slider.get_attribute("max"))) + 1):
        slider.focus()
        start = time.perf_counter()
        slider.press("ArrowRight")
        page.wait_for_function(SHOWS_STEP, arg=t, polling=10, timeout=30_000)
        times.append(time.perf_counter() - start)
print(json.dumps(times))
"""

# Page timestamps of the first load: script running / finished, the explorer's element, its first draw.
MILESTONES_JS = """
window.__lvxBench = {};
const watch = new MutationObserver(() => {
  const m = window.__lvxBench, now = performance.now();
  const state = document.querySelector('[data-testid=stApp]')?.getAttribute('data-test-script-state');
  if (state === 'running') m.running ??= now;
  if (m.running !== undefined && state === 'notRunning') m.finished ??= now;
  if (document.querySelector('.st-key-explorer')) m.element ??= now;
  if (document.querySelector('[data-testid=lvx-step] .main-svg')) m.drawn ??= now;
  if (m.finished !== undefined && m.drawn !== undefined) watch.disconnect();
});
watch.observe(document, {childList: true, subtree: true, attributes: true,
                         attributeFilter: ['data-test-script-state']});
"""
# Shared by the page scripts below: the next key of a sweep, and whether the page shows step t.
HELPERS_JS = """
const root = document.querySelector('[data-testid=lvx]'), plot = root.querySelector('[data-testid=lvx-step]');
const last = Math.min(30, Number(root.querySelector('input[type=range]').max));  // inside the first windows
const nextKey = () => {  // ArrowRight, turning to ArrowLeft at `last` and back at 0
  const t = Number(root.dataset.t);
  let dir = window.__lvxDir || 1;
  if (t + dir < 0 || t + dir > last) dir = -dir;
  window.__lvxDir = dir;
  return [dir > 0 ? 'ArrowRight' : 'ArrowLeft', t + dir];
};
const shows = (t) => Number(root.dataset.t) === t && plot.data.every((q) => q.hovertemplate.includes(`t=${t} `));
const frame = () => new Promise((resolve) => requestAnimationFrame(() => setTimeout(resolve, 0)));
const press = (key) => document.body.dispatchEvent(new KeyboardEvent('keydown', {key, bubbles: true}));
"""
DISPATCH_JS = "async ([n, gapMs]) => {" + HELPERS_JS + """
  const times = [];
  for (let k = 0; k < n; k++) {
    const [key, t] = nextKey(), start = performance.now();
    press(key);
    await frame();
    times.push(performance.now() - start);
    if (!shows(t)) throw new Error(`the page did not step to t=${t}`);
    if (gapMs) await new Promise((resolve) => setTimeout(resolve, gapMs));
  }
  return times;
}"""
# Where a step's time goes: the explorer's four draw calls (wrapped for n steps, then restored), the whole handler.
PROFILE_JS = "async (n) => {" + HELPERS_JS + """
  const explorer = window.__lstmViz.explorer, times = {handler: []};
  const draws = ['drawStep', 'drawTime', 'drawCell', 'drawReadout'];
  for (const name of draws) {
    const draw = explorer[name];
    times[name] = [];
    explorer[name] = function (...args) {
      const start = performance.now(), result = draw.apply(this, args);
      times[name].push(performance.now() - start);
      return result;
    };
  }
  for (let k = 0; k < n; k++) {
    const start = performance.now();
    press(nextKey()[0]);
    times.handler.push(performance.now() - start);
    await frame();
  }
  for (const name of draws) delete explorer[name];  // back to the prototype's
  return times;
}"""
NEXT_KEY_JS = "() => {" + HELPERS_JS + " return nextKey(); }"
SHOWS_JS = "(t) => {" + HELPERS_JS + " return shows(t); }"
ARM_JS = """() => { document.activeElement?.blur();
  window.__lvxPress = new Promise((resolve) => window.addEventListener('keydown', (event) => {
    const start = event.timeStamp;
    requestAnimationFrame(() => setTimeout(() => resolve(performance.now() - start), 0));
  }, {capture: true, once: true})); }"""


def old_slider(tree: Path, query: str, steps: int) -> list[float]:
    """Seconds per slider step of the old app, run from its own tree (its .streamlit config, its helpers)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", OLD_STEPS, query, str(steps)], cwd=tree, env=env, check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.splitlines()[-1])


def settle(page, frames: list, quiet_s: float = 1.0) -> None:
    """Until the script is idle and the page has sent nothing for quiet_s (a pending report has gone out)."""
    while True:
        before = len(frames)
        page.wait_for_timeout(1000 * quiet_s)
        idle = page.evaluate("document.querySelector('[data-testid=stApp]')"
                             ".getAttribute('data-test-script-state') === 'notRunning'")
        if idle and len(frames) == before:
            return


def explorer(query: str, steps: int) -> dict:
    """The new app at one config: first draw, dispatched and real key steps, websocket frames per step."""
    from playwright.sync_api import sync_playwright

    with streamlit_server(query="?" + query if query else "") as url, sync_playwright() as pw:
        page = launch_browser(pw).new_page(viewport={"width": 1400, "height": 1800})
        page.add_init_script(MILESTONES_JS)
        frames = []
        cdp = page.context.new_cdp_session(page)
        cdp.on("Network.webSocketFrameSent", lambda event: frames.append(event))
        cdp.send("Network.enable")
        page.goto(url)
        page.wait_for_function("() => (({drawn, finished}) => drawn !== undefined && finished !== undefined)"
                               "(window.__lvxBench)", timeout=LOAD_TIMEOUT_MS, polling=100)
        first = page.evaluate("""({...window.__lvxBench, plotly: performance.getEntriesByType('resource')
            .find((entry) => entry.name.endsWith('/plotly.min.js'))?.responseEnd})""")
        settle(page, frames)
        dispatched = [s / 1e3 for s in page.evaluate(DISPATCH_JS, [steps, 0])]
        settle(page, frames)
        profile = {name: [s / 1e3 for s in times] for name, times in page.evaluate(PROFILE_JS, steps).items()}
        settle(page, frames)
        in_page, from_python = [], []
        for _ in range(steps):
            key, t = page.evaluate(NEXT_KEY_JS)
            page.evaluate(ARM_JS)
            start = time.perf_counter()
            page.keyboard.press(key)
            page.wait_for_function(SHOWS_JS, arg=t, polling="raf", timeout=30_000)
            from_python.append(time.perf_counter() - start)
            in_page.append(page.evaluate("window.__lvxPress") / 1e3)
        settle(page, frames)
        sent = len(frames)
        page.evaluate(DISPATCH_JS, [20, 50])
        while_stepping = len(frames) - sent
        for frame in frames[sent:]:  # none expected: say what went out (a rerun request starts with the URL)
            print(f"  sent while stepping: {base64.b64decode(frame['response']['payloadData'])[:100]!r}")
        page.wait_for_timeout(2000)
        after = len(frames) - sent - while_stepping
    return {"first": first, "dispatched": dispatched, "profile": profile, "in_page": in_page,
            "from_python": from_python, "frames_per_step": while_stepping / 20, "frames_after": after}


def ms(times: list[float]) -> str:
    """Median (p90) in ms, and the count."""
    if not times:
        return "–"
    p90 = sorted(times)[int(0.9 * len(times))]
    return f"{1e3 * statistics.median(times):.0f} ({1e3 * p90:.0f}) ×{len(times)}"


def ratio(old: list[float], new: list[float]) -> str:
    return f"{statistics.median(old) / statistics.median(new):.1f}×" if old and new else "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=25, help="explorer steps per measurement")
    parser.add_argument("--old-steps", type=int, default=15, help="baseline slider steps (T=12 has 11)")
    parser.add_argument("--skip-long", action="store_true", help="leave out T=100,000 (a ~20 s first run)")
    parser.add_argument("--no-baseline", action="store_true", help=f"leave out commit {BASELINE}'s slider")
    args = parser.parse_args()
    os.environ.setdefault("LSTM_VIZ_MAX_TRACE_GB", "3")
    configs = {name: q for name, q in CONFIGS.items() if not (args.skip_long and "100,000" in name)}
    old = {}
    if not args.no_baseline:
        with tempfile.TemporaryDirectory(prefix="lstm-viz-baseline-") as tree:
            subprocess.run(f"git -C {shlex.quote(str(ROOT))} archive {BASELINE} | tar -x -C {shlex.quote(tree)}",
                           shell=True, check=True)
            for name, query in configs.items():
                old[name] = old_slider(Path(tree), query, args.old_steps)
                print(f"baseline {name}: {ms(old[name])} ms", flush=True)
    new = {name: explorer(query, args.steps) for name, query in configs.items()}

    table(f"key press → repainted step heatmaps, ms: median (p90) ×steps; old = {BASELINE}'s slider",
          ["config", "old slider → repaint", "new, dispatched, in page", "ratio", "new, real key, in page",
           "new, real key, Python clock", "ratio", "ws frames per step", "ws frames after stopping"],
          [[name, ms(old.get(name, [])), ms(r["dispatched"]), ratio(old.get(name, []), r["dispatched"]),
            ms(r["in_page"]), ms(r["from_python"]), ratio(old.get(name, []), r["from_python"]),
            f"{r['frames_per_step']:g}", r["frames_after"]] for name, r in new.items()])
    draws = ("handler", "drawStep", "drawTime", "drawCell", "drawReadout")
    table("where a dispatched step's time goes, ms: median (p90) ×steps; the rest is style, layout, paint",
          ["config", "whole key handler", "drawStep (6 heatmaps: restyle z)", "drawTime (over-time marker)",
           "drawCell (SVG + equations)", "drawReadout"],
          [[name, *(ms(r["profile"][d]) for d in draws)] for name, r in new.items()])
    firsts = {name: r["first"] for name, r in new.items()}
    table("first draw, ms from navigation start (page timestamps)",
          ["config", "explorer element arrives", "script finished", "plotly.min.js fetched", "explorer drawn",
           "element → drawn", "finished → drawn"],
          [[name, f"{f['element']:.0f}", f"{f['finished']:.0f}", f"{f.get('plotly') or 0:.0f}", f"{f['drawn']:.0f}",
            f"{f['drawn'] - f['element']:.0f}", f"{f['drawn'] - f['finished']:.0f}"] for name, f in firsts.items()])


def table(title: str, columns: list[str], rows: list[list]) -> None:
    """A Markdown table, as docs/benchmarks.md records it: the first column left-aligned, the rest right."""
    print(f"\n# {title}")
    print("| " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * (len(columns) - 1))
    for row in rows:
        print("| " + " | ".join(str(cell) for cell in row) + " |")


if __name__ == "__main__":
    main()
