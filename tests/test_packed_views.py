"""A trace of a PackedSequence, past the trace itself: the names the notebook API promises (to_npz / from_npz,
saturation), the analyses and figures, all counting each sequence's real steps only."""

import io

import numpy as np
import pytest
import torch
from figure_data import decode_array
from torch.nn.utils.rnn import pack_padded_sequence

import lstm_viz
from lstm_viz import InstrumentedLSTM, Trace
from lstm_viz.analysis import memory_ledger, retention
from lstm_viz.explorer.payload import unpack, window_payload
from lstm_viz.figures import cell_bound

LENGTHS = [6, 2, 4, 2, 5]


def packed_trace(bidirectional=True, dtype=torch.float32):
    torch.manual_seed(3)
    model = InstrumentedLSTM(3, 5, num_layers=2, bidirectional=bidirectional, dtype=dtype)
    x = torch.randn(max(LENGTHS), len(LENGTHS), 3, dtype=dtype)
    packed = pack_padded_sequence(x, torch.tensor(LENGTHS), enforce_sorted=False)
    return model, x, model.trace(packed)


def alone(model, x, b):
    """Sequence b traced by itself (unbatched), its own length long."""
    return model.trace(x[:LENGTHS[b], b])


def test_the_public_names_are_there():
    assert lstm_viz.load_lstm is lstm_viz.loading.load_lstm
    assert lstm_viz.list_lstms is lstm_viz.loading.list_lstms
    for name in ("to_npz", "from_npz", "saturation", "steps", "packed"):
        assert hasattr(Trace, name), name


def test_npz_round_trip_keeps_the_packing_and_every_value():
    _, _, trace = packed_trace(dtype=torch.float64)
    buffer = io.BytesIO()
    trace.to_npz(buffer)
    buffer.seek(0)
    back = Trace.from_npz(buffer)
    assert back.packed
    assert back.lengths.tolist() == LENGTHS
    assert torch.equal(back.output.data, trace.output.data)
    for name in ("batch_sizes", "sorted_indices", "unsorted_indices"):
        assert torch.equal(getattr(back.output, name), getattr(trace.output, name)), name
    for name in "ifgoch":
        torch.testing.assert_close(back.get(name), trace.get(name), rtol=0, atol=0, equal_nan=True)


def test_an_unpacked_trace_round_trips_unpacked(tmp_path):
    model, x, _ = packed_trace()
    trace = model.trace(x)
    trace.to_npz(tmp_path / "t.npz")
    back = Trace.from_npz(tmp_path / "t.npz")
    assert not back.packed
    assert torch.equal(back.output, trace.output)


def test_a_packed_file_whose_lengths_disagree_with_its_packing_is_refused(tmp_path):
    _, _, trace = packed_trace()
    trace.to_npz(tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz") as archive:
        arrays = {name: archive[name] for name in archive.files}
    forged = {"batch_sizes do not follow from its lengths": arrays["lengths"] - (arrays["lengths"] == 6),
              "do not describe a packed batch": arrays["lengths"][::-1].copy()}  # not longest first any more
    for message, lengths in forged.items():
        np.savez(tmp_path / "forged.npz", **(arrays | {"lengths": lengths}))
        with pytest.raises(ValueError, match=message):
            Trace.from_npz(tmp_path / "forged.npz")


def test_saturation_counts_real_steps_only():
    model, x, trace = packed_trace()
    sat = trace.saturation(0.3, 0.7)
    f = trace.array("f")
    for b_layer in range(2):
        real = np.concatenate([f[b_layer, :, :LENGTHS[b], b] for b in range(len(LENGTHS))], axis=1)  # (D, Σn, H)
        want_low, want_high = (real < 0.3).mean(axis=1), (real > 0.7).mean(axis=1)
        np.testing.assert_allclose(sat["f"][b_layer, ..., 0], want_low)
        np.testing.assert_allclose(sat["f"][b_layer, ..., 1], want_high)
    assert not np.isnan(sat["f"]).any()


@pytest.mark.parametrize("direction", [0, 1])
def test_memory_ledger_and_retention_of_a_short_sequence_are_its_own(direction):
    model, x, trace = packed_trace()
    b = 1  # length 2 of 6
    own = alone(model, x, b)
    ledger, want = memory_ledger(trace, 0, direction, b), memory_ledger(own, 0, direction, 0)
    n = LENGTHS[b]
    for part in ("kept", "written"):
        np.testing.assert_allclose(ledger[part][:n], want[part], rtol=1e-5, atol=1e-6)
        assert np.isnan(ledger[part][n:]).all()
    np.testing.assert_allclose(ledger["time_constant"], want["time_constant"], rtol=1e-5)
    np.testing.assert_allclose(retention(trace, 0, 6, 0, direction, b), retention(own, 0, n, 0, direction, 0),
                               rtol=1e-5)


def test_step_heatmap_leaves_ended_sequences_empty():
    _, _, trace = packed_trace()
    t = 3  # sequences 1 and 3 (length 2) have ended
    z = decode_array(trace.heatmap("f", t).data[0].z)  # batch × units
    ended = [b for b, n in enumerate(LENGTHS) if n <= t]
    running = [b for b, n in enumerate(LENGTHS) if n > t]
    assert np.isnan(z[ended]).all()
    assert not np.isnan(z[running]).any()
    np.testing.assert_allclose(z[running], trace.array("f")[0, 0, t][running], rtol=1e-6)


def test_the_explorer_window_of_a_packed_trace_is_valid_and_keeps_the_gaps():
    _, _, trace = packed_trace()
    header, arrays = unpack(window_payload(trace, 0, 1, 0))
    assert header["c_bound"] == pytest.approx(float(np.nanmax(np.abs(trace.array("c")[0, 1]))))
    assert header["c_bound"] == pytest.approx(cell_bound(trace, 0, 1))
    f = arrays["f"]  # (W, B, H)
    for b, n in enumerate(LENGTHS):
        assert not np.isnan(f[:n, b]).any()
        assert np.isnan(f[n:, b]).all()
