"""Shape semantics: every tensor an LSTM takes, holds and returns, with each axis named."""

from __future__ import annotations

from dataclasses import dataclass

from .config import LSTMConfig
from .tutorial_lstm import GATE_WORDS, TUTORIAL_ORDER, TensorMapping, TutorialOrigin, tensor_map

# The classic example from the PyTorch docs, and the misreading it invites.
CLASSIC_PRESET = dict(input_size=10, hidden_size=20, num_layers=2, seq_len=5, batch_size=3, proj_size=0,
                      bidirectional=False, batch_first=False, bias=True)
CLASSIC_EXPLANATION = (
    "`rnn = nn.LSTM(10, 20, 2)` with `input = torch.randn(5, 3, 10)`: the first axis is the **sequence** "
    "(5 steps), the second the **batch** (3 sequences), the last the **features** (10 per step). "
    "It is not 5 samples of 3 steps: nn.LSTM is time-major unless `batch_first=True`. "
    "`output` is (5, 3, 20): h of the last layer at every step. `h_n` and `c_n` are (2, 3, 20): "
    "the final state of each of the 2 layers, for each of the 3 sequences."
)


@dataclass(frozen=True)
class TensorShape:
    """One tensor: its name, shape, the meaning of each axis, and a note."""

    name: str
    shape: tuple[int, ...]
    axes: tuple[str, ...]
    note: str = ""

    @property
    def shape_text(self) -> str:
        return "(" + ", ".join(map(str, self.shape)) + ("," if len(self.shape) == 1 else "") + ")"

    @property
    def axes_text(self) -> str:
        return "(" + ", ".join(self.axes) + ")"


def io_shapes(cfg: LSTMConfig, seq_len: int, batch_size: int, batched: bool = True) -> list[TensorShape]:
    """The input, initial states, output and final states, as nn.LSTM takes and returns them."""
    T, B, D, Hr, H = seq_len, batch_size, cfg.num_directions, cfg.real_hidden_size, cfg.hidden_size
    LD = cfg.num_layers * D
    h_axis = "proj_size" if cfg.proj_size else "hidden_size"
    out_features = f"{D}·{h_axis}" if D > 1 else h_axis
    if not batched:
        seq_first = [(T, "seq")]
    elif cfg.batch_first:
        seq_first = [(B, "batch"), (T, "seq")]
    else:
        seq_first = [(T, "seq"), (B, "batch")]
    state_lead = [(LD, "num_layers·num_directions")] + ([(B, "batch")] if batched else [])

    def make(name, lead, last, note=""):
        return TensorShape(name, tuple(n for n, _ in lead) + (last[0],), tuple(a for _, a in lead) + (last[1],),
                           note)

    layout = "batch_first=True: batch leads" if cfg.batch_first and batched else "time-major: seq leads"
    return [
        make("input", seq_first, (cfg.input_size, "input_size"), f"{layout}; unbatched input drops the batch axis"
             if batched else "unbatched: no batch axis"),
        make("h_0", state_lead, (Hr, h_axis), "initial hidden state, zeros if not given"),
        make("c_0", state_lead, (H, "hidden_size"), "initial cell state, zeros if not given"),
        make("output", seq_first, (D * Hr, out_features),
             "last layer's h_t at every step" + (", [forward, reverse] concatenated" if D > 1 else "")),
        make("h_n", state_lead, (Hr, h_axis), "final h of every layer and direction, layer-major"),
        make("c_n", state_lead, (H, "hidden_size"), "final c of every layer and direction"),
    ]


def step_shapes(cfg: LSTMConfig, batch_size: int, layer: int = 0) -> list[TensorShape]:
    """What one step of `layer` reads and computes."""
    B, H, Hr = batch_size, cfg.hidden_size, cfg.real_hidden_size
    i_k = cfg.layer_input_size(layer)
    x_name = "x_t" if layer == 0 else f"x_t of layer {layer} (= layer {layer - 1}'s h_t)"
    rows = [
        TensorShape(x_name, (B, i_k), ("batch", "features"), slice_expression(cfg) if layer == 0 else ""),
        TensorShape("h_{t−1}", (B, Hr), ("batch", "proj_size" if cfg.proj_size else "hidden_size")),
        TensorShape("c_{t−1}", (B, H), ("batch", "hidden_size")),
        TensorShape("gates f_t, i_t, g_t, o_t", (B, H), ("batch", "hidden_size"), "each; computed as one (B, 4H)"),
        TensorShape("c_t", (B, H), ("batch", "hidden_size")),
    ]
    if cfg.proj_size:
        rows.append(TensorShape("o_t ⊙ tanh(c_t)", (B, H), ("batch", "hidden_size"), "before projection"))
    rows.append(TensorShape("h_t", (B, Hr), ("batch", "proj_size" if cfg.proj_size else "hidden_size")))
    return rows


def weight_shapes(cfg: LSTMConfig) -> list[TensorShape]:
    """Every parameter under nn.LSTM's name, with its axes explained."""
    rows = []
    for layer in range(cfg.num_layers):
        shapes = cfg.param_shapes(layer)
        for direction in range(cfg.num_directions):
            for name in cfg.param_names(layer, direction):
                kind = name.split("_l")[0]
                in_axis = "input_size" if layer == 0 else "features from the layer below"
                axes = {
                    "weight_ih": ("4·hidden_size (i, f, g, o)", in_axis),
                    "weight_hh": ("4·hidden_size (i, f, g, o)", "proj_size" if cfg.proj_size else "hidden_size"),
                    "bias_ih": ("4·hidden_size (i, f, g, o)",),
                    "bias_hh": ("4·hidden_size (i, f, g, o)",),
                    "weight_hr": ("proj_size", "hidden_size"),
                }[kind]
                rows.append(TensorShape(name, shapes[kind], axes))
    return rows


def parameter_count(cfg: LSTMConfig) -> int:
    total = 0
    for row in weight_shapes(cfg):
        n = 1
        for s in row.shape:
            n *= s
        total += n
    return total


def slice_expression(cfg: LSTMConfig, t: int | str = "t") -> str:
    """How to index the input for step t: x[t] time-major, x[:, t] under batch_first."""
    return f"input[:, {t}]" if cfg.batch_first else f"input[{t}]"


def constructor_call(cfg: LSTMConfig) -> str:
    """The nn.LSTM(...) call that builds this config, naming only non-default options."""
    defaults = LSTMConfig(cfg.input_size, cfg.hidden_size)
    options = [f"{k}={v}" for k, v in cfg.to_dict().items()
               if k not in ("input_size", "hidden_size", "num_layers") and v != getattr(defaults, k)]
    return f"nn.LSTM({', '.join(map(str, [cfg.input_size, cfg.hidden_size, cfg.num_layers] + options))})"


def markdown_table(rows: list[TensorShape]) -> str:
    """Rows as a Markdown table: tensor, shape, axes, note."""
    lines = ["| tensor | shape | axes | note |", "| --- | --- | --- | --- |"]
    nowrap = "\u00a0"  # keep "(5, 3, 10)" on one line in a narrow column
    lines += [f"| `{r.name}` | `{r.shape_text.replace(' ', nowrap)}` | {r.axes_text} | {r.note} |" for r in rows]
    return "\n".join(lines)


# --- a tutorial-style LSTM (one nn.Linear per gate on torch.cat((x, h), 1)) and nn.LSTM's layout ------------------

TUTORIAL_PITFALLS = (  # (what goes wrong, in plain words; a line of code that does it right)
    ("**Batch of 1.** `torch.squeeze(inputs[:, i:i+1, :])` removes *every* axis of size 1: with one sequence the "
     "step's input becomes `(input_size,)` instead of `(1, input_size)`, and `torch.cat((input, h), 1)` fails. "
     "Index the step instead:", "x_t = inputs[:, i, :]  # (batch, input_size) for every batch size"),
    ("**`cell_size` is never used.** The cell state has `hidden_size` units (cₜ = f ⊙ cₜ₋₁ + i ⊙ g, all "
     "(batch, hidden_size)), so `cell_size` must equal `hidden_size`; nn.LSTM has no such argument:",
     "LSTM(input_size=10, cell_size=20, hidden_size=20)  # the same sizes as nn.LSTM(10, 20)"),
    ("**Which axis is the batch?** The example's comment calls `torch.randn(5, 3, 10)` (batch, steps, features), "
     "but nn.LSTM reads it as (seq=5, batch=3, features=10). The class's `loop(inputs)` takes (batch, steps, "
     "features), which nn.LSTM reads only with `batch_first=True`:",
     "nn.LSTM(10, 20, 2, batch_first=True)(torch.randn(3, 5, 10))  # batch 3, 5 steps, 10 features"),
)


def tutorial_mapping(cfg: LSTMConfig, origin: TutorialOrigin | None = None) -> list[TensorMapping]:
    """Where each tensor of a tutorial-style LSTM with `cfg`'s sizes goes in nn.LSTM's layer 0 (names from `origin`
    when the weights were loaded from one, else the classic fl, il, ol, Cl)."""
    return tensor_map(cfg.input_size, cfg.hidden_size, origin, cfg.bias)


def tutorial_table(rows: list[TensorMapping]) -> str:
    """The mapping as a Markdown table: tutorial tensor (and its gate), shape, and what it equals in nn.LSTM's layout.
    Three columns: the layout's column needs the width on a phone."""
    lines = ["| tutorial tensor | shape | = in nn.LSTM's layout |", "| --- | --- | --- |"]
    nowrap = "\u00a0"  # keep "(20, 30)" on one line
    for r in rows:
        a, b = r.rows
        gate = f"{r.gate}, {GATE_WORDS[r.gate]}"
        if r.input_columns is not None:  # a weight (H, I + H): its x columns, then its h columns
            (x0, x1), (h0, h1) = r.input_columns, r.hidden_columns
            shape = f"`({r.shape[0]},{nowrap}{r.shape[1]})` = (H,{nowrap}I+H)"
            target = (f"`weight_ih_l0[{a}:{b}]` = `{r.name}[:, {x0}:{x1}]` (xₜ) · "
                      f"`weight_hh_l0[{a}:{b}]` = `{r.name}[:, {h0}:{h1}]` (hₜ₋₁)")
        elif r.shape:
            shape = f"`({r.shape[0]},)` = (H,)"
            target = f"`bias_ih_l0[{a}:{b}]` = `{r.name}` · `bias_hh_l0[{a}:{b}]` = 0"
        else:  # a Linear without a bias, beside gates with one
            shape = "none (bias=False)"
            target = f"`bias_ih_l0[{a}:{b}]` = 0 · `bias_hh_l0[{a}:{b}]` = 0"
        lines.append(f"| `{r.name}` ({gate}) | {shape} | {target} |")
    return "\n".join(lines)


def tutorial_intro(cfg: LSTMConfig, origin: TutorialOrigin | None = None) -> str:
    """What the table shows, with this run's sizes, and where these weights came from when loaded from one."""
    I, H = cfg.input_size, cfg.hidden_size  # noqa: E741
    text = (f"A class with one `nn.Linear(input_size + hidden_size, hidden_size)` per gate, applied to "
            f"`torch.cat((x_t, h), 1)`, holds the same numbers as nn.LSTM, arranged differently: each Linear's "
            f"columns split into an input part (xₜ, the first I) and a recurrent part (hₜ₋₁, the last H), and nn.LSTM "
            f"stacks the four gates by rows in the order i, f, g, o. Here I = {I} and H = {H}. "
            "`lstm_viz.load_lstm` converts such a state_dict exactly (upload one under model → uploaded weights).")
    if origin is not None:
        names = ", ".join(f"`{origin.name(g)}`" for g in TUTORIAL_ORDER)
        text += f" **These weights were loaded from one**: its Linears {names}."
    if cfg.num_layers > 1 or cfg.bidirectional or cfg.proj_size:
        text += " The class is one layer, one direction, without projection: the table is this run's layer 0."
    return text
