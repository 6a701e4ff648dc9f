"""The explanations beside the pictures carry the run's own numbers, and each tab shows its own, following the
sliders and the inspected unit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from app_support import assert_clean, open_tab, reference_trace, rendered, report, start

from lstm_viz import InstrumentedLSTM, analysis, escape, explain
from lstm_viz.equations import step_terms
from lstm_viz.figures import cell_bound
from lstm_viz.parity import check_trace
from lstm_viz.pipeline import AppConfig

pytestmark = pytest.mark.usefixtures("one_thread")


def traced(dtype=torch.float32, forget_bias: float = 0.0, **options):
    torch.manual_seed(3)
    model = InstrumentedLSTM(3, 5, dtype=dtype, **options).eval()
    with torch.no_grad():  # PyTorch's gate order i, f, g, o: rows hidden..2·hidden are f's
        model.bias_ih_l0[5:10] += forget_bias
    x = torch.randn(11, 2, 3, dtype=dtype)
    return model, x, model.trace(x)


def test_the_cell_scale_quotes_the_largest_c_of_the_layer_shown():
    _, _, trace = traced(num_layers=2)
    for layer in (0, 1):
        largest = trace.c[layer, 0].abs().max().item()
        text = explain.explorer_guide(cell_bound(trace, layer, 0))
        assert f"C, ±{largest:.3g} from data" in text
        assert f"full red is +{largest:.3g}" in text
    assert cell_bound(trace, 0, 0) != cell_bound(trace, 1, 0)  # so the two texts above differ
    for name in ("forget gate", "input gate", "output gate", "candidate", "cell state", "hidden state",
                 "orange box", "cell diagram"):
        assert name in text
    assert "**reverse** direction" not in text
    assert "the step before t is t+1" in explain.explorer_guide(1.0, direction=1)


@pytest.mark.parametrize("direction", [0, 1])
def test_the_time_constant_is_minus_one_over_log_mean_f_of_the_unit(direction):
    _, _, trace = traced(forget_bias=1.5, bidirectional=True)
    batch = 1
    for unit in range(5):
        mean_f = trace.f[0, direction, :, batch, unit].double().mean().item()
        tau = -1 / math.log(mean_f)
        ledger = analysis.memory_ledger(trace, 0, direction, batch)
        text = explain.ledger_words(ledger["time_constant"], unit, direction)
        assert f"Unit {unit} (red): mean f = {mean_f:.3f} → τ = {tau:.1f} steps" in text
    assert f"f = 0.9 on average → about {-1 / math.log(0.9):.1f} steps" in text  # the worked example, computed
    assert ("Cₜ₊₁" if direction else "Cₜ₋₁") in text  # the reverse direction keeps what step t+1 left


def test_a_time_constant_with_f_stuck_at_one_or_zero_says_so():
    assert "never fades" in explain.ledger_words(np.array([math.inf]), 0, 0)
    assert "forgets at once" in explain.ledger_words(np.array([0.0]), 0, 0)
    for tau in (0.3, 2.0, 40.0):
        assert explain.time_constant(explain.mean_forget(tau)) == pytest.approx(tau)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_parity_words_quote_the_report(dtype):
    model, x, trace = traced(dtype=dtype, num_layers=2)
    parity = check_trace(model, x, trace)
    name = str(dtype).removeprefix("torch.")
    text = explain.parity_words(parity, name, trace.engine, "my [file](http://x.y).csv")
    for diff in (parity.cell_diff, parity.torch_diff):
        assert (f"to {diff:.1e}" if diff else "exactly") in text
    assert f"at {trace.seq_len} of {trace.seq_len} steps match the reference cell" in text
    assert f"tolerance {parity.tolerance:.0e}" in text
    assert explain.TOLERANCE_WHY[name] in text
    assert escape.markdown("my [file](http://x.y).csv") in text
    assert "](http" not in text


def test_the_parity_words_say_what_failed_and_by_how_much():
    model, x, trace = traced()
    trace.h[0, 0, 4, 1, 2] += 0.004
    parity = check_trace(model, x, trace)
    text = explain.parity_words(parity, "float32", trace.engine, "random")
    assert not parity.ok
    assert text.startswith("**Checked on this run:** parity fails")
    assert f"by up to {parity.cell_diff:.1e}" in text
    assert "h at layer 0, direction 0, step 4, batch 1, unit 2" in text


def test_the_saturation_words_quote_this_runs_shares_past_the_thresholds():
    _, _, trace = traced(forget_bias=3.0)
    for low, high in ((0.1, 0.9), (0.3, 0.7)):
        text = explain.saturation_why(low, high, analysis.saturation(trace, low, high))
        for gate in ("f", "i", "o"):
            values = trace.get(gate).numpy()
            share = ((values < low) | (values > high)).mean()
            assert f"{gate} {share:.0%}" in text
        assert f"below {low:g} or above {high:g}" in text


def test_the_step_reading_uses_the_equation_panels_numbers():
    _, _, trace = traced()
    terms = step_terms(trace, 0, 0, 6, 3, 1)
    text = explain.step_reading(terms, direction=0, projected=False)
    f, i, c_prev = trace.f[0, 0, 6, 1, 3].item(), trace.i[0, 0, 6, 1, 3].item(), trace.c[0, 0, 5, 1, 3].item()
    assert f"keeps {f:.0%} of Cₜ₋₁ = {c_prev:.3f}".replace("-", "−") in text
    assert f"→ {f * c_prev:.3f}".replace("-", "−") in text
    assert f"writes {i:.0%}" in text
    assert f"hₜ = {trace.h[0, 0, 6, 1, 3].item():.3f}".replace("-", "−") in text


# --- in the app -------------------------------------------------------------------------------------------------

def captions(at) -> list[str]:
    assert_clean(at)
    return [rendered(c.value) for c in at.caption]


def one(texts: list[str], fragment: str) -> str:
    found = [t for t in texts if fragment in t]
    assert len(found) == 1, (fragment, texts)
    return found[0]


@pytest.mark.app
def test_the_step_tab_has_a_collapsed_guide_quoting_the_layers_c_bound():
    at = start(num_layers=2, layer=1)
    guide = [e for e in at.expander if e.label == explain.EXPLORER_LABEL]
    assert len(guide) == 1
    assert not guide[0].proto.expanded  # collapsed until asked for
    trace = reference_trace(AppConfig(num_layers=2))
    text = one([m.value for m in guide[0].markdown], "The six quantities")
    assert f"C, ±{trace.c[1, 0].abs().max().item():.3g} from data" in text
    checked = one(captions(at), "Checked on this run")
    assert f"{AppConfig().seq_len} of {AppConfig().seq_len} steps" in checked
    assert at.number_input(key="hidden_size").help == explain.HELP["hidden_size"]
    assert at.number_input(key="unit").help == explain.HELP["unit"]


@pytest.mark.app
def test_the_saturation_captions_follow_the_sliders_and_the_unit():
    at = open_tab(start(), "saturation")
    before = one(captions(at), "Near (0, 0)")
    assert "between 0.1 and 0.9" in before
    at.slider(key="sat_low").set_value(0.3)
    at.slider(key="sat_high").set_value(0.6).run()
    reading, why = one(captions(at), "Each point is"), one(captions(at), "Near (0, 0)")
    assert "below 0.3 (nearly shut)" in reading
    assert "above 0.6 (nearly open)" in reading
    trace = reference_trace(AppConfig())
    f = trace.f[0, 0].numpy()
    assert f"f {((f < 0.3) | (f > 0.6)).mean():.0%}" in why
    assert why != before
    for unit in (0, 5):
        at.number_input(key="unit").set_value(unit).run()
        tau = -1 / math.log(trace.f[0, 0, :, 0, unit].double().mean().item())
        assert f"Unit {unit} (red): mean f" in one(captions(at), "time constant")
        assert f"τ = {tau:.1f} steps" in one(captions(at), "time constant")


@pytest.mark.app
def test_the_unit_tab_caption_follows_the_view():
    at = open_tab(start(), "unit")
    assert "the orange line is step t = 0" in one(captions(at), "three scales")
    report(at, t=7, unit=4)
    text = one(captions(at), "three scales")
    assert text.startswith("Unit 4 over time, batch element 0")
    assert "step t = 7" in text
