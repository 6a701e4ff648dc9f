"""The page's state besides the sidebar's settings, as plain values. No streamlit.

    Sources  what feeds the LSTM: the model source (random init, uploaded weights, toy task) and each input
             source's own parameters (signal shape, typed numbers, text, random distribution)
    View     where the user is looking: step t, layer, direction, unit, batch element, open tab, training snapshot
    Origin   what a link can only name, not carry: uploaded weights, a trained toy task, a file, a long text

Each is frozen: the app replaces it, never mutates it, so the value a view was drawn from stays as it was.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from . import inputs, links, tasks, training

TABS = {
    "step": "Step through time",
    "unit": "Unit drill-down",
    "saturation": "Saturation & memory",
    "shapes": "Shapes",
    "export": "Export",
}
MODEL_SOURCES = ("random init", "uploaded weights", "toy task")
DISTRIBUTIONS = ("normal", "uniform")
DEFAULT_TYPED = "0.0, 1.0\n0.5, 0.5\n1.0, 0.0\n0.5, -0.5\n0.0, -1.0"
DEFAULT_TEXT = "hello, lstm"
LONG_TEXTS = {"typed_text": "typed_text_chars", "text_input": "text_chars"}  # text field -> its length in a link


@dataclass(frozen=True)
class Sources:
    """The model source and the parameters of every input source (kept while another source is chosen)."""

    model_source: str = MODEL_SOURCES[0]
    task: str = next(iter(tasks.TASKS))
    distribution: str = DISTRIBUTIONS[0]
    signal_kind: str = inputs.SIGNAL_KINDS[0]
    signal_period: float = 16.0
    signal_amplitude: float = 1.0
    signal_noise: float = 0.0
    typed_text: str = DEFAULT_TYPED
    text_input: str = DEFAULT_TEXT

    LIMITS = {"signal_period": (1.0, 10_000.0), "signal_amplitude": (0.0, 100.0), "signal_noise": (0.0, 10.0)}
    CHOICES = {"model_source": MODEL_SOURCES, "task": tuple(tasks.TASKS), "distribution": DISTRIBUTIONS,
               "signal_kind": inputs.SIGNAL_KINDS}

    def input_params(self, input_source: str) -> dict:
        """The parameters `pipeline.make_sequence` takes for `input_source` (a file's come from its upload)."""
        if input_source == "random":
            return {"distribution": self.distribution}
        if input_source == "signal":
            return {"kind": self.signal_kind, "period": self.signal_period, "amplitude": self.signal_amplitude,
                    "noise": self.signal_noise}
        if input_source == "typed":
            return {"text": self.typed_text}
        if input_source == "text":
            return {"text": self.text_input}
        return {}

    def too_long_for_a_link(self) -> dict[str, int]:
        """The free texts a link cannot carry: field -> its length in characters."""
        return {name: len(getattr(self, name)) for name in LONG_TEXTS
                if len(getattr(self, name)) > links.MAX_LINK_TEXT}

    def to_query(self) -> dict[str, str]:
        """As query parameters; a text too long for a link is left out (Origin records its length)."""
        left_out = self.too_long_for_a_link()
        return {k: v for k, v in links.to_query(self).items() if k not in left_out}

    @classmethod
    def from_query(cls, params: dict[str, str]) -> tuple[Sources, list[str]]:
        return links.from_query(cls, params, cls.LIMITS, cls.CHOICES)


@dataclass(frozen=True)
class View:
    """Where the user is looking. Fields are clipped to the run on use (`fitted`), never rejected."""

    timestep: int = 0
    layer: int = 0
    direction: int = 0  # 0 forward, 1 reverse
    unit: int = 0
    batch_index: int = 0
    tab: str = "step"
    snapshot: int = -1  # a trained toy task's weights: the index of a snapshot along training; −1, the final ones

    LIMITS = {"timestep": (0, inputs.MAX_STEPS - 1), "layer": (0, 7), "direction": (0, 1), "unit": (0, 2047),
              "batch_index": (0, inputs.MAX_BATCH - 1), "snapshot": (-1, training.MAX_SNAPSHOTS - 1)}
    CHOICES = {"tab": tuple(TABS)}

    def fitted(self, seq_len: int, num_layers: int, num_directions: int, hidden_size: int, batch_size: int) -> View:
        """This view within a run of these sizes: each index clipped to its last valid value."""
        return replace(self, timestep=min(self.timestep, seq_len - 1), layer=min(self.layer, num_layers - 1),
                       direction=min(self.direction, num_directions - 1), unit=min(self.unit, hidden_size - 1),
                       batch_index=min(self.batch_index, batch_size - 1))

    def fitted_to(self, trace) -> View:
        return self.fitted(trace.seq_len, trace.num_layers, trace.num_directions, trace.config.hidden_size,
                           trace.batch_size)

    def to_query(self) -> dict[str, str]:
        return links.to_query(self)

    @classmethod
    def from_query(cls, params: dict[str, str]) -> tuple[View, list[str]]:
        return links.from_query(cls, params, cls.LIMITS, cls.CHOICES)


@dataclass(frozen=True)
class Origin:
    """What a link names but cannot carry; reopening it says what the user must supply to see the same."""

    weights: str = ""  # file name of uploaded weights
    weights_model: str = ""  # their nn.LSTM(...) description
    trained: bool = False  # a toy task trained in the session (training is seeded: pressing Train reproduces it)
    file: str = ""  # file name of an uploaded input
    typed_text_chars: int = 0  # a typed sequence too long for a link
    text_chars: int = 0  # a text too long for a link

    LIMITS = {"typed_text_chars": (0, inputs.MAX_TYPED_CHARS), "text_chars": (0, inputs.MAX_TYPED_CHARS)}

    def to_query(self) -> dict[str, str]:
        return links.to_query(self)

    @classmethod
    def from_query(cls, params: dict[str, str]) -> tuple[Origin, list[str]]:
        return links.from_query(cls, params, cls.LIMITS)


def origin_of(sources: Sources, input_source: str, weights_name: str = "", weights_model: str = "",
              trained: bool = False, file_name: str = "") -> Origin:
    """The Origin a link made now must record."""
    uploaded = sources.model_source == "uploaded weights"
    task = sources.model_source == "toy task"
    long = sources.too_long_for_a_link()
    return Origin(weights=weights_name if uploaded else "", weights_model=weights_model if uploaded else "",
                  trained=trained and task, file=file_name if input_source == "file" and not task else "",
                  typed_text_chars=long.get("typed_text", 0) if input_source == "typed" else 0,
                  text_chars=long.get("text_input", 0) if input_source == "text" else 0)
