"""Many users at once: `streamlit run app.py` on loopback, driven by N headless browser sessions.

    report = run_load(sessions=20, duration_s=60)

One Chromium, one Playwright browser context (so one Streamlit session) per simulated user, all driven from
one asyncio loop. Session k opens the app with its own config in the URL (`session_config(k)`: every session
a different hidden_size, so a different heatmap width, and a different seed), waits until it is drawn, and
once every session is drawn they all press Next until a shared deadline. After each press a session waits
until the explorer shows the new t (the latency), then checks all six heatmaps at that t against the
trace computed here, in the test process, for its own config: another session's data, a wrong shape, an
exception or error box on the page, or a timeout is an error naming the session (a session stops at its
first error). A thread samples the server's resident memory all along.

Used by tests/test_load.py (asserts errors and memory, never timings) and bench/bench_load.py (prints).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlencode

import numpy as np
from browser_support import (
    APP_PATH,
    CHROMIUM_ARGS,
    READ_EXPLORER_JS,
    STEP_KEYS,
    STEP_READY_JS,
    find_chromium,
    streamlit_process,
)

from lstm_viz.pipeline import AppConfig, make_sequence, run

VIEWPORT = {"width": 1280, "height": 1000}
# On 2 cores every CPU-second counts: without a GPU, Chromium's GPU process emulates WebGL and accelerated
# canvas in software (SwiftShader), far dearer than the renderer's own software canvas; the app uses neither
# WebGL nor anything that needs it. Reduced motion stops Streamlit's loading animations from painting frames.
LOAD_CHROMIUM_ARGS = [*CHROMIUM_ARGS, "--disable-3d-apis", "--disable-accelerated-2d-canvas"]
FIRST_DRAW_TIMEOUT_S = 90.0  # a cold page costs Chromium ~10 CPU-seconds here (frontend, React, Plotly, KaTeX)
STEP_TIMEOUT_S = 90.0  # a step costs Chromium ~2 CPU-seconds: 20 sessions stepping at once take ~30 s on 2 cores
POLL_MS = 100  # how often a page checks for the new step: the latency's resolution (20 pages poll at once)
OPEN_CONCURRENCY = 2  # pages loading at once (~the cores): all 20 together starve each other past any timeout
TEARDOWN_RESERVE_S = 10.0  # closing 20 contexts and the server, within `budget_s`
RSS_INTERVAL_S = 0.5
TOLERANCE = 1e-5  # float32 (the app sends heatmaps as float32 bytes)

# The page's state in one call: the explorer (READ_EXPLORER_JS, shared with the sync helpers), the script's
# state, and any exception or error box. Warnings and infos are not errors.
_SNAPSHOT_JS = """() => ({
    explorer: (""" + READ_EXPLORER_JS + """)(),
    state: document.querySelector('[data-testid=stApp]')?.getAttribute('data-test-script-state') ?? 'no stApp',
    errors: Array.from(document.querySelectorAll(
        '[data-testid=stException], [data-testid=stAlertContentError]'), (e) => e.innerText.slice(0, 400)),
})"""


def session_config(k: int) -> AppConfig:
    """Session k's own config: small (20 sessions share 2 cores), and different from every other session's
    in hidden_size and seed (so in heatmap width and values); seq_len, batch and input_size vary too."""
    return AppConfig(input_size=2 + k % 4, hidden_size=3 + k, seq_len=6 + k % 7, batch_size=1 + k % 3, seed=k)


def session_query(config: AppConfig) -> str:
    """The URL query that sets `config` on a session's first run (every varied setting, defaults or not)."""
    names = ("input_size", "hidden_size", "seq_len", "batch_size", "seed")
    return urlencode({name: getattr(config, name) for name in names})


def expected_steps(config: AppConfig) -> dict[str, np.ndarray]:
    """What the app should draw for `config`: each quantity (f, i, o, g, c, h) of layer 0, forward,
    as (seq_len, batch, units) float32, computed here with lstm_viz like the app computes it."""
    trace = run(config, make_sequence(config, {})).trace  # the app's random input: {"distribution": "normal"}
    return {key: trace.array(key)[0, 0].astype(np.float32) for key in STEP_KEYS}


@dataclass
class LoadReport:
    """What a load run measured. Memory in MB (2**20 bytes) of the server process; times in seconds."""

    sessions: int
    duration_s: float  # the step phase's planned length (`budget_s` may have shortened the one asked for)
    steps: int = 0
    steps_per_session: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    latencies_s: list[float] = field(default_factory=list, repr=False)
    p50_s: float | None = None
    p95_s: float | None = None
    first_draw_s: list[float] = field(default_factory=list, repr=False)  # per session: goto until drawn
    rss_samples: list[tuple[float, float]] = field(default_factory=list, repr=False)  # (s since start, VmRSS MB)
    rss_idle_mb: float = 0.0  # server up, no session yet
    rss_warm_mb: float = 0.0  # every session first drawn, before stepping
    rss_end_mb: float = 0.0  # at the deadline, every session still open
    hwm_mb: float = 0.0  # the kernel's VmHWM: peak resident, between samples too
    max_sampled_rss_mb: float = 0.0
    server_cpu_setup_s: float = 0.0  # CPU seconds the server used until every session was drawn
    server_cpu_steps_s: float = 0.0  # … and while they stepped (the browsers use the rest of the box)
    server_start_s: float = 0.0
    setup_s: float = 0.0  # server start, browser launch and every first draw
    step_phase_s: float = 0.0
    wall_s: float = 0.0

    @property
    def peak_rss_mb(self) -> float:
        return max(self.hwm_mb, self.max_sampled_rss_mb)

    def summary(self) -> str:
        def ms(value):
            return "n/a" if value is None else f"{1e3 * value:.0f} ms"

        fewest = min(self.steps_per_session, default=0)
        return (f"load: {self.sessions} sessions, {self.steps} steps in {self.step_phase_s:.0f} s (fewest "
                f"{fewest} per session), {len(self.errors)} errors; step latency p50 {ms(self.p50_s)}, "
                f"p95 {ms(self.p95_s)}; server RSS idle {self.rss_idle_mb:.0f} MB, warm {self.rss_warm_mb:.0f} MB, "
                f"end {self.rss_end_mb:.0f} MB, peak {self.peak_rss_mb:.0f} MB; server CPU while stepping "
                f"{self.server_cpu_steps_s:.1f} s; setup {self.setup_s:.0f} s "
                f"(server {self.server_start_s:.0f} s), wall {self.wall_s:.0f} s")

    def table(self) -> str:
        first = sorted(self.first_draw_s)
        rows = [
            ("sessions", f"{self.sessions}"),
            ("step phase", f"{self.step_phase_s:.1f} s"),
            ("steps (total)", f"{self.steps}"),
            ("steps per session (min / median / max)",
             f"{min(self.steps_per_session, default=0)} / {int(np.median(self.steps_per_session or [0]))} / "
             f"{max(self.steps_per_session, default=0)}"),
            ("errors", f"{len(self.errors)}"),
            ("step latency p50", "n/a" if self.p50_s is None else f"{1e3 * self.p50_s:.0f} ms"),
            ("step latency p95", "n/a" if self.p95_s is None else f"{1e3 * self.p95_s:.0f} ms"),
            ("first draw (median / max)", f"{np.median(first):.1f} s / {first[-1]:.1f} s" if first else "n/a"),
            ("server RSS idle", f"{self.rss_idle_mb:.0f} MB"),
            ("server RSS warm (all drawn)", f"{self.rss_warm_mb:.0f} MB"),
            ("server RSS end", f"{self.rss_end_mb:.0f} MB"),
            ("server peak RSS (VmHWM / max sampled)", f"{self.hwm_mb:.0f} MB / {self.max_sampled_rss_mb:.0f} MB"),
            ("server CPU: setup / step phase", f"{self.server_cpu_setup_s:.1f} s / {self.server_cpu_steps_s:.1f} s"
             + (f" ({1e3 * self.server_cpu_steps_s / self.steps:.0f} ms per step)" if self.steps else "")),
            ("setup (server start)", f"{self.setup_s:.1f} s ({self.server_start_s:.1f} s)"),
            ("wall", f"{self.wall_s:.1f} s"),
        ]
        width = max(len(name) for name, _ in rows)
        return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)

    def to_json(self) -> str:
        return json.dumps(asdict(self) | {"peak_rss_mb": self.peak_rss_mb}, indent=1)

    def write(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_status_mb(pid: int, field_name: str) -> float:
    """A memory line of /proc/<pid>/status (VmRSS, VmHWM, …) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise KeyError(f"{field_name} not in /proc/{pid}/status")


class RssSampler:
    """The server's VmRSS every `interval` seconds, in a background thread (started on enter)."""

    def __init__(self, pid: int, t0: float, interval: float = RSS_INTERVAL_S):
        self.pid, self.t0, self.interval = pid, t0, interval
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def sample(self) -> float:
        rss = proc_status_mb(self.pid, "VmRSS")
        self.samples.append((round(time.monotonic() - self.t0, 2), round(rss, 1)))
        return rss

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.sample()
            except (OSError, KeyError):
                return  # the server is gone

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class SessionError(Exception):
    """What went wrong in one session: the first error ends it."""


class Session:
    """One simulated user: its own browser context, config and expected trace."""

    def __init__(self, k: int, everyone: dict[int, dict[str, np.ndarray]]):
        self.k = k
        self.config = session_config(k)
        self.expected = expected_steps(self.config)
        self.everyone = everyone  # every session's expected data, k -> quantities: to say whose data it saw
        everyone[k] = self.expected
        self.name = (f"session {k} (hidden_size={self.config.hidden_size}, seq_len={self.config.seq_len}, "
                     f"batch_size={self.config.batch_size}, seed={self.config.seed})")
        self.page = None
        self.t = 0
        self.steps = 0
        self.latencies: list[float] = []
        self.first_draw_s: float | None = None
        self.error: str | None = None

    async def open(self, browser, base: str, timeout_s: float) -> None:
        """Open the app with this session's config and wait until it is drawn at t=0, then check it."""
        context = await browser.new_context(viewport=VIEWPORT, reduced_motion="reduce")
        self.page = await context.new_page()
        start = time.perf_counter()
        await self.page.goto(f"{base}/?{session_query(self.config)}", timeout=timeout_s * 1000)
        await self._wait_for_step(0, timeout_s, "first draw")
        self.first_draw_s = time.perf_counter() - start
        await self._check(0)

    async def step_until(self, deadline: float, min_steps: int, timeout_s: float) -> None:
        """Press Next until `deadline` (time.monotonic()), and on until `min_steps` steps are done (First at the
        last step); each step timed and checked. Past `min_steps`, a step that would end after the deadline (if
        it took as long as the last one) is not started: the phase stays within its minute."""
        explorer = self.page.locator("[data-testid=lvx]")
        next_button = explorer.get_by_role("button", name="Next ▶", exact=True)
        first_button = explorer.get_by_role("button", name="« First", exact=True)
        while self.steps < min_steps or time.monotonic() + (self.latencies or [0.0])[-1] < deadline:
            want = (self.t + 1) % self.config.seq_len
            start = time.perf_counter()
            await (next_button if want else first_button).click(timeout=timeout_s * 1000)
            await self._wait_for_step(want, timeout_s, f"step {self.steps + 1} (t={self.t} → {want})")
            self.latencies.append(time.perf_counter() - start)
            await self._check(want)
            self.t = want
            self.steps += 1

    async def _wait_for_step(self, t: int, timeout_s: float, what: str) -> None:
        from playwright.async_api import TimeoutError as PlaywrightTimeout

        try:
            await self.page.wait_for_function(STEP_READY_JS, arg=t, polling=POLL_MS, timeout=timeout_s * 1000)
        except PlaywrightTimeout:
            raise SessionError(f"{what}: the explorer did not show t={t} within {timeout_s:g} s; "
                               f"{await self._describe()}") from None

    async def _describe(self) -> str:
        try:
            snap = await self.page.evaluate(_SNAPSHOT_JS)
        except Exception as err:  # noqa: BLE001 - the page itself may be what failed
            return f"(page unreadable: {err})"
        shown = snap["explorer"] and snap["explorer"]["t"]
        return f"script state {snap['state']}; explorer at t={shown}; error boxes {snap['errors']}"

    async def _check(self, t: int) -> None:
        """The page at step t shows this session's own data, and no exception or error box."""
        snap = await self.page.evaluate(_SNAPSHOT_JS)
        if snap["errors"]:
            raise SessionError(f"at t={t}: error box on the page: {snap['errors']}")
        explorer = snap["explorer"]
        if not explorer or sorted(explorer["z"]) != sorted(STEP_KEYS):
            raise SessionError(f"at t={t}: step quantities {explorer and sorted(explorer['z'])}, want {STEP_KEYS}")
        if explorer["t"] != t:
            raise SessionError(f"at t={t}: the explorer shows t={explorer['t']}")
        for key in STEP_KEYS:
            word, z = key, explorer["z"][key]
            want = self.expected[key][t]  # (batch, units): the heatmap's rows and columns
            try:
                got = np.asarray(z, dtype=np.float32)
            except (TypeError, ValueError):
                raise SessionError(f"at t={t}: {word} heatmap z is not a numeric grid: {str(z)[:200]}") from None
            if got.shape != want.shape:
                raise SessionError(f"at t={t}: {word} heatmap is {got.shape} (batch × units), want {want.shape}"
                                   f"{self._whose(key, got)}")
            if not np.allclose(got, want, rtol=0, atol=TOLERANCE):
                diff = float(np.abs(got - want).max())
                raise SessionError(f"at t={t}: {word} differs from this session's trace by {diff:.3g}"
                                   f"{self._whose(key, got)}")

    def _whose(self, key: str, got: np.ndarray) -> str:
        """For an error message: " (it is session j's data at t=s)" when some session's trace (this one's at
        another step included) matches `got`, else ""."""
        for j, expected in self.everyone.items():
            for step, want in enumerate(expected[key]):
                if want.shape == got.shape and np.allclose(got, want, rtol=0, atol=TOLERANCE):
                    return f" (it is session {j}'s data at t={step})"
        return ""


async def _guarded(session: Session, coro, errors: list[str]) -> bool:
    """Run one phase of a session; an error (ours, Playwright's, anything) is recorded with its name."""
    try:
        await coro
        return True
    except SessionError as err:
        session.error = f"{session.name}: {err}"
    except Exception as err:  # noqa: BLE001 - any failure of one session is a finding, not a crash of the run
        session.error = f"{session.name}: {type(err).__name__}: {str(err).strip().splitlines()[0][:300]}"
    errors.append(session.error)
    return False


async def _drive(base: str, sessions: list[Session], report: LoadReport, sampler: RssSampler, t0: float,
                 plan: dict) -> None:
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=find_chromium(), headless=True, args=LOAD_CHROMIUM_ARGS)
        try:
            gate = asyncio.Semaphore(plan["open_concurrency"])

            async def open_one(session: Session) -> bool:
                async with gate:
                    opening = session.open(browser, base, plan["first_draw_timeout_s"])
                    return await _guarded(session, opening, report.errors)

            opened = await asyncio.gather(*(open_one(s) for s in sessions))
            report.setup_s = time.monotonic() - t0
            report.rss_warm_mb = sampler.sample()
            cpu_warm = proc_cpu_s(sampler.pid)
            report.server_cpu_setup_s = cpu_warm
            start = time.monotonic()
            if plan["budget_s"] is not None:  # a slow setup shortens the step phase, down to min_duration_s
                left = t0 + plan["budget_s"] - TEARDOWN_RESERVE_S - start
                report.duration_s = max(plan["min_duration_s"], min(report.duration_s, left))
            deadline = start + report.duration_s
            await asyncio.gather(*(_guarded(s, s.step_until(deadline, plan["min_steps"], plan["step_timeout_s"]),
                                            report.errors)
                                   for s, ok in zip(sessions, opened, strict=True) if ok))
            report.step_phase_s = time.monotonic() - start
            report.rss_end_mb = sampler.sample()  # every session still connected
            report.server_cpu_steps_s = proc_cpu_s(sampler.pid) - cpu_warm
        finally:
            await browser.close()


def run_load(sessions: int = 20, duration_s: float = 60.0, *, budget_s: float | None = None,
             min_duration_s: float = 20.0, min_steps: int = 2, open_concurrency: int = OPEN_CONCURRENCY,
             app_path: Path | str = APP_PATH, first_draw_timeout_s: float = FIRST_DRAW_TIMEOUT_S,
             step_timeout_s: float = STEP_TIMEOUT_S) -> LoadReport:
    """Serve the app, open `sessions` browser sessions (at most `open_concurrency` loading at once), and once
    all are drawn step each through time for `duration_s` seconds (a session that has not done `min_steps`
    by then goes on until it has). With `budget_s`, the step phase is shortened (to no less than
    `min_duration_s`) so that the whole run, server start included, ends within about `budget_s` seconds.

    Never raises for what a session saw: that is in the report's errors. Raises only when the server or the
    browser cannot start."""
    if find_chromium() is None:
        raise RuntimeError("no chromium found (looked at /usr/bin/chromium and PATH)")
    t0 = time.monotonic()
    everyone: dict[int, dict[str, np.ndarray]] = {}
    drivers = [Session(k, everyone) for k in range(sessions)]
    report = LoadReport(sessions=sessions, duration_s=duration_s)
    with streamlit_process(app_path) as (base, proc):
        report.server_start_s = time.monotonic() - t0
        with RssSampler(proc.pid, t0) as sampler:
            report.rss_idle_mb = sampler.sample()
            plan = dict(budget_s=budget_s, min_duration_s=min_duration_s, min_steps=min_steps,
                        open_concurrency=open_concurrency, first_draw_timeout_s=first_draw_timeout_s,
                        step_timeout_s=step_timeout_s)
            asyncio.run(_drive(base, drivers, report, sampler, t0, plan))
            report.hwm_mb = proc_status_mb(proc.pid, "VmHWM")
        report.rss_samples = list(sampler.samples)
    report.max_sampled_rss_mb = max((rss for _, rss in report.rss_samples), default=0.0)
    report.steps_per_session = [s.steps for s in drivers]
    report.steps = sum(report.steps_per_session)
    report.first_draw_s = [round(s.first_draw_s, 2) for s in drivers if s.first_draw_s is not None]
    report.latencies_s = [round(x, 4) for s in drivers for x in s.latencies]
    if report.latencies_s:
        report.p50_s, report.p95_s = (float(np.percentile(report.latencies_s, q)) for q in (50, 95))
    report.wall_s = time.monotonic() - t0
    return report
