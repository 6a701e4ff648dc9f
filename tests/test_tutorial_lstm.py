"""A tutorial-style LSTM (one nn.Linear per gate on torch.cat((x, h), 1)) loads as an exact nn.LSTM: found anywhere in a
checkpoint under the common gate spellings, traced step for step like its own loop, refused with clear messages, and
explained in the Shapes tab."""

from __future__ import annotations

import io
import re

import pytest
import torch
from app_support import assert_clean, open_tab, rendered, start
from torch import nn

from lstm_viz import InstrumentedLSTM, LSTMConfig, shapes
from lstm_viz.config import GATE_ORDER
from lstm_viz.loading import WeightsError, list_lstms, load_lstm, tutorial_origin
from lstm_viz.tutorial_lstm import GATE_WORDS, TUTORIAL_ORDER

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny LSTMs: see conftest

CLASSIC = {"f": "fl", "i": "il", "o": "ol", "g": "Cl"}
SPELLINGS = [
    CLASSIC,
    {"f": "forget", "i": "input", "o": "output", "g": "cell"},
    {"f": "W_f", "i": "W_i", "o": "W_o", "g": "W_C"},
    {"f": "forget_gate", "i": "input_gate", "o": "output_gate", "g": "candidate_gate"},
    {"f": "f_gate", "i": "i_gate", "o": "o_gate", "g": "g_gate"},
    {"f": "F", "i": "I", "o": "O", "g": "G"},
    {"f": "forgetgate", "i": "ingate", "o": "outgate", "g": "cellgate"},
]


class GateLinearLSTM(nn.Module):
    """One nn.Linear per gate on torch.cat((x_t, h), 1), stepped over a batch-first input by its own loop (indexing
    each step, so batch 1 works too)."""

    def __init__(self, input_size: int, hidden_size: int, names: dict[str, str] = CLASSIC, bias: bool = True,
                 dtype: torch.dtype = torch.float32):
        super().__init__()
        self.hidden_size, self.names = hidden_size, names
        for name in names.values():
            setattr(self, name, nn.Linear(input_size + hidden_size, hidden_size, bias=bias, dtype=dtype))

    def gate(self, g: str, combined: torch.Tensor) -> torch.Tensor:
        return getattr(self, self.names[g])(combined)

    def step(self, x, h, c):
        combined = torch.cat((x, h), 1)  # (B, I + H)
        f = torch.sigmoid(self.gate("f", combined))
        i = torch.sigmoid(self.gate("i", combined))
        o = torch.sigmoid(self.gate("o", combined))
        g = torch.tanh(self.gate("g", combined))
        c = f * c + i * g  # c_t = f ⊙ c_{t−1} + i ⊙ g
        return o * torch.tanh(c), c  # h_t = o ⊙ tanh(c_t)

    @torch.no_grad()
    def forward(self, inputs):
        """inputs (B, T, I) -> h and c at every step, each (B, T, H)."""
        B = inputs.shape[0]
        h = c = inputs.new_zeros(B, self.hidden_size)
        hs, cs = [], []
        for t in range(inputs.shape[1]):
            h, c = self.step(inputs[:, t, :], h, c)
            hs.append(h)
            cs.append(c)
        return torch.stack(hs, 1), torch.stack(cs, 1)


def squeeze_loop(module: GateLinearLSTM, inputs):
    """The tutorial's loop as written: each step's input through torch.squeeze(inputs[:, i:i+1, :])."""
    h = c = inputs.new_zeros(inputs.shape[0], module.hidden_size)
    for i in range(inputs.shape[1]):
        h, c = module.step(torch.squeeze(inputs[:, i:i + 1, :]), h, c)
    return h, c


def saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def nested(module: nn.Module, prefix: str) -> dict:
    return {prefix + key: value for key, value in module.state_dict().items()}


def assert_runs_like(model: InstrumentedLSTM, module: GateLinearLSTM, batch: int = 3, steps: int = 6) -> None:
    """trace() and forward() of the loaded model give the module's own h and c at every step."""
    dtype = next(module.parameters()).dtype
    atol = 1e-12 if dtype == torch.float64 else 1e-6
    assert model.weight_ih_l0.dtype == dtype
    assert not model.training
    x = torch.randn(batch, steps, model.input_size, dtype=dtype)  # batch-first, as the module's loop takes it
    hs, cs = module(x)
    trace = model.trace(x.transpose(0, 1))  # nn.LSTM's default layout: (seq, batch, features)
    torch.testing.assert_close(trace.h[0, 0], hs.transpose(0, 1), atol=atol, rtol=0)
    torch.testing.assert_close(trace.c[0, 0], cs.transpose(0, 1), atol=atol, rtol=0)
    with torch.no_grad():
        output, (h_n, c_n) = model(x.transpose(0, 1))
    torch.testing.assert_close(output, hs.transpose(0, 1), atol=atol, rtol=0)
    torch.testing.assert_close((h_n[0], c_n[0]), (hs[:, -1], cs[:, -1]), atol=atol, rtol=0)


# --- loading ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("names", SPELLINGS, ids=lambda n: n["f"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_each_spelling_loads_as_the_modules_own_loop(names, dtype):
    torch.manual_seed(0)
    module = GateLinearLSTM(4, 5, names, dtype=dtype)
    model = load_lstm(saved(module.state_dict()))
    assert model.config == LSTMConfig(4, 5)
    assert tutorial_origin(model).names == tuple(names[g] for g in GATE_ORDER)
    assert_runs_like(model, module)


@pytest.mark.parametrize("where", ["model.lstm.", "encoder.cell."])
def test_nested_under_a_prefix_inside_a_checkpoint(where, tmp_path):
    torch.manual_seed(1)
    module = GateLinearLSTM(3, 7, SPELLINGS[1])
    head = nn.Linear(7, 2)
    state = nested(module, where) | nested(head, "model.head.")
    path = tmp_path / "checkpoint.pt"
    path.write_bytes(saved({"epoch": 4, "state_dict": state, "optimizer": {"lr": 0.1}}))
    location = f"state_dict/{where}"
    found = list_lstms(path)
    assert found == {location: LSTMConfig(3, 7)}
    for prefix in (None, location, where.rstrip("."), "state_dict"):
        model = load_lstm(path, prefix=prefix)
        assert tutorial_origin(model).location == location
        assert_runs_like(model, module, batch=2)


def test_listed_beside_an_nn_lstm_with_their_locations():
    torch.manual_seed(2)
    lstm, module = nn.LSTM(3, 4), GateLinearLSTM(3, 6)
    data = saved({"encoder": nested(lstm, "rnn."), "decoder": nested(module, "cell.")})
    assert list_lstms(data) == {"encoder/rnn.": LSTMConfig(3, 4), "decoder/cell.": LSTMConfig(3, 6)}
    assert tutorial_origin(load_lstm(data, prefix="encoder/rnn.")) is None
    assert_runs_like(load_lstm(data, prefix="decoder"), module)


@pytest.mark.parametrize("with_bias", [(), ("f",), ("i", "g", "o")], ids=["none", "one", "three"])
def test_linears_without_bias(with_bias):
    torch.manual_seed(3)
    module = GateLinearLSTM(2, 3, bias=False)
    for gate in with_bias:  # a Linear with a bias among those without: the others add 0
        setattr(module, CLASSIC[gate], nn.Linear(5, 3))
    model = load_lstm(saved(module.state_dict()))
    assert model.bias == bool(with_bias)
    if with_bias:
        H = 3
        for k, gate in enumerate(GATE_ORDER):
            want = getattr(module, CLASSIC[gate]).bias if gate in with_bias else torch.zeros(H)
            torch.testing.assert_close(model.bias_ih_l0[k * H:(k + 1) * H], want.detach(), atol=0, rtol=0)
        assert not model.bias_hh_l0.any()
    assert_runs_like(model, module, batch=1)


def test_the_conversion_is_exact():
    torch.manual_seed(4)
    I, H = 3, 2  # noqa: E741
    module = GateLinearLSTM(I, H, dtype=torch.float64)
    model = load_lstm(saved(module.state_dict()))
    for k, gate in enumerate(GATE_ORDER):  # nn.LSTM's rows: i, f, g, o
        linear = getattr(module, CLASSIC[gate])
        rows = slice(k * H, (k + 1) * H)
        assert torch.equal(model.weight_ih_l0[rows], linear.weight[:, :I])
        assert torch.equal(model.weight_hh_l0[rows], linear.weight[:, I:])
        assert torch.equal(model.bias_ih_l0[rows], linear.bias)
    assert torch.equal(model.bias_hh_l0, torch.zeros(4 * H, dtype=torch.float64))


# --- refusals ------------------------------------------------------------------------------------------------------


def test_inconsistent_shapes_are_refused_naming_key_and_shapes():
    state = GateLinearLSTM(3, 4).state_dict()
    state["Cl.weight"] = torch.randn(4, 8)
    with pytest.raises(WeightsError, match=re.escape("inconsistent shapes: model.Cl.weight is (4, 8) but "
                                                     "model.fl.weight is (4, 7)")):
        load_lstm(saved({"model." + k: v for k, v in state.items()}))
    state["Cl.weight"] = torch.randn(4, 7)
    state["il.bias"] = torch.randn(5)
    with pytest.raises(WeightsError, match=re.escape("wrong shape for il.bias: expected (4,) (hidden_size), found "
                                                     "(5,)")):
        list_lstms(saved(state))


def test_a_square_weight_leaves_no_input_columns():
    state = {f"{name}.weight": torch.randn(4, 4) for name in CLASSIC.values()}
    with pytest.raises(WeightsError, match=re.escape("fl.weight has shape (4, 4): a tutorial-style gate's Linear is "
                                                     "(hidden_size, input_size + hidden_size)")):
        load_lstm(saved(state))


def test_a_missing_gate_is_named():
    state = nested(GateLinearLSTM(3, 4), "net.")
    del state["net.Cl.weight"], state["net.Cl.bias"]
    message = r"'net\.' holds fl\.weight, il\.weight, ol\.weight of a tutorial-style LSTM .* but not the candidate " \
              r"gate's \(looked for cl\.weight or gl\.weight"
    with pytest.raises(WeightsError, match=r"^no LSTM weights found: .*" + message):
        list_lstms(saved(state))
    with pytest.raises(WeightsError, match=r"^no LSTM at prefix 'net'; " + message):
        load_lstm(saved(state | nested(nn.LSTM(2, 3), "other.")), prefix="net")


def test_two_names_for_one_gate_are_ambiguous():
    state = GateLinearLSTM(3, 4, SPELLINGS[5]).state_dict()  # F, I, O, G
    state["C.weight"], state["C.bias"] = state["G.weight"], state["G.bias"]
    with pytest.raises(WeightsError, match=r"ambiguous tutorial-style LSTM at the top level: G\.weight, C\.weight"):
        load_lstm(saved(state))


def test_nan_and_forged_tensors_are_refused_before_conversion():
    state = GateLinearLSTM(3, 4).state_dict()
    state["ol.weight"] = state["ol.weight"].clone()
    state["ol.weight"][0, 0] = float("nan")
    with pytest.raises(WeightsError, match=r"^ol\.weight has 1 NaN/Inf value of 28"):
        load_lstm(saved(state))
    state["ol.weight"] = torch.zeros(1).expand(4, 7)  # stride 0: a few bytes in the file
    with pytest.raises(WeightsError, match=r"claims shape \(4, 7\) but holds only 4 bytes"):
        load_lstm(saved(state))


def test_unrelated_layers_are_not_taken_for_gates():
    head = {"input.weight": torch.randn(8, 3), "output.weight": torch.randn(2, 8), "out.weight": torch.randn(2, 8)}
    with pytest.raises(WeightsError, match="^no LSTM weights found"):
        list_lstms(saved(head))


# --- the tutorial's squeeze pitfall ------------------------------------------------------------------------------


def test_the_tutorials_squeeze_loses_the_batch_axis_at_batch_1():
    torch.manual_seed(5)
    module = GateLinearLSTM(3, 4)
    x = torch.randn(2, 5, 3)
    h, c = squeeze_loop(module, x)  # batch 2: squeeze removes only the step axis
    hs, cs = module(x)
    torch.testing.assert_close((h, c), (hs[:, -1], cs[:, -1]), atol=0, rtol=0)
    one = x[:1]
    assert torch.squeeze(one[:, 0:1, :]).shape == (3,)  # (input_size,): the batch axis went too
    assert one[:, 0, :].shape == (1, 3)  # indexing the step keeps it
    with pytest.raises(IndexError, match="Dimension out of range"):  # torch.cat((x, h), 1) of a 1-D x
        squeeze_loop(module, one)
    assert module(one)[0].shape == (1, 5, 4)


# --- the Shapes view ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("names, bias", [(CLASSIC, True), (SPELLINGS[2], True), (CLASSIC, False)])
def test_the_mapping_table_states_the_rows_the_conversion_uses(names, bias):
    torch.manual_seed(6)
    I, H = 3, 5  # noqa: E741
    module = GateLinearLSTM(I, H, names, bias=bias)
    tensors = module.state_dict()
    model = load_lstm(saved(tensors))
    converted = model.state_dict()
    rows = shapes.tutorial_mapping(model.config, tutorial_origin(model))
    table = shapes.tutorial_table(rows)
    assert [r.name for r in rows if r.name.endswith(".weight")] == [f"{names[g]}.weight" for g in GATE_ORDER]
    assert len(rows) == (8 if bias else 4)
    for r in rows:
        a, b = r.rows
        source = tensors[r.name]
        if r.input_columns is not None:
            (x0, x1), (h0, h1) = r.input_columns, r.hidden_columns
            assert torch.equal(converted["weight_ih_l0"][a:b], source[:, x0:x1])
            assert torch.equal(converted["weight_hh_l0"][a:b], source[:, h0:h1])
            assert (x1 - x0, h1 - h0) == (I, H)
            line = next(line for line in table.splitlines() if line.startswith(f"| `{r.name}`"))
            assert f"`weight_ih_l0[{a}:{b}]` = `{r.name}[:, {x0}:{x1}]`" in line
            assert f"`weight_hh_l0[{a}:{b}]` = `{r.name}[:, {h0}:{h1}]`" in line
        else:
            assert torch.equal(converted["bias_ih_l0"][a:b], source)
            assert not converted["bias_hh_l0"][a:b].any()
            line = next(line for line in table.splitlines() if line.startswith(f"| `{r.name}`"))
            assert f"`bias_ih_l0[{a}:{b}]` = `{r.name}` · `bias_hh_l0[{a}:{b}]` = 0" in line
    # the rows cover nn.LSTM's 4H rows once each, in its gate order
    spans = [r.rows for r in rows if r.input_columns is not None]
    assert spans == [(k * H, (k + 1) * H) for k in range(4)]


def test_the_intro_names_the_loaded_linears_in_the_tutorials_order():
    model = load_lstm(saved(GateLinearLSTM(2, 3, SPELLINGS[1]).state_dict()))
    intro = shapes.tutorial_intro(model.config, tutorial_origin(model))
    names = ", ".join(f"`{SPELLINGS[1][g]}`" for g in TUTORIAL_ORDER)
    assert f"These weights were loaded from one**: its Linears {names}" in intro
    assert "I = 2 and H = 3" in intro


@pytest.mark.app
def test_the_shapes_tab_explains_the_mapping_and_the_pitfalls():
    at = start(tab="shapes", input_size=4, hidden_size=6)
    assert_clean(at)
    expander = next(e for e in at.expander if e.label.startswith("Written the tutorial's LSTM class yourself?"))
    text = "\n".join(m.value for m in expander.markdown)
    for k, gate in enumerate(GATE_ORDER):
        assert f"`{CLASSIC[gate]}.weight` ({gate}, {GATE_WORDS[gate]}) | `(6,\u00a010)` = (H,\u00a0I+H)" in text
        assert f"`weight_ih_l0[{6 * k}:{6 * (k + 1)}]` = `{CLASSIC[gate]}.weight[:, 0:4]`" in text
    assert "torch.squeeze(inputs[:, i:i+1, :])" in text
    assert "`cell_size` is never used" in text
    assert "(seq=5, batch=3, features=10)" in text
    codes = [c.value for c in expander.code]
    assert "x_t = inputs[:, i, :]  # (batch, input_size) for every batch size" in codes
    assert any("batch_first=True" in code for code in codes)


@pytest.mark.app
def test_uploading_a_tutorial_checkpoint():
    torch.manual_seed(7)
    module = GateLinearLSTM(3, 5, SPELLINGS[1])
    at = start(model_source="uploaded weights")
    at.file_uploader(key="weights_upload").upload("tutorial.pt", saved({"model": nested(module, "lstm.")}))
    at.run()
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    caption = next(rendered(c.value) for c in at.caption if c.value.startswith("Loaded"))
    assert "tutorial-style module (`forget`, `input`, `output`, `cell`) converted to nn.LSTM's layout: " \
           "`nn.LSTM(3, 5)`" in caption
    badge = next(m.value for m in at.markdown if "parity: max |Δ|" in m.value)
    assert "green" in badge


@pytest.mark.app
def test_the_shapes_tab_names_the_uploaded_linears():
    torch.manual_seed(8)
    module = GateLinearLSTM(2, 3, SPELLINGS[2])  # W_f, W_i, W_o, W_C
    at = start(model_source="uploaded weights")
    at.file_uploader(key="weights_upload").upload("tutorial.pt", saved(module.state_dict()))
    at.run()
    open_tab(at, "shapes")
    assert_clean(at)
    expander = next(e for e in at.expander if e.label.startswith("Written the tutorial's LSTM class yourself?"))
    text = "\n".join(m.value for m in expander.markdown)
    assert "These weights were loaded from one**: its Linears `W_f`, `W_i`, `W_o`, `W_C`" in text
    nowrap = "\u00a0"
    assert f"| `W_C.weight` (g, candidate) | `(3,{nowrap}5)` = (H,{nowrap}I+H) | `weight_ih_l0[6:9]` = " \
           "`W_C.weight[:, 0:2]`" in text
