"""The package as people install it: built from the checkout into a fresh virtual environment outside it, then used
from a directory outside it (the import, `lstm-viz --help`, a real trace, every package file, the page, and
`lstm-viz app` serving with the packaged server options). Marked slow: deselect with -m "not slow"."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import time
import tomllib
import urllib.request
import venv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from browser_support import free_port, stop_process

from lstm_viz.export import load_npz

ROOT = Path(__file__).resolve().parents[1]
# What a clone does not have, or what a build must not reuse: a stale build/ would be packed into the wheel again
# and could hide a file the package data leaves out.
NOT_IN_A_CLONE = (".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".*_cache", ".hypothesis",
                  ".benchmarks", "test-artifacts")
SERVER_START_S = 90
slow = pytest.mark.slow


def pins(requirements: Path) -> list[str]:
    lines = (line.split("#")[0].strip() for line in requirements.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("-")]


def test_the_package_depends_on_exactly_the_pins_of_requirements_txt():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert sorted(project["dependencies"]) == sorted(pins(ROOT / "requirements.txt"))


@dataclass
class Installed:
    source: Path  # the copy of the checkout it was built from
    venv: Path
    package: Path  # the installed lstm_viz/

    def bin(self, name: str) -> Path:
        return self.venv / "bin" / name


def clean_env(**changes: str) -> dict[str, str]:
    """This environment without anything that would put the checkout on the path."""
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "PYTHONHOME")}
    return {**env, **changes}


def run(cmd, cwd: Path, **changes: str) -> subprocess.CompletedProcess:
    done = subprocess.run([str(c) for c in cmd], cwd=cwd, env=clean_env(**changes), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"{cmd} exited with {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Installed:
    """`pip install --no-deps` of a copy of the checkout into a fresh venv (both outside the checkout)."""
    where = tmp_path_factory.mktemp("packaging")
    source = where / "checkout"
    shutil.copytree(ROOT, source, symlinks=True, ignore=shutil.ignore_patterns(*NOT_IN_A_CLONE))
    env_dir = where / "venv"
    try:
        venv.EnvBuilder(with_pip=False).create(env_dir)
    except Exception as err:  # e.g. no venv module in this Python
        pytest.skip(f"cannot create a virtual environment here ({type(err).__name__}: {err})")
    python = env_dir / "bin" / "python"
    purelib = Path(run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], where)
                   .stdout.strip())
    # torch, numpy, streamlit and plotly come from the environment running these tests: its site-packages follow
    # the venv's own on the path. Not --system-site-packages: run from a venv (as .ci/run does), that would add the
    # base interpreter's site-packages, which lack them.
    (purelib / "tested_environment.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    backend = subprocess.run([python, "-c", "import setuptools, sys; sys.exit(int(setuptools.__version__.split('.')[0])"
                              " < 64)"], env=clean_env(), capture_output=True).returncode == 0
    isolation = ["--no-build-isolation"] if backend else []  # without it, pip fetches setuptools from the index
    run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--quiet", *isolation, source], where)
    return Installed(source, env_dir, purelib / "lstm_viz")


@slow
def test_lstm_viz_is_imported_from_the_venv_not_the_checkout(installed, tmp_path):
    where = Path(run([installed.bin("python"), "-c", "import lstm_viz; print(lstm_viz.__file__)"], tmp_path)
                 .stdout.strip()).resolve()
    assert where == (installed.package / "__init__.py").resolve()
    assert not where.is_relative_to(ROOT)
    assert not where.is_relative_to(installed.source)


@slow
def test_every_file_of_the_package_is_installed(installed):
    def files(package: Path) -> set[str]:
        return {str(p.relative_to(package)) for p in package.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"}

    wanted = files(installed.source / "lstm_viz")
    assert {"explorer/assets/explorer.js", "explorer/assets/explorer.css", "serve/config.toml"} <= wanted
    assert wanted - files(installed.package) == set()


@slow
def test_the_command_lists_app_and_trace(installed, tmp_path):
    shown = run([installed.bin("lstm-viz"), "--help"], tmp_path).stdout
    assert "app" in shown
    assert "trace" in shown


@slow
def test_the_installed_command_traces_a_saved_lstm(installed, tmp_path):
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 4, num_layers=2)
    torch.save(lstm.state_dict(), tmp_path / "model.pt")
    x = np.random.default_rng(0).standard_normal((6, 2, 3)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    run([installed.bin("lstm-viz"), "trace", "--weights", "model.pt", "--input", "x.npy", "--out", "trace.npz",
         "--html", "report.html"], tmp_path)
    torch.testing.assert_close(load_npz(tmp_path / "trace.npz").output, lstm(torch.from_numpy(x))[0].detach(),
                               rtol=0, atol=1e-6)
    page = (tmp_path / "report.html").read_text()
    assert "window.LstmExplorer" in (installed.package / "explorer" / "assets" / "explorer.js").read_text()
    assert "window.LstmExplorer" in page  # the installed explorer.js, inlined


@slow
def test_the_installed_page_runs(installed, tmp_path):
    script = installed.package / "serve" / "streamlit_app.py"
    shown = run([installed.bin("python"), "-c", "import sys; from streamlit.testing.v1 import AppTest; "
                 "at = AppTest.from_file(sys.argv[1], default_timeout=300).run(); "
                 "assert not at.exception, [e.value for e in at.exception]; print(at.title[0].value)", script],
                tmp_path).stdout
    assert "lstm-viz" in shown


def serve(installed: Installed, tmp_path: Path, *extra: str):
    """`lstm-viz app` on a free loopback port, from a directory outside the checkout, with a display (so Streamlit
    would open a browser unless told it is headless) and an xdg-open that only notes what it was asked to open.
    Returns (base URL, process, the note's path, the log's path); the caller stops the process."""
    tools, home, cwd = tmp_path / "bin", tmp_path / "home", tmp_path / "elsewhere"
    for folder in (tools, home, cwd):
        folder.mkdir()
    opened = tmp_path / "opened"
    (tools / "xdg-open").write_text(f'#!/bin/sh\necho "$@" >> {opened}\n')
    (tools / "xdg-open").chmod(0o755)
    port, log = free_port(), tmp_path / "server.log"
    cmd = [installed.bin("lstm-viz"), "app", "--server.port", str(port), "--server.address", "127.0.0.1", *extra]
    with log.open("wb") as out:
        env = clean_env(HOME=str(home), DISPLAY=":0", PATH=f"{tools}{os.pathsep}{os.environ['PATH']}")
        proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + SERVER_START_S
    while "You can now view your Streamlit app" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"lstm-viz app did not start (exit {proc.poll()}):\n{log.read_text()[-4000:]}")
        time.sleep(0.25)
    return base, proc, opened, log


def get(url: str) -> tuple[int, str]:
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.status, response.read().decode(errors="replace")


@slow
def test_lstm_viz_app_serves_headless_from_anywhere(installed, tmp_path):
    base, proc, opened, log = serve(installed, tmp_path)
    try:
        assert get(f"{base}/_stcore/health") == (200, "ok")
        status, page = get(base)
        assert status == 200
        assert "<title>" in page
        time.sleep(2)  # Streamlit opens a browser, when it does, just after it says it is up
        assert not opened.exists(), "the server tried to open a browser: the packaged server.headless was not applied"
        assert proc.poll() is None
    finally:
        stop_process(proc)
    said = log.read_text()
    assert f"lstm-viz: open http://localhost:{base.rsplit(':', 1)[1]} in a browser" in said


@slow
def test_lstm_viz_app_passes_its_arguments_to_streamlit_after_the_packaged_options(installed, tmp_path):
    """The probe of the test above at work: asked not to be headless, the same server opens a browser."""
    base, proc, opened, _ = serve(installed, tmp_path, "--server.headless", "false", "--server.showEmailPrompt",
                                  "false")
    try:
        deadline = time.monotonic() + 30
        while not opened.exists() and time.monotonic() < deadline:
            time.sleep(0.25)
        assert opened.exists(), "a server that is not headless should have opened a browser"
        assert base.rsplit(":", 1)[1] in opened.read_text()
    finally:
        stop_process(proc)

