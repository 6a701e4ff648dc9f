"""The compiled engine: its C++ cell against nn.LSTM and the stepwise engine, and its fallback where it cannot be
built (always tested, with or without a compiler)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import TOLERANCE
from hypothesis import HealthCheck, given, settings
from test_parity import lstm_cases, make_pair, max_err, option_case

from lstm_viz import InstrumentedLSTM, compiled, cost
from lstm_viz.engines import ENGINES

ROOT = Path(__file__).resolve().parents[1]
QUANTITIES = ("f", "i", "g", "o", "c", "h")


@pytest.fixture(scope="module")
def built():
    """The compiled cell, built (or loaded from torch's extension cache) once per session: a cold build takes
    ~20–30 s on 2 cores. Skips, saying why, where it cannot be built."""
    reason = compiled.unavailable_reason()
    if reason is not None:
        pytest.skip(f"the compiled cell is unavailable here: {reason}")
    return compiled


@pytest.fixture(params=["brgemm", "aten"])
def route(request, built, monkeypatch):
    """The op's two routes for float32 products: ATen's brgemm, tiled by the op (where it runs), and ATen's GEMM or
    oneDNN's prepacked one (LSTM_VIZ_NO_BRGEMM=1, and wherever brgemm does not run)."""
    if request.param == "brgemm" and not compiled.brgemm_runs():
        pytest.skip("ATen's float32 brgemm does not run on this CPU")
    if request.param == "aten":
        monkeypatch.setenv("LSTM_VIZ_NO_BRGEMM", "1")
    return request.param


def check_against_torch_and_stepwise(case, dtype, route="brgemm"):
    ref, ours, x, hx = make_pair(case, dtype, "cpu")
    batch = 1 if x.dim() == 2 else x.shape[0 if case["cfg"]["batch_first"] else 1]
    w_hh = ours.weight_hh_l0
    brgemm = dtype == torch.float32 and route == "brgemm" and compiled.brgemm_runs()
    assert compiled.uses_brgemm(w_hh) == brgemm  # the route the test names is the one that runs...
    prepared = compiled.prepare(ours.weight_ih_l0, w_hh, batch)  # ...but for the smallest, whose dot loop wins
    assert (prepared.hh_panels is not None) == (brgemm and batch * w_hh.numel() > compiled.SMALL_PRODUCT)
    tol = TOLERANCE[dtype]
    with torch.no_grad():
        want_out, (want_h, want_c) = ref(x, hx)
        got = ours.trace(x, hx, engine="compiled")
        reference = ours.trace(x, hx, engine="stepwise")
    assert got.engine == "compiled"
    for name, a, b in (("output", got.output, want_out), ("h_n", got.h_n, want_h), ("c_n", got.c_n, want_c)):
        assert max_err(a, b) <= tol, f"{name} differs from nn.LSTM for {case}"
    for q in QUANTITIES:  # every gate and state at every step, not only what nn.LSTM returns
        assert max_err(got.get(q), reference.get(q)) <= 10 * tol, f"{q} differs from stepwise for {case}"
    assert got.f.dtype == dtype


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=lstm_cases())
def test_compiled_matches_nn_lstm_and_stepwise_on_random_configs(built, case, dtype):
    check_against_torch_and_stepwise(case, dtype)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=lstm_cases())
def test_compiled_float32_without_brgemm_matches_on_random_configs(built, case, monkeypatch):
    """The route where brgemm does not run (another CPU, another build of torch), forced here."""
    monkeypatch.setenv("LSTM_VIZ_NO_BRGEMM", "1")
    check_against_torch_and_stepwise(case, torch.float32, "aten")


@pytest.mark.parametrize("option", [
    dict(batch_first=True), dict(bidirectional=True), dict(proj_size=3), dict(bias=False), dict(num_layers=3),
    dict(num_layers=2, bidirectional=True, proj_size=2, bias=False, batch_first=True),
])
@pytest.mark.parametrize("unbatched,given_hx", [(False, False), (True, False), (False, True), (True, True)])
def test_compiled_each_option(built, route, option, unbatched, given_hx):
    """Each option on its own, by each route, so a failure names it (hypothesis covers the combinations)."""
    for dtype in (torch.float64, torch.float32):
        check_against_torch_and_stepwise(option_case(option, unbatched, given_hx), dtype, route)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_compiled_wide_batch_runs_the_fused_loop_on_every_thread(built, route, dtype):
    """Work past the threshold where a step is split by blocks of units across threads, H not a multiple of the
    block (a narrower last block) nor of the vector width (the last units take the scalar path), bidirectional
    with projection, by each route."""
    case = dict(cfg=dict(input_size=6, hidden_size=131, num_layers=1, bias=True, batch_first=False,
                         bidirectional=True, proj_size=17, dropout=0.0),
                seq_len=5, batch=300, unbatched=False, given_hx=True, seed=4)
    check_against_torch_and_stepwise(case, dtype, route)


@pytest.mark.parametrize("H", [64, 70])
def test_brgemm_panels_hold_the_weights_in_the_layout_the_op_reads(built, H):
    """W_ihᵀ in panels of 4·32 columns; W_hhᵀ in panels of the i, f, g, o columns of 32 units each (the last panel
    narrower where H is not a multiple of 32), read back here by the same arithmetic the op uses."""
    if not compiled.brgemm_runs():
        pytest.skip("ATen's float32 brgemm does not run on this CPU")
    torch.manual_seed(8)
    I, u = 5, 32
    w_ih, w_hh = torch.randn(4 * H, I), torch.randn(4 * H, H)
    prepared = compiled.prepare(w_ih, w_hh, batch=2)
    assert prepared.packed_hh is None
    ih, hh = prepared.ih_panels, prepared.hh_panels
    assert ih.numel() == w_ih.numel() and hh.numel() == w_hh.numel()
    offset = 0
    for c0 in range(0, 4 * H, 4 * u):  # W_ihᵀ columns c0 … c0 + width, row-major
        width = min(4 * u, 4 * H - c0)
        panel = ih[offset:offset + I * width].view(I, width)
        torch.testing.assert_close(panel, w_ih[c0:c0 + width].t(), rtol=0, atol=0)
        offset += I * width
    offset = 0
    for j0 in range(0, H, u):  # block of units j0 … j0 + n: columns gate·n + k hold W_hh row gate·H + j0 + k
        n = min(u, H - j0)
        panel = hh[offset:offset + H * 4 * n].view(H, 4, n)
        for gate in range(4):
            torch.testing.assert_close(panel[:, gate], w_hh[gate * H + j0:gate * H + j0 + n].t(), rtol=0, atol=0)
        offset += H * 4 * n


def test_compiled_big_float32_weights_take_onednn_packed_product(built, monkeypatch):
    """Where brgemm does not run, W_hh and W_ih of ≥ compiled.PACKED_MIN_VALUES values in float32: each step's GEMM,
    and the input part of enough rows (in blocks), are oneDNN's on the prepacked weights."""
    monkeypatch.setenv("LSTM_VIZ_NO_BRGEMM", "1")
    torch.manual_seed(7)
    ref = torch.nn.LSTM(300, 256, bidirectional=True).eval()
    assert compiled.packs(ref.weight_hh_l0) and compiled.packs(ref.weight_ih_l0)
    ours, x = InstrumentedLSTM.from_torch(ref), torch.randn(100, 3, 300)
    assert x.shape[0] * x.shape[1] >= compiled.INPUT_ROWS_MIN
    monkeypatch.setattr(compiled, "INPUT_BLOCK_VALUES", 1024 * 100)  # several blocks, the last one short
    took, input_part_into = [], compiled.input_part_into
    monkeypatch.setattr(compiled, "input_part_into", lambda *args: took.append(input_part_into(*args)) or took[-1])
    with torch.no_grad():
        want_out, (want_h, want_c) = ref(x)
        got, reference = ours.trace(x, engine="compiled"), ours.trace(x, engine="stepwise")
    assert took == [True, True]  # both directions' input parts by oneDNN
    tol = TOLERANCE[torch.float32]
    for a, b in ((got.output, want_out), (got.h_n, want_h), (got.c_n, want_c)):
        assert max_err(a, b) <= tol
    for q in QUANTITIES:
        assert max_err(got.get(q), reference.get(q)) <= 10 * tol, q


def test_compiled_in_chunks_with_progress_equals_the_whole_trace(built):
    torch.manual_seed(5)
    model, x = InstrumentedLSTM(4, 16, num_layers=2, bidirectional=True), torch.randn(300, 2, 4)
    seen = []
    chunked = model.trace(x, engine="compiled", progress=seen.append)
    whole = model.trace(x, engine="compiled")
    assert seen[0] == 0.0 and seen[-1] == 1.0
    for q in QUANTITIES:
        torch.testing.assert_close(chunked.get(q), whole.get(q), rtol=0, atol=0)


def test_the_build_is_cached_and_named_by_its_source_and_flags(built):
    flags = compiled.cflags()
    name = compiled.extension_name(compiled.SOURCE.read_text(), flags)
    where = compiled.build_directory(name)
    assert (where / f"{name}.so").exists() and (where / "built").exists()
    assert "-ffp-contract=off" in flags  # c_t = f⊙c + i⊙g as two products and a sum, as torch rounds it
    assert compiled.extension_name("other source", flags) != name
    assert compiled.extension_name(compiled.SOURCE.read_text(), flags + ["-g"]) != name


# --- the fallback: always tested ------------------------------------------------------------


def test_the_fallback_runs_stepwise_and_says_why(monkeypatch):
    monkeypatch.setenv("LSTM_VIZ_NO_COMPILE", "1")
    assert not compiled.available()
    assert compiled.unavailable_reason() == "LSTM_VIZ_NO_COMPILE is set"
    torch.manual_seed(6)
    ref = torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True, dtype=torch.float64).eval()
    model, x = InstrumentedLSTM.from_torch(ref), torch.randn(7, 2, 3, dtype=torch.float64)
    got, reference = model.trace(x, engine="compiled"), model.trace(x, engine="stepwise")
    assert got.engine == "stepwise (compiled cell unavailable: LSTM_VIZ_NO_COMPILE is set; slower)"
    for q in QUANTITIES:  # the very same computation
        torch.testing.assert_close(got.get(q), reference.get(q), rtol=0, atol=0)
    want_out, (want_h, want_c) = ref(x)
    for a, b in ((got.output, want_out), (got.h_n, want_h), (got.c_n, want_c)):
        assert max_err(a, b) <= TOLERANCE[torch.float64]


def test_a_build_that_cannot_run_is_never_fatal(monkeypatch, tmp_path):
    """No compiler: `_load` says so in one line, and nothing is raised."""
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))  # no cached build to load
    monkeypatch.setenv("CXX", "no-such-compiler-here")
    assert compiled._load() == "no C++ compiler (no-such-compiler-here) on PATH"


def test_a_failed_build_keeps_a_one_line_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_EXTENSIONS_DIR", str(tmp_path))
    broken = tmp_path / "broken.cpp"
    broken.write_text("this is not C++;\n")
    monkeypatch.setattr(compiled, "SOURCE", broken)
    monkeypatch.setattr(compiled, "BUILD_TIMEOUT_S", 120)
    reason = compiled._load()
    assert reason is not None and reason.startswith("its build failed (")
    assert "\n" not in reason and len(reason) < 250


def test_an_unexpected_error_while_loading_is_a_reason_too(monkeypatch):
    def unwritable(*args):
        raise PermissionError("[Errno 13] Permission denied: '/nowhere'")

    monkeypatch.delenv("LSTM_VIZ_NO_COMPILE", raising=False)
    monkeypatch.setattr(compiled, "_state", {})
    monkeypatch.setattr(compiled, "_load", unwritable)
    assert not compiled.available()
    assert compiled.unavailable_reason() == (
        "its build failed (PermissionError: [Errno 13] Permission denied: '/nowhere')")


def test_compiled_on_another_dtype_falls_back_and_says_why():
    model = InstrumentedLSTM(3, 4, dtype=torch.bfloat16)
    tr = model.trace(torch.randn(5, 2, 3, dtype=torch.bfloat16), engine="compiled")
    assert tr.engine == "stepwise (compiled cell unavailable: it runs float32 and float64 only, not bfloat16; slower)"


def test_the_fallback_in_a_fresh_process_with_the_variable_set():
    """As an operator sets it: the process never builds, traces by the stepwise engine and reports it."""
    code = ("import json, torch, lstm_viz\n"
            "from lstm_viz import compiled, cost\n"
            "tr = lstm_viz.trace(torch.nn.LSTM(3, 4), torch.randn(5, 2, 3), engine='compiled')\n"
            "r = cost.rates('cpu', torch.float32)\n"
            "print(json.dumps([tr.engine, compiled._state.get('reason', 'never asked'), r.compiled_step,"
            " cost.engines_here(r)]))\n")
    env = {**os.environ, "LSTM_VIZ_NO_COMPILE": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120, check=True)
    engine, state, step, engines = json.loads(done.stdout.strip().splitlines()[-1])
    assert engine == "stepwise (compiled cell unavailable: LSTM_VIZ_NO_COMPILE is set; slower)"
    assert state == "never asked"  # no build was tried
    assert step is None
    assert engines == ["fused", "stepwise"]


def test_auto_never_picks_compiled_where_it_is_unavailable(monkeypatch):
    monkeypatch.setenv("LSTM_VIZ_NO_COMPILE", "1")
    r = cost.calibrate()
    assert r.compiled_step is None
    assert cost.engines_here(r) == ("fused", "stepwise")
    monkeypatch.setitem(cost._calibrated, ("cpu", torch.float32), r)
    for T, B, I, H, L in [(64, 1, 8, 32, 1), (256, 16, 64, 256, 2), (1024, 1, 8, 64, 2), (256, 64, 256, 1024, 2),
                          (4, 1, 1, 1, 1)]:
        cfg = InstrumentedLSTM(I, H, L).config
        assert cost.faster_engine(cfg, T, B) in ("fused", "stepwise")
        # asked for by name, its estimate is the stepwise engine's, which is what runs
        assert cost.trace_seconds(cfg, T, B, "compiled", r) == cost.trace_seconds(cfg, T, B, "stepwise", r)


def test_auto_chooses_among_all_three_where_compiled_is_built(built):
    r = cost.calibrate()
    assert r.compiled_step is not None and r.compiled_step > 0 and r.compiled_value > 0
    assert set(cost.engines_here(r)) == set(ENGINES) == {"stepwise", "fused", "compiled"}
    cfg = InstrumentedLSTM(8, 32).config
    estimates = {engine: cost.trace_seconds(cfg, 64, 1, engine, r) for engine in ENGINES}
    assert cost._faster(cfg, 64, 1, r) == min(estimates, key=estimates.get)
