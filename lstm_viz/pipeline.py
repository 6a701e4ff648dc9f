"""From the app's settings to a traced run: model, input tensor, trace and a parity check. No streamlit."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from . import guard, inputs, links, seeding
from .config import LSTMConfig
from .cost import TooSlow
from .inputs import SequenceInput, check_input_size
from .model import InstrumentedLSTM
from .parity import ParityReport, check_trace
from .trace import Trace

DTYPES = {"float32": torch.float32, "float64": torch.float64}
DEVICES = ("cpu", "cuda")
INPUT_SOURCES = ("random", "typed", "signal", "text", "file")
DATA_SIZED_SOURCES = ("typed", "text", "file")  # these set seq_len, batch and input_size from the data
# (lowest, highest) of each whole-number setting: the sidebar's bounds, and what a URL may ask for.
LIMITS = {
    "input_size": (1, inputs.MAX_FEATURES),
    "hidden_size": (1, 2048),
    "num_layers": (1, 8),
    "proj_size": (0, 2047),
    "seq_len": (1, inputs.MAX_STEPS),
    "batch_size": (1, inputs.MAX_BATCH),
    "seed": (0, 2**31 - 1),
}
CHOICES = {"device": DEVICES, "dtype": tuple(DTYPES), "input_source": INPUT_SOURCES}


@dataclass(frozen=True)
class AppConfig:
    """Every setting of the app's sidebar; also what the URL carries."""

    input_size: int = 4
    hidden_size: int = 8
    num_layers: int = 1
    seq_len: int = 12
    batch_size: int = 2
    bidirectional: bool = False
    proj_size: int = 0
    batch_first: bool = False
    bias: bool = True
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    input_source: str = "random"

    def lstm_config(self, input_size: int | None = None) -> LSTMConfig:
        """The LSTM's config; raises nn.LSTM's errors (e.g. proj_size ≥ hidden_size)."""
        return LSTMConfig(input_size or self.input_size, self.hidden_size, self.num_layers, self.bias,
                          self.batch_first, 0.0, self.bidirectional, self.proj_size)

    def to_query(self) -> dict[str, str]:
        """Settings that differ from the defaults, as URL query parameters."""
        return links.to_query(self)

    @classmethod
    def from_query(cls, params: dict[str, str]) -> tuple[AppConfig, list[str]]:
        """Settings from URL parameters; malformed or out-of-range ones are skipped and reported."""
        return links.from_query(cls, params, LIMITS, CHOICES)


def make_sequence(config: AppConfig, params: dict) -> SequenceInput:
    """The input for `config.input_source`, from that source's own parameters (raises InputError)."""
    source = config.input_source
    if source == "random":
        return inputs.random_tensor(config.seq_len, config.batch_size, config.input_size, seed=config.seed,
                                    distribution=params.get("distribution", "normal"))
    if source == "signal":
        return inputs.signal(params.get("kind", "sine"), config.seq_len, batch_size=config.batch_size,
                             input_size=config.input_size, period=params.get("period", 16.0),
                             amplitude=params.get("amplitude", 1.0), noise=params.get("noise", 0.0),
                             seed=config.seed)
    if source == "typed":
        return inputs.parse_typed(params.get("text", ""))
    if source == "text":
        return inputs.text_to_onehot(params.get("text", ""))
    if source == "file":
        if params.get("data") is None:
            raise inputs.InputError("no file yet: upload a .csv or .npy file")
        with guard.charged(inputs.parse_bytes(params["name"], params["data"]), f"reading {params['name']}"):
            return inputs.load_file(params["name"], params["data"])
    raise inputs.InputError(f"unknown input source {source!r}: choose one of {', '.join(INPUT_SOURCES)}")


def make_model(lstm_config: LSTMConfig, seed: int, device: str, dtype: str) -> InstrumentedLSTM:
    """nn.LSTM's default init drawn from `seed` on the CPU (same weights on any device), as torch.manual_seed(seed)
    would give, from a private generator: the global RNG is untouched, so sessions in parallel are too."""
    model = seeding.lstm(InstrumentedLSTM, seeding.generator(seed), **lstm_config.to_dict(), dtype=DTYPES[dtype])
    return model.to(device).eval()


def model_input(seq: SequenceInput, lstm_config: LSTMConfig, device: str, dtype: str) -> torch.Tensor:
    """The tensor nn.LSTM would be fed: (seq, batch, features), or (batch, seq, features) under batch_first."""
    check_input_size(seq, lstm_config.input_size)
    x = seq.x.to(device=device, dtype=DTYPES[dtype])
    return x.transpose(0, 1) if lstm_config.batch_first else x


@dataclass
class Run:
    """One traced run, and how far it is from torch.nn.LSTM with the same weights."""

    model: InstrumentedLSTM
    x: torch.Tensor
    seq: SequenceInput
    trace: Trace
    parity: ParityReport
    notice: str = ""  # e.g. why it ran on the CPU although CUDA was chosen


def adopt_model(weights: InstrumentedLSTM, config: AppConfig) -> InstrumentedLSTM:
    """A given model (loaded or trained) with the app's batch_first, device and dtype; its sizes stay its own."""
    options = weights.config.to_dict() | {"batch_first": config.batch_first, "dropout": 0.0}
    model = InstrumentedLSTM(**options, dtype=DTYPES[config.dtype])
    model.load_state_dict({k: v.to(DTYPES[config.dtype]) for k, v in weights.state_dict().items()})
    if getattr(weights, "tutorial_origin", None) is not None:  # the Shapes tab names the tutorial's Linears
        model.tutorial_origin = weights.tutorial_origin
    return model.to(config.device).eval()


def run(config: AppConfig, seq: SequenceInput, weights: InstrumentedLSTM | None = None,
        progress: Callable[[float], object] | None = None) -> Run:
    """Build the model for `config` (or adopt `weights`), feed it `seq`, trace it and check it against nn.LSTM.

    Refused before any heavy work when the estimates exceed the budgets (guard); stopped, with a ResourceError
    saying how far it got, once it has run for LSTM_VIZ_MAX_TRACE_S whatever the estimate said. `progress` is
    called with the fraction traced, about every 0.1 s; what it raises stops the run (the app's Cancel).
    A fault on the GPU (out of memory, a driver error) does not end the session: the run is redone on the CPU
    and `Run.notice` says why.
    """
    if weights is not None:
        lstm_config = replace(weights.config, batch_first=config.batch_first)
    else:
        lstm_config = config.lstm_config(seq.input_size if config.input_source in DATA_SIZED_SOURCES else None)
    dtype_bytes = DTYPES[config.dtype].itemsize
    started, limit = time.monotonic(), guard.budgets()[1]
    with guard.admitted(lstm_config, seq.seq_len, seq.batch_size, dtype_bytes, config.device):  # before any work
        try:
            result = on_device_or_cpu(config, lstm_config, seq, weights, progress, started + limit)
        except TooSlow as err:  # said from the run's start: building the model counts too
            where = (f"after tracing all {err.seq_len:,} steps, before its check against torch.nn.LSTM"
                     if err.step >= err.seq_len else f"at step {err.step:,} of {err.seq_len:,}")
            raise guard.ResourceError(
                f"this run stopped {where} after {time.monotonic() - started:.1f} s: the limit here is {limit:g} s; "
                "lower seq_len, batch_size, hidden_size or num_layers") from None
    guard.hold(result.trace, guard.trace_bytes(lstm_config, seq.seq_len, seq.batch_size, dtype_bytes))
    return result


def on_device_or_cpu(config: AppConfig, lstm_config: LSTMConfig, seq: SequenceInput,
                     weights: InstrumentedLSTM | None, progress=None, deadline: float | None = None) -> Run:
    """`traced_run` on the chosen device; after a GPU fault, on the CPU with a notice saying why."""
    try:
        return traced_run(config, lstm_config, seq, weights, progress, deadline)
    except RuntimeError as err:  # torch.OutOfMemoryError is one
        if config.device == "cpu":
            raise  # nowhere to fall back to
        if torch.cuda.is_initialized():
            torch.cuda.empty_cache()  # give back what the failed run held, for this and other sessions
        result = traced_run(replace(config, device="cpu"), lstm_config, seq, weights, progress, deadline)
        why = ("ran out of GPU memory" if isinstance(err, torch.OutOfMemoryError)
               else f"failed: {str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}")
        result.notice = (f"{config.device.upper()} {why}; this run was computed on the CPU instead. Lower "
                         "seq_len, batch_size or hidden_size to use the GPU again.")
        return result


def traced_run(config: AppConfig, lstm_config: LSTMConfig, seq: SequenceInput,
               weights: InstrumentedLSTM | None, progress=None, deadline: float | None = None) -> Run:
    """The device work of `run`, on `config.device`."""
    if config.device == "cuda":
        # TF32 would round cuDNN's float32 to ~1e-3, and the badge would rightly fail: the app shows exact numbers.
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    if weights is not None:
        model = adopt_model(weights, config)
    else:
        model = make_model(lstm_config, config.seed, config.device, config.dtype)
    x = model_input(seq, lstm_config, config.device, config.dtype)
    trace = model.trace(x, progress=progress, deadline=deadline)
    if deadline is not None and time.monotonic() > deadline:  # no time left for the parity check (`run` says so)
        raise TooSlow("no time left for the parity check", seq.seq_len, seq.seq_len, 0.0, 0.0)
    return Run(model, x, seq, trace, check_trace(model, x, trace))
