"""load_lstm: torch.save files of every LSTM shape load exactly; bad or hostile files raise WeightsError."""

from __future__ import annotations

import dataclasses
import io
import pathlib
import warnings
import zipfile

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lstm_viz import InstrumentedLSTM, LSTMConfig
from lstm_viz.loading import WeightsError, describe, find_lstms, load_lstm

CONFIGS = {
    "plain": dict(input_size=5, hidden_size=7),
    "layers3": dict(input_size=5, hidden_size=7, num_layers=3),
    "bidirectional": dict(input_size=5, hidden_size=7, bidirectional=True),
    "proj": dict(input_size=5, hidden_size=7, proj_size=3),
    "no_bias": dict(input_size=5, hidden_size=7, bias=False),
    "bi_proj_2layers": dict(input_size=5, hidden_size=7, num_layers=2, bidirectional=True, proj_size=4),
    "float64": dict(input_size=5, hidden_size=7, num_layers=2, dtype=torch.float64),
    "dropout_batch_first": dict(input_size=5, hidden_size=7, num_layers=2, dropout=0.3, batch_first=True),
}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These LSTMs are tiny: with a busy CPU, intra-op threads only wait on each other (about 5x slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def saved(obj, **kwargs) -> bytes:
    """What torch.save writes for `obj`."""
    buf = io.BytesIO()
    torch.save(obj, buf, **kwargs)
    return buf.getvalue()


def make_lstm(**kwargs) -> nn.LSTM:
    torch.manual_seed(0)
    return nn.LSTM(**kwargs).eval()


def assert_same_lstm(m: InstrumentedLSTM, lstm: nn.LSTM) -> None:
    """Same config (less what weights cannot tell), dtype, and outputs on a batch as the nn.LSTM."""
    assert m.config == dataclasses.replace(LSTMConfig.of(lstm), batch_first=False, dropout=0.0)
    dtype = lstm.weight_ih_l0.dtype
    assert m.weight_ih_l0.dtype == dtype and not m.training
    atol = 1e-12 if dtype == torch.float64 else 1e-6
    x = torch.randn(6, 2, lstm.input_size, dtype=dtype)  # (T, B, I): the loaded model is time-major
    with torch.no_grad():
        want, (h_n, c_n) = lstm.train(False)(x.transpose(0, 1) if lstm.batch_first else x)
    want = want.transpose(0, 1) if lstm.batch_first else want
    got, (got_h, got_c) = m(x)
    torch.testing.assert_close(got, want, atol=atol, rtol=0)
    torch.testing.assert_close((got_h, got_c), (h_n, c_n), atol=atol, rtol=0)
    torch.testing.assert_close(m.trace(x).output, want, atol=atol, rtol=0)


@pytest.mark.parametrize("name", CONFIGS)
@pytest.mark.parametrize("via", ["bytes", "bytesio", "path", "str"])
def test_round_trip(name, via, tmp_path):
    lstm = make_lstm(**CONFIGS[name])
    data = saved(lstm.state_dict())
    path = tmp_path / "lstm.pt"
    path.write_bytes(data)
    source = {"bytes": data, "bytesio": io.BytesIO(data), "path": path, "str": str(path)}[via]
    assert_same_lstm(load_lstm(source), lstm)


@pytest.mark.parametrize("name", CONFIGS)
def test_find_lstms_infers_config(name):
    lstm = make_lstm(**CONFIGS[name])
    want = dataclasses.replace(LSTMConfig.of(lstm), batch_first=False, dropout=0.0)
    assert find_lstms(lstm.state_dict()) == {"": want}


@st.composite
def lstm_configs(draw) -> LSTMConfig:
    hidden = draw(st.integers(1, 6))
    return LSTMConfig(draw(st.integers(1, 6)), hidden, num_layers=draw(st.integers(1, 3)), bias=draw(st.booleans()),
                      bidirectional=draw(st.booleans()), proj_size=draw(st.integers(0, hidden - 1)))


@settings(max_examples=40, deadline=None)
@given(config=lstm_configs(), prefix=st.sampled_from(["", "lstm.", "model.encoder.rnn.", "module.0."]))
def test_any_config_is_inferred(config, prefix):
    sd = {prefix + k: v for k, v in nn.LSTM(**config.to_dict()).state_dict().items()}
    assert find_lstms(sd) == {prefix: config}
    assert load_lstm(saved(sd)).config == config


def test_legacy_format_loads():
    lstm = make_lstm(**CONFIGS["bidirectional"])
    assert_same_lstm(load_lstm(saved(lstm.state_dict(), _use_new_zipfile_serialization=False)), lstm)


def test_half_precision_runs_as_float32():
    lstm = make_lstm(input_size=3, hidden_size=4)
    m = load_lstm(saved(lstm.half().state_dict()))
    assert m.weight_ih_l0.dtype == torch.float32
    torch.testing.assert_close(m.weight_ih_l0, lstm.weight_ih_l0.float(), atol=0, rtol=0)


class Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.ModuleDict({"embed": nn.Embedding(10, 5), "rnn": nn.LSTM(5, 6, num_layers=2)})
        self.head = nn.Linear(6, 2)


class TwoLSTMs(nn.Module):
    def __init__(self):
        super().__init__()
        self.enc = nn.LSTM(4, 6, bidirectional=True)
        self.dec = nn.Sequential(nn.LSTM(12, 3, proj_size=2), nn.Linear(2, 2))


def test_nested_lstm_in_a_model():
    torch.manual_seed(0)
    model = Encoder().eval()
    assert list(find_lstms(model.state_dict())) == ["encoder.rnn."]
    assert_same_lstm(load_lstm(saved(model.state_dict())), model.encoder["rnn"])


def test_checkpoint_dict():
    torch.manual_seed(0)
    model = Encoder().eval()
    for key in ("state_dict", "model_state_dict"):
        m = load_lstm(saved({key: model.state_dict(), "epoch": 3, "optimizer": {"lr": 0.1}}))
        assert_same_lstm(m, model.encoder["rnn"])


def test_several_lstms_need_a_prefix():
    torch.manual_seed(0)
    model = TwoLSTMs().eval()
    data = saved(model.state_dict())
    with pytest.raises(WeightsError, match=r"found 2 LSTMs; choose one with prefix=: 'enc\.', 'dec\.0\.'"):
        load_lstm(data)
    assert_same_lstm(load_lstm(data, prefix="enc."), model.enc)
    assert_same_lstm(load_lstm(data, prefix="dec.0"), model.dec[0])  # the trailing dot is optional
    with pytest.raises(WeightsError, match="no LSTM at prefix 'nope.'"):
        load_lstm(data, prefix="nope.")


def test_gru_is_not_taken_for_an_lstm():
    sd = {**{f"gru.{k}": v for k, v in nn.GRU(3, 4).state_dict().items()},
          **{f"lstm.{k}": v for k, v in nn.LSTM(3, 4).state_dict().items()}}
    assert list(find_lstms(sd)) == ["lstm."]
    with pytest.raises(WeightsError, match=r"no LSTM weights found.*the top level holds an nn\.GRU"):
        load_lstm(saved(nn.GRU(3, 4).state_dict()))


def test_describe():
    assert describe(LSTMConfig(10, 20, num_layers=2, bidirectional=True)) == \
        "nn.LSTM(10, 20, num_layers=2, bidirectional=True)"
    assert describe(LSTMConfig(3, 4)) == "nn.LSTM(3, 4)"
    assert describe(nn.LSTM(3, 4, bias=False, proj_size=2)) == "nn.LSTM(3, 4, bias=False, proj_size=2)"


class Touch:
    """Unpickling this creates `path`: a stand-in for arbitrary code in a pickle."""

    def __init__(self, path: pathlib.Path):
        self.path = path

    def __reduce__(self):
        return pathlib.Path.touch, (self.path,)


def test_hostile_pickle_is_refused_and_never_runs(tmp_path):
    sd = nn.LSTM(3, 4).state_dict()
    sd["weight_ih_l0"] = Touch(tmp_path / "marker")
    data = saved(sd)
    with pytest.raises(WeightsError, match=r"refused: this file needs arbitrary code to load.*torch\.save\("):
        load_lstm(data)
    assert not (tmp_path / "marker").exists()
    # The payload is live: an unsafe load runs it, so the check above means something.
    sd["weight_ih_l0"] = Touch(tmp_path / "control")
    torch.load(io.BytesIO(saved(sd)), weights_only=False)
    assert (tmp_path / "control").exists()


def test_whole_saved_model_is_refused():
    with pytest.raises(WeightsError, match=r"refused.*torch\.nn\.modules\.rnn\.LSTM.*lstm\.state_dict\(\)"):
        load_lstm(saved(nn.LSTM(3, 4)))


def npy_bytes() -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.zeros((4, 3), dtype=np.float32))
    return buf.getvalue()


def zip_bytes() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("a.npy", npy_bytes())
    return buf.getvalue()


def saved_script() -> bytes:
    buf = io.BytesIO()
    with warnings.catch_warnings():  # TorchScript is deprecated, but such files are still around
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.jit.save(torch.jit.script(nn.LSTM(3, 4)), buf)
    return buf.getvalue()


GOOD = saved(nn.LSTM(3, 4).state_dict())
BAD_FILES = {
    "zero_bytes": (b"", r"not a torch file: the file is empty \(0 bytes\)"),
    "truncated": (GOOD[: len(GOOD) // 2], "truncated or corrupt torch file"),
    "truncated_legacy": (saved(nn.LSTM(3, 4).state_dict(), _use_new_zipfile_serialization=False)[:-30],
                         "truncated or corrupt torch file"),
    "random": (np.random.default_rng(0).bytes(4096), "not a torch file: unrecognised bytes"),
    "text": (b"hello, these are not weights\n", "not a torch file: a text file starting 'hello"),
    "lfs_pointer": (b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\nsize 12\n", "Git LFS pointer"),
    "npy": (npy_bytes(), r"not a torch file: a NumPy \.npy array"),
    "npz_like_zip": (zip_bytes(), r"a zip archive without data\.pkl \(holds a\.npy\)"),
    "torchscript": (saved_script(), r"not a torch file: a TorchScript archive"),
    "safetensors_like": (len(b'{"w": {}}').to_bytes(8, "little") + b'{"w": {}}', "a safetensors file"),
    "tensor_not_dict": (saved(torch.zeros(3)), "expected a state_dict .* found a Tensor"),
}


@pytest.mark.parametrize("name", BAD_FILES)
def test_bad_files(name, tmp_path):
    data, message = BAD_FILES[name]
    path = tmp_path / "weights.pt"  # renamed to .pt, as a user might
    path.write_bytes(data)
    for source in (data, path):
        with pytest.raises(WeightsError, match=message):
            load_lstm(source)


def test_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="cannot read .*nope.pt"):
        load_lstm(tmp_path / "nope.pt")


def test_text_mode_file(tmp_path):
    (tmp_path / "w.pt").write_bytes(GOOD)
    with open(tmp_path / "w.pt", encoding="latin-1") as f, pytest.raises(WeightsError, match="binary mode"):
        load_lstm(f)


def edited(edit, **kwargs) -> bytes:
    """A saved nn.LSTM state_dict after `edit(sd)`."""
    sd = make_lstm(**(kwargs or {"input_size": 3, "hidden_size": 4, "num_layers": 2})).state_dict()
    edit(sd)
    return saved(sd)


BAD_STATE_DICTS = {
    "linear_only": (saved(nn.Linear(3, 4).state_dict()),
                    r"no LSTM weights found: expected keys like weight_ih_l0.*found e\.g\. 'weight', 'bias'"),
    "missing_key": (edited(lambda sd: sd.pop("bias_hh_l1")), r"missing key bias_hh_l1 \(16,\)"),
    "wrong_shape": (edited(lambda sd: sd.update(weight_hh_l1=torch.zeros(16, 5))),
                    r"wrong shape for weight_hh_l1: expected \(16, 4\), found \(16, 5\)"),
    "inconsistent_layer_input": (edited(lambda sd: sd.update(weight_ih_l1=torch.zeros(16, 3))),
                                 r"wrong shape for weight_ih_l1: expected \(16, 4\), found \(16, 3\)"),
    "layer_gap": (edited(lambda sd: sd.update({k.replace("_l1", "_l2"): sd.pop(k) for k in list(sd) if "_l1" in k})),
                  r"inconsistent layers.*found l0, l2"),
    "reverse_half_missing": (edited(lambda sd: sd.pop("weight_hh_l0_reverse"), input_size=3, hidden_size=4,
                                    bidirectional=True), "missing key weight_hh_l0_reverse"),
    "gates_not_4": (edited(lambda sd: sd.update(weight_hh_l0=torch.zeros(15, 4))), "15 rows, expected 4"),
    "nan": (edited(lambda sd: sd["weight_hh_l1"].view(-1)[5].fill_(float("nan"))), "weight_hh_l1 has 1 NaN/Inf"),
    "inf": (edited(lambda sd: sd["bias_ih_l0"].fill_(float("inf"))), "bias_ih_l0 has 16 NaN/Inf values"),
    "int_dtype": (edited(lambda sd: sd.update(bias_ih_l0=torch.zeros(16, dtype=torch.int64))),
                  "bias_ih_l0 is a torch.int64"),
    "not_a_tensor": (edited(lambda sd: sd.update(bias_hh_l0=[0.0] * 16)), "bias_hh_l0 is a list, expected a tensor"),
    "expanded": (edited(lambda sd: sd.update(weight_hh_l1=torch.zeros(1, 1).expand(16, 4))),
                 "weight_hh_l1 claims shape .* holds only 4 bytes"),
    "proj_too_big": (edited(lambda sd: sd.update(weight_hr_l0=torch.zeros(4, 4))),
                     "do not make a valid LSTM: proj_size has to be smaller"),
}


@pytest.mark.parametrize("name", BAD_STATE_DICTS)
def test_bad_state_dicts(name):
    data, message = BAD_STATE_DICTS[name]
    with pytest.raises(WeightsError, match=message):
        load_lstm(data)


def rezipped(data: bytes) -> bytes:
    """The same torch.save archive with every entry deflated (torch.load reads that too)."""
    plain = zipfile.ZipFile(io.BytesIO(data))
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as z:
        for name in plain.namelist():
            z.writestr(name, plain.read(name))
    return packed.getvalue()


def test_zip_bomb_is_refused_before_anything_is_unpacked(monkeypatch):
    bomb = rezipped(saved({"weight_ih_l0": torch.zeros(4096, 4096)}))  # 64 MiB of zeros
    assert len(bomb) < 1_000_000

    def never(*args, **kwargs):
        raise AssertionError("torch.load ran on a zip bomb")

    monkeypatch.setattr(torch, "load", never)
    with pytest.raises(WeightsError, match=r"unpacks to 67,109,\d+ bytes \(a zip bomb\?\)"):
        load_lstm(bomb)


def test_unpacked_size_has_an_absolute_limit_too(monkeypatch):
    import lstm_viz.loading as loading

    data = saved(make_lstm(input_size=3, hidden_size=4).state_dict())
    monkeypatch.setattr(loading, "MAX_UNPACKED_BYTES", 100)
    with pytest.raises(WeightsError, match="zip bomb"):
        load_lstm(data)


def test_a_deflated_but_honest_state_dict_still_loads():
    lstm = make_lstm(input_size=3, hidden_size=5, num_layers=2)
    assert_same_lstm(load_lstm(rezipped(saved(lstm.state_dict()))), lstm)
