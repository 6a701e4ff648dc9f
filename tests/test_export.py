"""Exports: the .npz round-trips a Trace exactly, the CSV holds every value, weights and figures load elsewhere."""

from __future__ import annotations

import io
import json
import time
import tracemalloc

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from torch import nn

from lstm_viz import InstrumentedLSTM
from lstm_viz.export import figure_html, load_npz, save_npz, state_dict_bytes, to_long_csv

CONFIGS = [
    dict(num_layers=2, bidirectional=True),
    dict(num_layers=2, proj_size=3, bidirectional=True, batch_first=True),
    dict(num_layers=1, bias=False),
    dict(num_layers=2, unbatched=True),
    dict(num_layers=2, bidirectional=True, dtype=torch.float64),
    dict(num_layers=1, dtype=torch.bfloat16),
]


def traced(unbatched=False, dtype=torch.float32, engine="auto", **option):
    torch.manual_seed(3)
    m = InstrumentedLSTM(3, 5, dtype=dtype, **option)
    T, B = 7, 2
    shape = (T, 3) if unbatched else (B, T, 3) if m.batch_first else (T, B, 3)
    return m, m.trace(torch.randn(shape, dtype=dtype), engine=engine)


def assert_same_trace(a, b):
    assert a.config == b.config
    assert a.batched == b.batched
    assert a.engine == b.engine
    assert a.meta == b.meta
    for name in ("f", "i", "g", "o", "c", "h", "output", "h_n", "c_n", "h0", "c0"):
        x, y = getattr(a, name), getattr(b, name)
        assert y.is_contiguous(), name
        assert y.device.type == "cpu", name
        assert y.dtype == x.dtype, name
        assert torch.equal(x, y), name
    assert len(a.layer_inputs) == len(b.layer_inputs)
    for x, y in zip(a.layer_inputs, b.layer_inputs, strict=True):
        assert torch.equal(x, y)
        assert y.is_contiguous()
    assert list(a.weights) == list(b.weights)
    for name in a.weights:
        assert torch.equal(a.weights[name], b.weights[name])
        assert b.weights[name].dtype == a.weights[name].dtype


@pytest.mark.parametrize("option", CONFIGS, ids=str)
def test_npz_round_trip_is_exact(option):
    _, tr = traced(**option)
    buffer = io.BytesIO()
    save_npz(tr, buffer)
    buffer.seek(0)
    assert_same_trace(tr, load_npz(buffer))


@pytest.mark.parametrize("engine", ["stepwise", "fused"])
def test_npz_round_trip_through_a_path(tmp_path, engine):
    _, tr = traced(engine=engine, num_layers=2, bidirectional=True)
    tr.meta["note"] = "kept"
    path = tmp_path / "trace.data"  # no .npz suffix: must be written exactly there
    save_npz(tr, path)
    assert [p.name for p in tmp_path.iterdir()] == ["trace.data"]
    assert_same_trace(tr, load_npz(str(path)))


def test_npz_has_the_documented_layout():
    _, tr = traced(num_layers=2, bidirectional=True)
    buffer = io.BytesIO()
    save_npz(tr, buffer)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as archive:
        names = set(archive.files)
        meta = json.loads(str(archive["meta"][()]))
        assert archive["f"].shape == (2, 2, 7, 2, 5)
    assert {"f", "i", "g", "o", "c", "h", "output", "h_n", "c_n", "h0", "c0", "layer_input_0", "layer_input_1"} <= names
    assert {f"weight/{w}" for w in tr.weights} <= names
    assert meta["config"] == tr.config.to_dict()
    assert meta["dtype"] == "float32"
    assert meta["version"] == 1
    assert meta["batched"] is True
    assert meta["engine"] == tr.engine


def npz_bytes(**arrays) -> io.BytesIO:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    buffer.seek(0)
    return buffer


def our_meta(**change) -> np.ndarray:
    _, tr = traced()
    buffer = io.BytesIO()
    save_npz(tr, buffer)
    buffer.seek(0)
    with np.load(buffer) as archive:
        meta = json.loads(str(archive["meta"][()]))
    return np.array(json.dumps(meta | change))


@pytest.mark.parametrize("make, match", [
    (lambda: io.BytesIO(b"definitely not a zip file"), "not an lstm_viz trace"),
    (lambda: io.BytesIO(b""), "not an lstm_viz trace"),
    (lambda: npz_bytes(x=np.arange(3)), "no 'meta'"),
    (lambda: npz_bytes(meta=np.array("{not json")), "JSON"),
    (lambda: npz_bytes(meta=np.array(json.dumps({"format": "other"}))), "format"),
    (lambda: npz_bytes(meta=our_meta(version=99)), "version"),
    (lambda: npz_bytes(meta=our_meta(config={"input_size": 3})), "config"),
    (lambda: npz_bytes(meta=our_meta()), "missing arrays"),
    (lambda: npz_bytes(meta=np.array([{"a": 1}], dtype=object)), "not an lstm_viz trace"),
], ids=["garbage", "empty", "no-meta", "bad-json", "other-format", "version", "bad-config", "no-arrays", "pickled"])
def test_load_rejects_files_not_in_our_layout(make, match):
    with pytest.raises(ValueError, match=match):
        load_npz(make())


def test_load_rejects_a_plain_npy(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.arange(4))
    with pytest.raises(ValueError, match="not an lstm_viz trace"):
        load_npz(path)


def saved_members(**option) -> dict[str, np.ndarray]:
    """A saved trace's members as arrays, to rebuild the file with one of them changed."""
    _, tr = traced(**option)
    buffer = io.BytesIO()
    save_npz(tr, buffer)
    buffer.seek(0)
    with np.load(buffer) as archive:
        return {name: archive[name] for name in archive.files}


@pytest.mark.parametrize("name, bad", [
    ("f", lambda a: a[:, :, :, :, :-1]),  # a unit short
    ("c", lambda a: np.concatenate([a, a], axis=2)),  # more steps than f
    ("layer_input_0", lambda a: a[..., :1]),  # fewer features than input_size
    ("weight/weight_ih_l0", lambda a: a.T),  # transposed
    ("h0", lambda a: a.astype(np.float64)),  # another dtype than the trace's
    ("output", lambda a: a[:-1]),  # a step short
], ids=["f-units", "c-steps", "input-features", "weight-transposed", "h0-dtype", "output-steps"])
def test_load_rejects_arrays_of_the_wrong_shape_or_dtype(name, bad):
    members = saved_members()
    members[name] = bad(members[name])
    with pytest.raises(ValueError, match=name):
        load_npz(npz_bytes(**members))


def test_load_refuses_a_deflate_bomb_without_inflating_it(tmp_path):
    """A member that declares 512 MB (zeros deflate ~1000:1, so the file is ~0.5 MB) is refused from its
    header: nothing near its size is ever allocated."""
    import tracemalloc
    import zipfile

    members = saved_members()
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as bomb:
        for name, array in members.items():
            if name != "f":
                with bomb.open(name + ".npy", "w") as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)
        shape = (1, 1, 2**27 // 8, 2, 8)  # 2**27 float32 values: 512 MB, far more steps than the other arrays
        with bomb.open("f.npy", "w", force_zip64=True) as member:
            np.lib.format.write_array_header_1_0(member, {"descr": "<f4", "fortran_order": False, "shape": shape})
            chunk = bytes(2**24)
            for _ in range(2**29 // len(chunk)):
                member.write(chunk)
    assert path.stat().st_size < 2**21
    tracemalloc.start()
    with pytest.raises(ValueError, match="'f' has shape"):
        load_npz(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 50 * 2**20, f"{peak / 2**20:.0f} MB allocated to refuse it"


def test_load_refuses_a_trace_above_the_byte_limit():
    members = saved_members()
    with pytest.raises(ValueError, match="above the"):
        load_npz(npz_bytes(**members), max_bytes=1000)
    assert load_npz(npz_bytes(**members)).f.shape == torch.Size(members["f"].shape)  # the same file, by default


def test_load_turns_every_failure_into_a_value_error():
    members = saved_members()
    members["meta"] = np.array("[" * 100_000 + "]" * 100_000)  # JSON deep enough to exhaust the recursion limit
    with pytest.raises(ValueError, match="JSON"):
        load_npz(npz_bytes(**members))


@pytest.mark.parametrize("option", [dict(num_layers=2, proj_size=3, bidirectional=True),
                                    dict(dtype=torch.float64), dict(unbatched=True)], ids=str)
def test_long_csv_has_every_value(option):
    _, tr = traced(**option)
    lines = to_long_csv(tr).decode().splitlines()
    assert lines[0] == "layer,direction,t,batch,unit,quantity,value"
    sizes = {q: tr.get(q).numel() for q in ("f", "i", "g", "o", "c", "h")}
    assert len(lines) == 1 + sum(sizes.values())
    rows = [line.split(",") for line in lines[1:]]
    assert [q for q in ("f", "i", "g", "o", "c", "h") for _ in range(sizes[q])] == [r[5] for r in rows]
    to_float = np.float64 if tr.f.dtype == torch.float64 else np.float32
    for r in rows[:: max(1, len(rows) // 97)] + rows[-3:]:  # a spread of rows, and the last h values
        layer, d, t, b, u = map(int, r[:5])
        assert to_float(r[6]) == tr.get(r[5])[layer, d, t, b, u].item()
    # every value parses back to the exact tensor value
    for q in ("f", "h"):
        values = [to_float(r[6]) for r in rows if r[5] == q]
        assert np.array_equal(np.array(values), tr.get(q).reshape(-1).numpy())


def test_long_csv_h_rows_use_projection_units():
    _, tr = traced(proj_size=2)
    units = {int(r.split(",")[4]) for r in to_long_csv(tr).decode().splitlines()[1:] if r.split(",")[5] == "h"}
    assert units == {0, 1}


def test_long_csv_of_a_large_trace_is_refused_before_any_work_offering_the_npz():
    """The review's case: an admitted hidden_size=256, seq_len=1000, batch 8 trace (12 M values) took +1.7 GB."""
    model = InstrumentedLSTM(4, 256)
    tr = model.trace(torch.randn(1000, 8, 4))
    started = time.perf_counter()
    with pytest.raises(ValueError, match=r"12,288,000 rows .* the limit here is 2,000,000: download the .npz"):
        to_long_csv(tr)
    assert time.perf_counter() - started < 0.5  # refused from its size, not after writing


def test_long_csv_memory_stays_within_what_the_app_charges_for_it():
    from lstm_viz.export import CSV_BYTES_PER_VALUE, long_csv_values

    model = InstrumentedLSTM(4, 64, num_layers=2)
    tr = model.trace(torch.randn(500, 4, 4))  # 768,000 values, under the limit
    tracemalloc.start()
    data = to_long_csv(tr)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert data.count(b"\n") == 1 + long_csv_values(tr)
    assert peak <= CSV_BYTES_PER_VALUE * long_csv_values(tr), peak / long_csv_values(tr)


@pytest.mark.parametrize("option", [dict(num_layers=2, bidirectional=True), dict(proj_size=3, bias=False)], ids=str)
def test_state_dict_bytes_load_into_nn_lstm(option):
    m, _ = traced(**option)
    lstm = nn.LSTM(**m.config.to_dict())
    lstm.load_state_dict(torch.load(io.BytesIO(state_dict_bytes(m)), weights_only=True))
    x = torch.randn(6, 2, 3)
    with torch.no_grad():
        torch.testing.assert_close(lstm(x)[0], m(x)[0])
    # also from an nn.LSTM itself, back into another
    again = nn.LSTM(**m.config.to_dict())
    again.load_state_dict(torch.load(io.BytesIO(state_dict_bytes(lstm)), weights_only=True))
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), lstm.state_dict().values(), strict=True))


def test_figure_html_is_a_standalone_page():
    fig = go.Figure(go.Heatmap(z=[[1, 2], [3, 4]]), layout_title_text="export-check-title")
    for spec in (fig, fig.to_dict()):
        html = figure_html(spec)
        assert "<html" in html
        assert "plotly" in html
        assert "export-check-title" in html
        assert 'src="https://cdn.plot.ly' not in html  # plotly.js inlined: opens offline
