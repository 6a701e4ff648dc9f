"""list_lstms / load_lstm find LSTMs anywhere in a checkpoint: renamed keys, nested dicts, lists, wrapper prefixes.

Every layout is written with torch.save (zip, and the legacy non-zip format) and read back from a file; each LSTM
found must have its nn.LSTM's config and give its outputs.
"""

from __future__ import annotations

import dataclasses
import io
import time

import pickle_bombs as bombs
import pytest
import torch
from torch import nn

from lstm_viz import InstrumentedLSTM, LSTMConfig
from lstm_viz.loading import MAX_SEARCH_CONTAINERS, MAX_SEARCH_DEPTH, WeightsError, find_lstms, list_lstms, load_lstm

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny LSTMs: see conftest


def saved(obj, legacy: bool = False) -> bytes:
    """What torch.save writes for `obj`, in the zip format or the legacy one."""
    buf = io.BytesIO()
    torch.save(obj, buf, _use_new_zipfile_serialization=not legacy)
    return buf.getvalue()


def written(tmp_path, obj, legacy: bool = False, name: str = "checkpoint.pt"):
    """`obj` saved to a file under tmp_path; its path."""
    path = tmp_path / name
    path.write_bytes(saved(obj, legacy))
    return path


def weights_config(lstm: nn.LSTM) -> LSTMConfig:
    """The nn.LSTM's config less what its weights cannot tell (batch_first, dropout)."""
    return dataclasses.replace(LSTMConfig.of(lstm), batch_first=False, dropout=0.0)


def assert_config(config: LSTMConfig, lstm: nn.LSTM) -> None:
    """The found config is the nn.LSTM's."""
    for name in ("input_size", "hidden_size", "num_layers", "bidirectional", "proj_size", "bias"):
        assert getattr(config, name) == getattr(lstm, name), name
    assert config == weights_config(lstm)


def assert_same_outputs(model: InstrumentedLSTM, lstm: nn.LSTM) -> None:
    """The loaded model gives the nn.LSTM's outputs (and final states) on a random batch."""
    assert isinstance(model, InstrumentedLSTM)
    assert not model.training
    x = torch.randn(5, 3, lstm.input_size)
    with torch.no_grad():
        want, (h_n, c_n) = lstm.eval()(x)
    got, (got_h, got_c) = model(x)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    torch.testing.assert_close((got_h, got_c), (h_n, c_n), atol=1e-6, rtol=0)


def assert_found(path, expected: dict[str, nn.LSTM]) -> None:
    """list_lstms finds exactly these LSTMs, in this order, and each loads by its location."""
    found = list_lstms(path)
    assert list(found) == list(expected)
    for location, lstm in expected.items():
        assert_config(found[location], lstm)
        assert_same_outputs(load_lstm(path, prefix=location), lstm)


class Model(nn.Module):
    """A model holding an LSTM as `rnn` (keys rnn.weight_ih_l0, …) and a linear head."""

    def __init__(self, input_size=4, hidden_size=6, **lstm_kwargs):
        super().__init__()
        self.rnn = nn.LSTM(input_size, hidden_size, **lstm_kwargs)
        out = lstm_kwargs.get("proj_size") or hidden_size
        self.head = nn.Linear(out * (2 if lstm_kwargs.get("bidirectional") else 1), 2)


class Encoder(nn.Module):
    """An LSTM two modules down: encoder.rnn.weight_ih_l0, …"""

    def __init__(self):
        super().__init__()
        self.encoder = nn.ModuleDict({"embed": nn.Embedding(10, 5), "rnn": nn.LSTM(5, 6, num_layers=2)})
        self.head = nn.Linear(6, 2)


def model(seed: int = 0, **kwargs) -> Model:
    torch.manual_seed(seed)
    return Model(**kwargs).eval()


def trained_adam(module: nn.Module) -> dict:
    """Adam's state_dict after one step: its state is a dict of tensors keyed by ints (the parameters' indices)."""
    adam = torch.optim.Adam(module.parameters(), lr=1e-3)
    x = torch.randn(3, 2, module.rnn.input_size)
    module.train()
    module.head(module.rnn(x)[0]).sum().backward()
    adam.step()
    module.eval()
    state = adam.state_dict()
    assert state["state"]
    assert all(isinstance(k, int) for k in state["state"])
    assert any(isinstance(v, torch.Tensor) for s in state["state"].values() for v in s.values())
    return state


def prefixed(state_dict: dict, prefix: str) -> dict:
    """The state_dict with every key under `prefix`, as a wrapper module writes it."""
    return {prefix + key: value for key, value in state_dict.items()}


# Each layout: () -> (the object to torch.save, {expected location: the nn.LSTM there}).
def bare():
    m = model()
    return m.rnn.state_dict(), {"": m.rnn}


def nested_module_prefix():
    torch.manual_seed(0)
    m = Encoder().eval()
    return m.state_dict(), {"encoder.rnn.": m.encoder["rnn"]}


def data_parallel():
    m = model()
    return nn.DataParallel(m).state_dict(), {"module.rnn.": m.rnn}  # on the CPU it only wraps the model


def compiled():
    m = model()
    return prefixed(m.state_dict(), "_orig_mod."), {"_orig_mod.rnn.": m.rnn}  # what torch.compile's wrapper saves


def lstm_state_dict_key():
    m = model()
    obj = {"LSTM_state_dict": m.rnn.state_dict(), "epoch": 3, "optimizer": trained_adam(m)}
    return obj, {"LSTM_state_dict/": m.rnn}


def model_state_key():
    m = model()
    return {"model_state": m.state_dict()}, {"model_state/rnn.": m.rnn}


def net_key():
    m = model()
    return {"net": m.state_dict(), "step": 10}, {"net/rnn.": m.rnn}


def two_levels_down():
    enc = model()
    return ({"checkpoint": {"models": {"encoder": enc.state_dict()}, "epoch": 1}},
            {"checkpoint/models/encoder/rnn.": enc.rnn})


def encoder_decoder():
    enc, dec = model(0), model(1, input_size=6, hidden_size=3)
    return ({"encoder": enc.state_dict(), "decoder": dec.state_dict()},
            {"encoder/rnn.": enc.rnn, "decoder/rnn.": dec.rnn})


def list_of_state_dicts():
    enc, dec = model(0), model(1, input_size=6, hidden_size=3)
    return [enc.state_dict(), nn.Linear(3, 3).state_dict(), dec.state_dict()], {"0/rnn.": enc.rnn, "2/rnn.": dec.rnn}


def tuple_of_state_dicts():
    enc, dec = model(0), model(1, input_size=6, hidden_size=3)
    return (enc.rnn.state_dict(), dec.state_dict()), {"0/": enc.rnn, "1/rnn.": dec.rnn}


def optimizer_first():
    m = model()
    return {"optimizer": trained_adam(m), "model": m.state_dict()}, {"model/rnn.": m.rnn}


def optimizer_after_data_parallel():
    m = model()
    adam = trained_adam(m)
    return ({"model": nn.DataParallel(m).state_dict(), "optimizer": adam, "scheduler": {"last_epoch": 3}},
            {"model/module.rnn.": m.rnn})


def bidirectional_projected_nested():
    m = model(2, input_size=5, hidden_size=7, num_layers=2, bidirectional=True, proj_size=3)
    return ({"run": {"models": [{"name": "lm", "weights": m.state_dict()}]}, "epoch": 7},
            {"run/models/0/weights/rnn.": m.rnn})


def lstm_module_list():
    torch.manual_seed(0)
    stack = nn.ModuleList([nn.LSTM(4, 5), nn.LSTM(5, 3, num_layers=2)]).eval()
    return {"state_dict": stack.state_dict()}, {"state_dict/0.": stack[0], "state_dict/1.": stack[1]}


LAYOUTS = [bare, nested_module_prefix, data_parallel, compiled, lstm_state_dict_key, model_state_key, net_key,
           two_levels_down, encoder_decoder, list_of_state_dicts, tuple_of_state_dicts, optimizer_first,
           optimizer_after_data_parallel, bidirectional_projected_nested, lstm_module_list]


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda f: f.__name__)
def test_layout_is_found_and_loads(layout, legacy, tmp_path):
    obj, expected = layout()
    path = written(tmp_path, obj, legacy)
    assert (path.read_bytes()[:2] == b"PK") != legacy
    assert_found(path, expected)
    assert list(find_lstms(obj)) == list(expected)  # the same, in memory
    if len(expected) == 1:  # one LSTM: no prefix needed
        assert_same_outputs(load_lstm(path), *expected.values())


def test_several_lstms_need_a_location_and_each_loads(tmp_path):
    obj, expected = encoder_decoder()
    path = written(tmp_path, obj)
    with pytest.raises(WeightsError, match=r"^found 2 LSTMs; choose one with prefix=: 'encoder/rnn\.', "
                                           r"'decoder/rnn\.'$"):
        load_lstm(path)
    for location, lstm in expected.items():
        assert_same_outputs(load_lstm(path, prefix=location), lstm)


def test_a_bare_module_prefix_still_works_inside_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    lstm = nn.LSTM(3, 5).eval()
    path = written(tmp_path, {"state_dict": prefixed(lstm.state_dict(), "lstm."), "epoch": 2})
    assert list(list_lstms(path)) == ["state_dict/lstm."]
    for prefix in ("lstm", "lstm.", "state_dict/lstm", "state_dict/lstm.", "state_dict", "state_dict/"):
        assert_same_outputs(load_lstm(path, prefix=prefix), lstm)


def test_container_paths_name_an_lstm_when_there_is_one_there(tmp_path):
    obj, expected = encoder_decoder()
    path = written(tmp_path, obj)
    for location, lstm in expected.items():
        container = location.split("/")[0]
        for prefix in (container, container + "/", location.rstrip(".")):
            assert_same_outputs(load_lstm(path, prefix=prefix), lstm)


def test_ambiguous_and_unknown_prefixes(tmp_path):
    obj, expected = encoder_decoder()
    path = written(tmp_path, obj)
    listed = ", ".join(repr(location) for location in expected)
    for prefix in ("rnn", "rnn."):  # the module prefix of both
        with pytest.raises(WeightsError, match=rf"^prefix '{prefix}' matches 2 LSTMs; choose one by its location: "
                                               rf"{listed}$"):
            load_lstm(path, prefix=prefix)
    with pytest.raises(WeightsError, match=rf"^no LSTM at prefix 'nope'; found: {listed}$"):
        load_lstm(path, prefix="nope")
    with pytest.raises(WeightsError, match=rf"^no LSTM at prefix 'encoder/head\.'; found: {listed}$"):
        load_lstm(path, prefix="encoder/head.")


def test_a_top_level_lstm_keeps_its_bare_prefix_location(tmp_path):
    enc, dec = model(0), model(1, input_size=6, hidden_size=3)
    obj = {**prefixed(enc.rnn.state_dict(), "enc."), "extra": {"dec": dec.state_dict()}}
    path = written(tmp_path, obj)
    assert_found(path, {"enc.": enc.rnn, "extra/dec/rnn.": dec.rnn})
    assert_same_outputs(load_lstm(path, prefix="enc"), enc.rnn)  # the trailing dot is optional, as before


def test_order_is_depth_first_in_container_order(tmp_path):
    lstms = [model(seed).rnn for seed in range(5)]
    obj = {"b": lstms[1].state_dict(), **prefixed(lstms[0].state_dict(), "top."),
           "a": [lstms[2].state_dict(), {"x": lstms[3].state_dict()}], "c": (lstms[4].state_dict(),)}
    # a dict's own LSTMs first, then those of the containers it holds, in their order
    assert_found(written(tmp_path, obj), {"top.": lstms[0], "b/": lstms[1], "a/0/": lstms[2], "a/1/x/": lstms[3],
                                          "c/0/": lstms[4]})


def test_keys_with_slashes_and_tildes_are_escaped(tmp_path):
    lstms = [model(seed).rnn for seed in range(3)]
    obj = {"runs/1": lstms[0].state_dict(), "~home": lstms[1].state_dict(), 7: {"w": lstms[2].state_dict()}}
    path = written(tmp_path, obj)
    assert_found(path, {"runs~11/": lstms[0], "~0home/": lstms[1], "7/w/": lstms[2]})


def test_a_shared_or_cyclic_container_is_searched_once(tmp_path):
    m = model()
    sd = m.state_dict()
    obj = {"model": sd, "ema": sd}  # torch.save writes the dict once; both keys load as the same object
    obj["self"] = obj
    path = written(tmp_path, obj)
    loaded = torch.load(path, weights_only=True)
    assert loaded["model"] is loaded["ema"]
    assert loaded["self"] is loaded
    assert_found(path, {"model/rnn.": m.rnn})


def test_the_checks_name_the_location(tmp_path):
    m = model(num_layers=2)
    sd = {key: t.clone() for key, t in m.state_dict().items()}
    sd["rnn.weight_hh_l1"].view(-1)[3] = float("nan")
    with pytest.raises(WeightsError, match=r"^net/rnn\.weight_hh_l1 has 1 NaN/Inf value of"):
        load_lstm(written(tmp_path, {"net": sd}))
    sd = m.state_dict()
    bias = sd.pop("rnn.bias_hh_l1")
    with pytest.raises(WeightsError, match=rf"^missing key ckpt/0/rnn\.bias_hh_l1 \({bias.shape[0]},\)"):
        load_lstm(written(tmp_path, {"ckpt": [sd]}))
    sd = m.state_dict()
    sd.update({key.replace("_l1", "_l2"): sd.pop(key) for key in list(sd) if "_l1" in key})
    with pytest.raises(WeightsError, match=r"^inconsistent layers under 'a/b/rnn\.'"):
        list_lstms(written(tmp_path, {"a": {"b": sd}}))


# --- files without an LSTM -----------------------------------------------------------------


def test_no_lstm_says_what_was_searched_and_mentions_the_gru(tmp_path):
    gru, linear = nn.GRU(3, 4), nn.Linear(3, 2)
    obj = {"net": gru.state_dict(), "head": linear.state_dict(), "history": [{"loss": 0.5}], "epoch": 3}
    for legacy in (False, True):
        with pytest.raises(WeightsError) as error:
            list_lstms(written(tmp_path, obj, legacy))
        message = str(error.value)
        assert message.startswith("no LSTM weights found: expected keys like weight_ih_l0, weight_hh_l0")
        dicts = 1 + len([v for v in obj.values() if isinstance(v, dict)]) + len(obj["history"])
        keys = len(obj) + len(gru.state_dict()) + len(linear.state_dict()) + len(obj["history"][0])
        assert f"searched {dicts} dicts and 1 list (the top level, 'net/', 'head/', 'history/', 'history/0/')" \
            in message
        assert f"holding {keys} keys, found e.g. 'net', 'head', 'history', 'epoch', 'net/weight_ih_l0'" in message
        assert "'net/' holds an nn.GRU, not an LSTM" in message
    with pytest.raises(WeightsError, match=r"^no LSTM weights found.*'net/' holds an nn\.GRU"):
        load_lstm(written(tmp_path, obj), prefix="net")


def test_a_gru_beside_an_lstm_is_named_when_asked_for(tmp_path):
    m = model()
    path = written(tmp_path, {"gru": nn.GRU(3, 4).state_dict(), "lstm": m.state_dict()})
    assert_found(path, {"lstm/rnn.": m.rnn})
    with pytest.raises(WeightsError, match=r"^no LSTM at prefix 'gru'; 'gru/' holds an nn\.GRU, not an LSTM; "
                                           r"found: 'lstm/rnn\.'$"):
        load_lstm(path, prefix="gru")


@pytest.mark.parametrize("obj, what", [
    (torch.zeros(3), r"found a Tensor;"),
    ([torch.zeros(2), torch.ones(3)], r"found a list of 2 items \(Tensor, Tensor\) with no dict in it "
                                      r"\(searched 1 list\);"),
    ((), r"found a tuple of 0 items \(empty\) with no dict in it"),
    (3, r"found an int;"),
])
def test_a_top_level_without_any_dict(obj, what, tmp_path):
    with pytest.raises(WeightsError, match=rf"^expected a state_dict \(a dict of tensors\), {what}.*save the "
                                           r"state_dict instead"):
        list_lstms(written(tmp_path, obj))


def test_keys_that_are_not_strings_are_shown_too(tmp_path):
    obj = {1: torch.zeros(3), None: {2.5: [torch.ones(1)]}}
    with pytest.raises(WeightsError, match=r"^no LSTM weights found: .*searched 2 dicts and 1 list \(the top level, "
                                           r"'None/', 'None/2\.5/'\) holding 3 keys, found e\.g\. '1', 'None', "
                                           r"'None/2\.5'$"):
        list_lstms(written(tmp_path, obj))


def test_a_linear_layer_alone(tmp_path):
    with pytest.raises(WeightsError, match=r"^no LSTM weights found: .*searched 1 dict \(the top level\) holding 2 "
                                           r"keys, found e\.g\. 'weight', 'bias'$"):
        load_lstm(written(tmp_path, nn.Linear(3, 2).state_dict()))


# --- forged files: the search stays bounded ------------------------------------------------


def nested_dicts_pickle(depth: int) -> bytes:
    """A protocol-2 pickle of {'a': {'a': … {} …}}, `depth` dicts deep, built without recursion (torch.save's pickler
    would need a raised recursion limit)."""
    key = b"X\x01\x00\x00\x00a"  # BINUNICODE 'a'
    return b"\x80\x02" + (b"}" + key) * depth + b"}" + b"s" * depth + b"."


def nested_lists_pickle(depth: int) -> bytes:
    """[[[…[]…]]], `depth` lists deep."""
    return b"\x80\x02" + b"]" * (depth + 1) + b"a" * depth + b"."


def assert_finishes(call, seconds: float = 60.0):
    """Run `call` (which must raise WeightsError, never RecursionError); its message."""
    start = time.monotonic()
    with pytest.raises(WeightsError) as error:
        call()
    assert time.monotonic() - start < seconds  # only a guard against a hang: the walk is bounded, not timed here
    return str(error.value)


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_ten_thousand_nested_dicts(legacy):
    pkl = nested_dicts_pickle(10_000)
    data = bombs.legacy_file(pkl) if legacy else bombs.stored_archive(pkl)
    loaded = torch.load(io.BytesIO(data), weights_only=True)  # live: torch.load builds it
    depth = 0
    while loaded:
        loaded, depth = loaded["a"], depth + 1
    assert depth == 10_000
    message = assert_finishes(lambda: list_lstms(data))
    assert message.startswith("no LSTM weights found")
    assert f"searched {MAX_SEARCH_DEPTH + 1} dicts (the top level, 'a/', 'a/a/'" in message
    assert f"1 container nested deeper than {MAX_SEARCH_DEPTH} levels was not searched" in message


def test_ten_thousand_nested_lists():
    data = bombs.stored_archive(nested_lists_pickle(10_000))
    message = assert_finishes(lambda: list_lstms(data))
    assert message.startswith("expected a state_dict (a dict of tensors), found a list of 1 item (list) with no dict")
    assert f"nested deeper than {MAX_SEARCH_DEPTH} levels was not searched" in message


def test_a_list_of_many_empty_dicts(tmp_path):
    count = MAX_SEARCH_CONTAINERS
    path = written(tmp_path, [{} for _ in range(count)])
    message = assert_finishes(lambda: list_lstms(path))
    assert message.startswith("no LSTM weights found")
    assert f"searched {count - 1:,} dicts and 1 list (the top level, '0/', '1/'" in message
    assert f"the search stopped after {MAX_SEARCH_CONTAINERS:,} containers, its limit" in message
    with pytest.raises(WeightsError, match="the search stopped after"):
        load_lstm(path, prefix="0/")


def test_lstms_are_found_as_deep_as_the_limit_and_no_deeper(tmp_path):
    m = model()
    for depth, found in ((MAX_SEARCH_DEPTH, True), (MAX_SEARCH_DEPTH + 1, False)):
        obj = m.state_dict()
        for _ in range(depth):
            obj = {"a": obj}
        path = written(tmp_path, obj)
        if found:
            assert_found(path, {"a/" * depth + "rnn.": m.rnn})
        else:
            with pytest.raises(WeightsError, match=f"1 container nested deeper than {MAX_SEARCH_DEPTH} levels"):
                list_lstms(path)


def test_a_huge_key_is_cut_short_in_messages(tmp_path):
    m = model()
    key = "k" * 100_000
    path = written(tmp_path, {key: m.state_dict(), "other": m.state_dict()})
    found = list_lstms(path)
    assert list(found) == [key + "/rnn.", "other/rnn."]  # the location itself is whole
    with pytest.raises(WeightsError) as error:
        load_lstm(path)
    assert len(str(error.value)) < 1000
    assert_same_outputs(load_lstm(path, prefix=key + "/rnn."), m.rnn)
