"""load_lstm: torch.save files of every LSTM shape load exactly; bad or hostile files raise WeightsError."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import pathlib
import pickle
import re
import warnings
import zipfile

import numpy as np
import pickle_bombs as bombs
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from lstm_viz import InstrumentedLSTM, LSTMConfig
from lstm_viz.loading import WeightsError, describe, find_lstms, list_lstms, load_lstm

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


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny LSTMs: see conftest


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
    assert m.weight_ih_l0.dtype == dtype
    assert not m.training
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


# --- pickles that build far more memory than their size ------------------------------------


def never(*args, **kwargs):
    raise AssertionError("torch.load ran on a file the checks before it should have refused")


def unguarded(data: bytes):
    """What torch.load(weights_only=True) itself makes of `data`, without lstm_viz's checks."""
    return torch.load(io.BytesIO(data), weights_only=True)


def checkpoint() -> tuple[dict, nn.LSTM]:
    """A training checkpoint (state_dict, Adam's state after a step, epoch, 100k losses) and its LSTM."""
    lstm = make_lstm(input_size=5, hidden_size=7, num_layers=2)
    adam = torch.optim.Adam(lstm.parameters())
    lstm.train()(torch.randn(4, 2, 5))[0].sum().backward()
    adam.step()
    lstm.eval()
    losses = [1 / (i + 1) for i in range(100_000)]
    return {"state_dict": lstm.state_dict(), "optimizer": adam.state_dict(), "epoch": 3, "losses": losses}, lstm


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("name", CONFIGS)
def test_saved_lstms_pass_the_pickle_scan(name, legacy):
    lstm = make_lstm(**CONFIGS[name])
    assert_same_lstm(load_lstm(saved(lstm.state_dict(), _use_new_zipfile_serialization=not legacy)), lstm)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_training_checkpoint_passes_the_pickle_scan(legacy):
    ckpt, lstm = checkpoint()
    assert_same_lstm(load_lstm(saved(ckpt, _use_new_zipfile_serialization=not legacy)), lstm)


def test_a_model_of_thousands_of_tensors_passes_the_pickle_scan():
    model = nn.Sequential(nn.LSTM(3, 4), *[nn.Linear(2, 2) for _ in range(600)])
    adam = torch.optim.Adam(model[1:].parameters())
    model[1:](torch.randn(1, 2)).sum().backward()
    adam.step()
    data = saved({"model_state_dict": model.state_dict(), "optimizer": adam.state_dict(), "step": 1})
    assert len(model.state_dict()) + 3 * len(adam.state_dict()["state"]) > 4000
    assert_same_lstm(load_lstm(data), model[0])


# Files ≤ ~4 MB (stored, so the zip-bomb check passes) whose pickle builds hundreds of MB to GBs in torch.load.
BOMBS = {
    "dicts": lambda: bombs.stored_archive(bombs.object_bomb("dicts", 4 << 20)),
    "sets": lambda: bombs.stored_archive(bombs.object_bomb("sets", 1 << 20)),
    "tuples": lambda: bombs.stored_archive(bombs.object_bomb("tuples", 2 << 20)),
    "memo": lambda: bombs.stored_archive(bombs.memo_bomb(4 << 20)),
    "memo_only": lambda: bombs.stored_archive(bombs.memo_bomb(4 << 20, objects=False)),
    "marks": lambda: bombs.stored_archive(bombs.mark_bomb(2 << 20)),
    "copies": lambda: bombs.stored_archive(bombs.copy_bomb(1 << 20)),
    "hex_chain": lambda: bombs.stored_archive(bombs.hex_chain(28)),
    "legacy_dicts": lambda: bombs.legacy_file(bombs.object_bomb("dicts", 4 << 20)),
    "legacy_storage_keys": lambda: bombs.legacy_file(b"\x80\x02}.", keys_pkl=bombs.object_bomb("sets", 1 << 20)),
}


@pytest.mark.parametrize("name", BOMBS)
def test_pickle_bombs_are_refused_before_torch_load(name, monkeypatch):
    data = BOMBS[name]()
    monkeypatch.setattr(torch, "load", never)
    with pytest.raises(WeightsError, match=r"refused: this file's pickle would build at least [\d,]+ Python objects "
                                           r"taking ~\d+ MB .*, far more than a state_dict needs; the limit is 64 MB; "
                                           r"save the state_dict instead: torch\.save\(lstm\.state_dict\(\), path\)"):
        list_lstms(data)


def test_the_bombs_are_live():
    """Small versions of the bombs, unguarded: torch.load builds one object (or copy) per repeated unit."""
    assert unguarded(bombs.stored_archive(bombs.object_bomb("dicts", 2000))) == [{}] * 1000
    assert len(unguarded(bombs.stored_archive(bombs.object_bomb("sets", 2000)))) == 1000
    assert unguarded(bombs.stored_archive(bombs.object_bomb("tuples", 700))) == [({}, [])] * 100
    assert unguarded(bombs.stored_archive(bombs.memo_bomb(700))) == [{}] * 100
    copies = unguarded(bombs.stored_archive(bombs.copy_bomb(2000, keys=10)))
    assert len(copies) > 100
    assert all(len(c) == 10 for c in copies)
    assert copies[0] is not copies[1]
    assert len(unguarded(bombs.stored_archive(bombs.hex_chain(10)))["a"]) == 2 ** 11  # doubles with each level
    assert unguarded(bombs.legacy_file(bombs.object_bomb("dicts", 2000))) == [{}] * 1000


ON_LINUX = pytest.mark.skipif(not pathlib.Path("/proc/self/status").exists(), reason="reads VmRSS, VmHWM in /proc")


@ON_LINUX
def test_refusing_a_pickle_bomb_takes_little_memory(tmp_path):
    # Unguarded torch.load: +320 MB for the dicts, zip or legacy; +190 MB for the memo (measured with UNGUARDED).
    dicts = bombs.object_bomb("dicts", 8 << 20)
    refused = {
        "zip": bombs.stored_archive(dicts),
        "legacy": bombs.legacy_file(dicts),
        "memo_only": bombs.stored_archive(bombs.memo_bomb(8 << 20, objects=False)),  # the scan's own costliest
    }
    assert all(len(data) < 9 << 20 for data in refused.values())
    runs = {name: (bombs.LIST_LSTMS, data) for name, data in refused.items()}
    for name, (growth, outcome) in bombs.rss_growth(runs, tmp_path).items():
        assert outcome.startswith("WeightsError: refused: this file's pickle would build"), (name, outcome)
        assert growth < 100 << 20, f"{name}: peak RSS grew by {growth / 2**20:.0f} MB"


@ON_LINUX
def test_a_storage_larger_than_its_data_is_refused_without_allocating_it(tmp_path):
    """torch.load checks a zip record's size before it allocates; the legacy format allocates (untouched) first."""
    legacy = bombs.tensor_dict("weight_ih_l0", 10**9, 2, legacy=True)
    runs = {
        "zip": (bombs.LIST_LSTMS, bombs.stored_archive(bombs.tensor_dict("weight_ih_l0", 10**11, 2), {"0": bytes(8)})),
        "legacy": (bombs.LIST_LSTMS, bombs.legacy_file(legacy, ("0",), (2).to_bytes(8, "little") + bytes(8))),
    }
    for name, (growth, outcome) in bombs.rss_growth(runs, tmp_path).items():
        assert outcome.startswith("WeightsError: truncated or corrupt torch file"), (name, outcome)
        assert growth < 100 << 20, f"{name}: peak RSS grew by {growth / 2**20:.0f} MB"
    # The same files with honest sizes load.
    honest = bombs.stored_archive(bombs.tensor_dict("w", 2, 2), {"0": bytes(8)})
    assert unguarded(honest)["w"].tolist() == [0.0, 0.0]
    honest = bombs.legacy_file(bombs.tensor_dict("w", 2, 2, legacy=True), ("0",), (2).to_bytes(8, "little") + bytes(8))
    assert unguarded(honest)["w"].tolist() == [0.0, 0.0]


def test_calls_that_allocate_what_the_file_only_states_are_refused(monkeypatch):
    # Live: unguarded, torch.load zero-fills bytearray(n), and copies an expanded view into new memory.
    assert unguarded(bombs.stored_archive(bombs.bytearray_call(16)))["a"] == bytearray(16)
    copied = unguarded(bombs.stored_archive(bombs.expanded_to_double(10), {"0": bytes(4)}))["x"]
    assert copied.dtype == torch.float64
    assert copied.untyped_storage().nbytes() == 80
    monkeypatch.setattr(torch, "load", never)
    refused = {  # 1.5 GB each, measured, from files of under 1 KB
        "builtins.bytearray": bombs.stored_archive(bombs.bytearray_call(1_500_000_000)),
        "torch._utils._rebuild_device_tensor_from_cpu_tensor":
            bombs.stored_archive(bombs.expanded_to_double(200_000_000), {"0": bytes(4)}),
    }
    for name, data in refused.items():
        message = rf"refused: this file calls {re.escape(name)}, which can take any amount of memory \(.*\); save the"
        with pytest.raises(WeightsError, match=message):
            list_lstms(data)


CORRUPT = "truncated or corrupt torch file"
MALFORMED = {  # the scan stops at the break and lets torch.load report it (its words, as before the scan)
    "no_stop": (b"\x80\x02}", CORRUPT),
    "cut_in_a_string": (b"\x80\x02}X\x10\x00\x00\x00abc", CORRUPT),
    "cut_in_an_int": (b"\x80\x02]J\x01\x00", CORRUPT),
    # torch's readline would take "OrderedD" for the line and call it a global: the scan reports the cut instead
    "cut_in_a_global": (b"\x80\x02ccollections\nOrderedD", CORRUPT),
    "cut_in_a_module": (b"\x80\x02ccollecti", CORRUPT),
    "append_to_nothing": (b"\x80\x02a.", CORRUPT),
    "unset_memo": (b"\x80\x02]h\x05a.", CORRUPT),
    "tuple_without_mark": (b"\x80\x02Nt.", CORRUPT),
    "tuple2_of_one": (b"\x80\x02(N\x86.", CORRUPT),
    "stop_on_nothing": (b"\x80\x02.", CORRUPT),
}


@pytest.mark.parametrize("name", MALFORMED)
def test_malformed_pickles_are_weights_errors(name):
    pkl, message = MALFORMED[name]
    with pytest.raises(WeightsError, match=message):
        list_lstms(bombs.stored_archive(pkl))


def test_unsupported_opcodes_are_refused_in_torchs_words(monkeypatch):
    import lstm_viz.loading as loading

    data = bombs.stored_archive(pickle.dumps({"weight_ih_l0": 1}, protocol=4))  # FRAME (149) first
    with pytest.raises(WeightsError) as scanned:
        list_lstms(data)
    monkeypatch.setattr(loading, "check_pickles", lambda data: None)
    with pytest.raises(WeightsError) as unscanned, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch: "Detected pickle protocol 4 in the checkpoint"
        list_lstms(data)
    assert str(scanned.value) == str(unscanned.value)
    assert "Unsupported operand 149" in str(scanned.value)


GOOD_LEGACY = saved(nn.LSTM(3, 4).state_dict(), _use_new_zipfile_serialization=False)
GOOD_RECORDS = {name.split("/", 1)[1]: zipfile.ZipFile(io.BytesIO(GOOD)).read(name)
                for name in zipfile.ZipFile(io.BytesIO(GOOD)).namelist()}


@settings(max_examples=60, deadline=None)
@given(legacy=st.booleans(), cut=st.floats(0, 1), flips=st.lists(st.tuples(st.floats(0, 1), st.integers(0, 255)),
                                                                  max_size=3))
def test_damaged_pickles_load_or_raise_weights_error(legacy, cut, flips):
    pkl = bytearray(GOOD_LEGACY if legacy else GOOD_RECORDS["data.pkl"])
    for where, value in flips:
        pkl[int(where * (len(pkl) - 1))] = value
    pkl = pkl[: max(1, int(cut * len(pkl)))] if cut < 0.95 else pkl
    if legacy:
        data = bytes(pkl)
    else:
        records = {k[len("data/"):]: v for k, v in GOOD_RECORDS.items() if k.startswith("data/")}
        data = bombs.stored_archive(bytes(pkl), records)
    with contextlib.suppress(WeightsError):  # anything else fails the test
        list_lstms(data)


# --- calls that take a tensor apart, one Python object per element -------------------------

# Each ~870 bytes; unguarded, torch.load grew 611–673 MB for each at 1M elements (measured with UNGUARDED, 6 at once).
SPLITS = {
    "set": ("builtins.set", "arg"),
    "counter": ("collections.Counter", "arg"),
    "ordered_dict_over_list": ("collections.OrderedDict", "in_list"),
    "star_args": ("collections.OrderedDict", "star"),
    "build_state": ("collections.OrderedDict", "build"),
}


def split_file(name: str, numel: int) -> bytes:
    """SPLITS[name] on a stride-0 view of `numel` floats, as a torch.save archive."""
    return bombs.stored_archive(bombs.split_tensor(*SPLITS[name][:1], numel, SPLITS[name][1]), {"0": bytes(4)})


def test_the_splits_are_live():
    assert len(unguarded(split_file("set", 10))["x"]) == 10
    assert sum(unguarded(split_file("counter", 10))["x"].values()) == 10
    for name in ("ordered_dict_over_list", "star_args", "build_state"):  # they fail, after taking it apart
        with pytest.raises((TypeError, ValueError)):
            unguarded(split_file(name, 10))


@pytest.mark.parametrize("name", SPLITS)
def test_a_call_that_takes_a_tensor_apart_is_refused(name, monkeypatch):
    data = split_file(name, 1_000_000)
    assert len(data) < 1000
    monkeypatch.setattr(torch, "load", never)
    with pytest.raises(WeightsError, match=r"refused: this file (passes a tensor to [\w.]+|sets a tensor as an "
                                           r"object's state \(BUILD\)), which would expand it element by element.*"
                                           r"a state_dict never does that; save the state_dict"):
        list_lstms(data)
    if SPLITS[name][1] != "build":
        with pytest.raises(WeightsError, match=re.escape(f"passes a tensor to {SPLITS[name][0]},")):
            list_lstms(data)


@ON_LINUX
def test_refusing_a_split_takes_little_memory(tmp_path):
    runs = {name: (bombs.LIST_LSTMS, split_file(name, 1_000_000)) for name in ("set", "counter")}
    runs["unguarded_set"] = (bombs.UNGUARDED, split_file("set", 1_000_000))
    results = bombs.rss_growth(runs, tmp_path)
    growth, outcome = results.pop("unguarded_set")
    assert outcome == "loaded", f"unguarded: {growth / 2**20:.0f} MB, {outcome}"
    assert growth > 300 << 20, f"unguarded: {growth / 2**20:.0f} MB, {outcome}"
    for name, (growth, outcome) in results.items():
        assert outcome.startswith("WeightsError: refused: this file passes a tensor to"), (name, outcome)
        assert growth < 100 << 20, f"{name}: peak RSS grew by {growth / 2**20:.0f} MB"


def test_parameters_and_tensors_with_attributes_still_load():
    torch.manual_seed(0)
    model = Encoder().eval()
    lstm = model.encoder["rnn"]
    params = {name: nn.Parameter(t.clone()) for name, t in lstm.state_dict().items()}
    assert_same_lstm(load_lstm(saved(params)), lstm)
    assert_same_lstm(load_lstm(saved(model.state_dict(keep_vars=True))), lstm)
    assert list(list_lstms(saved(model.state_dict(keep_vars=True)))) == ["encoder.rnn."]
    tagged = nn.Parameter(torch.ones(2))
    tagged.scale = torch.full((2,), 3.0)  # saved with _rebuild_parameter_with_state
    note = torch.zeros(3)
    note.mask = torch.ones(3)  # saved with _rebuild_from_type_v2
    extras = {"tagged": tagged, "note": note, "sparse": torch.eye(3).to_sparse(), "pairs": [(note, tagged)]}
    for legacy in (False, True):
        data = saved({"state_dict": lstm.state_dict(), "extras": extras}, _use_new_zipfile_serialization=not legacy)
        assert_same_lstm(load_lstm(data), lstm)
        back = torch.load(io.BytesIO(data), weights_only=True)["extras"]
        assert back["tagged"].scale.tolist() == [3.0, 3.0]
        assert back["note"].mask.tolist() == [1.0] * 3


def test_truncated_legacy_file_is_reported_as_truncated():
    data = saved(nn.LSTM(3, 4, num_layers=2).state_dict(), _use_new_zipfile_serialization=False)
    with pytest.raises(WeightsError, match=r"^truncated or corrupt torch file \(300 bytes\)"):
        list_lstms(data[:300])
    for cut in range(20, len(data) - 1, 7):  # wherever it is cut
        with pytest.raises(WeightsError, match="^truncated or corrupt torch file"):
            list_lstms(data[:cut])


def test_a_blocked_module_is_reported_as_arbitrary_code():
    # torch 2.13 words it "GLOBAL posix.system whose module posix is blocked", not "was not an allowed global"
    data = bombs.stored_archive(b"\x80\x02cposix\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03.")
    with pytest.raises(WeightsError, match=r"^refused: this file needs arbitrary code to load \(it calls "
                                           r"posix\.system\), which could run anything"):
        list_lstms(data)
    data = bombs.stored_archive(b"\x80\x02cnot_torch\nrun\nq\x00)Rq\x03.")
    with pytest.raises(WeightsError, match=r"needs arbitrary code to load \(it calls not_torch\.run\)"):
        list_lstms(data)


class _Unsaved:
    """Pickles as a call of torch.FloatTensor(*shape): a tensor whose memory is reserved, never in the file."""

    def __init__(self, *shape):
        self.shape = shape

    def __reduce__(self):
        return torch.FloatTensor, self.shape


def test_tensors_made_by_a_constructor_call_not_read_from_the_file_are_refused_untouched():
    import pickle
    import zipfile

    from memory_support import peak_growth

    H, I = 4096, 4096  # 4·4096·(4096 + 4096) floats: 537 MB once anything reads them
    state = {"weight_ih_l0": _Unsaved(4 * H, I), "weight_hh_l0": _Unsaved(4 * H, H)}
    source = zipfile.ZipFile(io.BytesIO(_saved({"x": torch.zeros(1)})))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name in source.namelist():
            archive.writestr(name, pickle.dumps(state, protocol=2) if name.endswith("data.pkl") else source.read(name))
    data = out.getvalue()
    with pytest.raises(WeightsError, match=r"claim [\d,]+ bytes of data but the file holds [\d,]+: they were not"):
        load_lstm(data)
    growth, outcome = peak_growth(f"from lstm_viz.loading import load_lstm\ndata = {data!r}", "load_lstm(data)")
    assert outcome.startswith("WeightsError"), outcome
    assert growth < 100e6, growth / 1e6


def _saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()
