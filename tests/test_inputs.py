"""Unit tests for lstm_viz.inputs: every input source, good and bad."""

import contextlib
import io
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lstm_viz.inputs import (
    MAX_BATCH,
    MAX_FEATURES,
    MAX_STEPS,
    MAX_TYPED_CHARS,
    SIGNAL_KINDS,
    InputError,
    SequenceInput,
    check_input_size,
    from_csv,
    from_npy,
    load_file,
    parse_typed,
    random_tensor,
    signal,
    text_to_onehot,
)


def npy_bytes(arr: np.ndarray, **kwargs) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, **kwargs)
    return buf.getvalue()


def steps(seq: SequenceInput, b: int = 0) -> list[list[float]]:
    """Batch element b as a list of timesteps, each a list of feature values."""
    return seq.x[:, b, :].tolist()


# ---------------------------------------------------------------------------- random


def test_random_shape_dtype_labels():
    seq = random_tensor(7, 3, 5)
    assert seq.x.shape == (7, 3, 5)
    assert seq.x.dtype == torch.float32
    assert (seq.seq_len, seq.batch_size, seq.input_size) == (7, 3, 5)
    assert seq.labels == [f"t={t}" for t in range(7)]
    assert seq.source == "random normal, seed 0"
    assert seq.vocab is None


def test_random_is_reproducible_and_seeds_differ():
    assert torch.equal(random_tensor(6, 2, 3, seed=4).x, random_tensor(6, 2, 3, seed=4).x)
    assert not torch.equal(random_tensor(6, 2, 3, seed=4).x, random_tensor(6, 2, 3, seed=5).x)


def test_random_float32_and_float64_see_the_same_numbers():
    x32 = random_tensor(5, 2, 3, seed=1).x
    x64 = random_tensor(5, 2, 3, seed=1, dtype=torch.float64).x
    assert x64.dtype == torch.float64
    assert torch.equal(x32, x64.float())


def test_random_distributions():
    normal = random_tensor(1000, 4, 8, seed=2).x
    assert abs(normal.mean().item()) < 0.05
    assert abs(normal.std().item() - 1) < 0.05
    uniform = random_tensor(1000, 4, 8, seed=2, distribution="uniform").x
    assert uniform.min() >= -1
    assert uniform.max() <= 1
    assert uniform.min() < -0.99  # fills the range, not just [0, 1)
    assert uniform.max() > 0.99
    assert abs(uniform.mean().item()) < 0.05


def test_random_leaves_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    random_tensor(10, 2, 2, seed=9)
    signal("random_walk", 10, noise=0.5)
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------------------- typed


def test_typed_one_step_per_line_mixed_separators():
    seq = parse_typed("1, 2\n3 4\n5,6\n", 2)
    assert seq.x.shape == (3, 1, 2)
    assert steps(seq) == [[1, 2], [3, 4], [5, 6]]
    assert seq.labels == ["t=0", "t=1", "t=2"]


def test_typed_semicolons_separate_steps():
    assert steps(parse_typed("1 2; 3 4;5 6;", 2)) == [[1, 2], [3, 4], [5, 6]]


def test_typed_single_line_of_scalars_with_input_size_1():
    seq = parse_typed("1 2, 3", 1)
    assert seq.x.shape == (3, 1, 1)
    assert seq.x.flatten().tolist() == [1, 2, 3]


def test_typed_infers_width_from_first_step():
    assert parse_typed("1 2 3").x.shape == (1, 1, 3)
    assert parse_typed("1 2 3\n4 5 6").x.shape == (2, 1, 3)


def test_typed_blank_lines_start_batch_elements():
    seq = parse_typed("1 2\n3 4\n\n\n5 6\n7 8\n\n", 2)
    assert seq.x.shape == (2, 2, 2)  # time-major: (steps, batch, features)
    assert steps(seq, 0) == [[1, 2], [3, 4]]
    assert steps(seq, 1) == [[5, 6], [7, 8]]
    scalars = parse_typed("1 2 3\n\n4 5 6", 1)
    assert scalars.x.shape == (3, 2, 1)
    assert scalars.x[:, 1, 0].tolist() == [4, 5, 6]


def test_typed_unicode_minus_scientific_and_signs():
    seq = parse_typed("\u22121.5, 1e-3, 2.5E+2, -.5, 3., +7", 1, dtype=torch.float64)
    assert seq.x.flatten().tolist() == [-1.5, 1e-3, 250.0, -0.5, 3.0, 7.0]


def test_typed_comments_and_crlf():
    seq = parse_typed("# x, y\r\n1 2\r\n# between steps, not a batch break\r\n3 4\r\n", 2)
    assert steps(seq) == [[1, 2], [3, 4]]


def test_typed_float64_keeps_precision():
    assert parse_typed("0.1", 1, dtype=torch.float64).x.item() == 0.1


@settings(max_examples=60, deadline=None)
@given(
    data=st.lists(
        st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=2, max_size=2), min_size=1, max_size=8
    ),
    sep=st.sampled_from([", ", " ", ",", "\t", " , "]),
)
def test_typed_round_trips_what_it_is_given(data, sep):
    text = "\n".join(sep.join(repr(v) for v in step) for step in data)
    seq = parse_typed(text, 2, dtype=torch.float64)
    assert steps(seq) == data


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=60), input_size=st.sampled_from([None, 1, 2, 3]))
def test_typed_never_leaks_another_error(text, input_size):
    try:
        seq = parse_typed(text, input_size)
    except InputError:
        return
    assert torch.isfinite(seq.x).all()
    assert input_size is None or seq.input_size == input_size


# ---------------------------------------------------------------------------- signals


@pytest.mark.parametrize("kind", SIGNAL_KINDS)
def test_signal_shape_and_reproducibility(kind):
    seq = signal(kind, 40, batch_size=3, input_size=2, noise=0.1, seed=3)
    assert seq.x.shape == (40, 3, 2)
    assert seq.x.dtype == torch.float32
    assert seq.labels[0] == "t=0"
    assert len(seq.labels) == 40
    assert torch.isfinite(seq.x).all()
    assert torch.equal(seq.x, signal(kind, 40, batch_size=3, input_size=2, noise=0.1, seed=3).x)
    assert not torch.equal(seq.x, signal(kind, 40, batch_size=3, input_size=2, noise=0.1, seed=4).x)


@pytest.mark.parametrize("kind", ["sine", "square", "sawtooth", "impulse", "random_walk"])
def test_signal_batch_rows_and_features_differ(kind):
    x = signal(kind, 64, batch_size=2, input_size=2).x
    series = [x[:, b, k] for b in range(2) for k in range(2)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.equal(series[i], series[j])


def test_sine_has_the_period_and_amplitude():
    x = signal("sine", 64, period=16, amplitude=2.5, dtype=torch.float64).x[:, 0, 0]
    assert torch.allclose(x[16:], x[:-16], atol=1e-12)
    assert x[0].item() == 0
    assert x[4].item() == pytest.approx(2.5)
    assert x[12].item() == pytest.approx(-2.5)
    assert x.abs().max().item() == pytest.approx(2.5)


def test_sine_phase_shifts_it_to_cosine():
    x = signal("sine", 32, period=8, phase=math.pi / 2, dtype=torch.float64).x[:, 0, 0]
    expected = torch.cos(2 * math.pi * torch.arange(32, dtype=torch.float64) / 8)
    assert torch.allclose(x, expected, atol=1e-12)


def test_square_takes_plus_and_minus_amplitude():
    x = signal("square", 32, period=8, amplitude=3).x[:, 0, 0]
    assert set(x.tolist()) == {3.0, -3.0}
    assert x[:4].tolist() == [3.0] * 4
    assert x[4:8].tolist() == [-3.0] * 4


def test_sawtooth_ramps_once_per_period():
    x = signal("sawtooth", 16, period=4, dtype=torch.float64).x[:, 0, 0]
    assert x[:4].tolist() == [-1.0, -0.5, 0.0, 0.5]
    assert torch.equal(x[4:], x[:-4])


@pytest.mark.parametrize(
    "period, length, expected",
    [(16, 50, [0, 16, 32, 48]), (3, 50, list(range(0, 50, 3))), (2.5, 12, [0, 3, 5, 8, 10])],
)
def test_impulse_positions(period, length, expected):
    x = signal("impulse", length, period=period, amplitude=2).x[:, 0, 0]
    assert torch.nonzero(x).flatten().tolist() == expected
    assert set(x[x != 0].tolist()) == {2.0}


def test_step_switches_on_at_period():
    x = signal("step", 20, period=5, amplitude=4).x[:, 0, 0]
    assert x[:5].tolist() == [0.0] * 5
    assert x[5:].tolist() == [4.0] * 15


def test_random_walk_increments_have_std_amplitude():
    x = signal("random_walk", 20000, amplitude=0.5, seed=1, dtype=torch.float64).x[:, 0, 0]
    increments = torch.diff(x, prepend=torch.zeros(1, dtype=torch.float64))
    assert increments.std().item() == pytest.approx(0.5, rel=0.03)
    assert abs(increments.mean().item()) < 0.02
    assert torch.allclose(increments.cumsum(0), x)


def test_noise_is_seeded_gaussian_with_std_noise():
    clean = signal("sine", 20000, dtype=torch.float64).x
    noisy = signal("sine", 20000, noise=0.3, seed=7, dtype=torch.float64).x
    assert (noisy - clean).std().item() == pytest.approx(0.3, rel=0.03)
    assert torch.equal(noisy, signal("sine", 20000, noise=0.3, seed=7, dtype=torch.float64).x)
    assert torch.equal(clean, signal("sine", 20000, seed=99, dtype=torch.float64).x)  # no noise: seed unused


# ---------------------------------------------------------------------------- text


def test_text_one_hot_decodes_back():
    text = "hello world"
    seq = text_to_onehot(text)
    assert seq.vocab == tuple(sorted(set(text)))
    assert seq.x.shape == (len(text), 1, len(seq.vocab))
    assert torch.equal(seq.x.sum(-1), torch.ones(len(text), 1))
    assert "".join(seq.vocab[i] for i in seq.x[:, 0].argmax(-1).tolist()) == text
    assert seq.labels == ["h", "e", "l", "l", "o", "␣", "w", "o", "r", "l", "d"]


def test_text_with_given_vocab_keeps_its_order():
    seq = text_to_onehot("ba\nc\t", ["c", "b", "a", "\n", "\t", "z"])
    assert seq.vocab == ("c", "b", "a", "\n", "\t", "z")
    assert seq.input_size == 6
    assert seq.x[:, 0].argmax(-1).tolist() == [1, 2, 3, 0, 4]
    assert seq.labels == ["b", "a", "⏎", "c", "⇥"]
    assert text_to_onehot("abc", "abcdefghijklmnopqrstuvwxyz ").input_size == 27


@settings(max_examples=100, deadline=None)
@given(text=st.text(min_size=1, max_size=40))
def test_text_round_trips_any_text(text):
    seq = text_to_onehot(text)
    assert "".join(seq.vocab[i] for i in seq.x[:, 0].argmax(-1).tolist()) == text
    assert all(label for label in seq.labels)  # never an empty axis label


# ---------------------------------------------------------------------------- CSV and npy


def test_csv_without_header():
    seq = from_csv(b"1,2\n3,4\n5,6\n")
    assert seq.x.shape == (3, 1, 2)
    assert steps(seq) == [[1, 2], [3, 4], [5, 6]]
    assert seq.labels == ["t=0", "t=1", "t=2"]


def test_csv_with_header_bom_crlf_and_trailing_comma():
    seq = from_csv("\ufefftime,x,\r\n1,2,\r\n3,\u22124,\r\n".encode())
    assert steps(seq) == [[1, 2], [3, -4]]
    assert "header" in seq.source


@pytest.mark.parametrize("text", ["1\t2\n3\t4\n", "1;2\n3;4\n", "1 2\n  3   4\n", '"1","2"\n"3","4"\n'])
def test_csv_other_delimiters(text):
    assert steps(from_csv(text)) == [[1, 2], [3, 4]]


def test_csv_reads_numpy_savetxt_output():
    arr = np.arange(12, dtype=np.float64).reshape(4, 3) / 7
    buf = io.StringIO()
    np.savetxt(buf, arr, delimiter=",", header="a,b,c")
    seq = from_csv(buf.getvalue(), dtype=torch.float64)
    assert np.allclose(seq.x[:, 0].numpy(), arr, rtol=1e-15)


@pytest.mark.parametrize(
    "arr, shape",
    [
        (np.arange(5.0), (5, 1, 1)),
        (np.arange(12.0).reshape(4, 3), (4, 1, 3)),
        (np.arange(24.0).reshape(4, 2, 3), (4, 2, 3)),
    ],
)
def test_npy_ranks(arr, shape):
    seq = from_npy(npy_bytes(arr))
    assert seq.x.shape == shape
    assert seq.x.dtype == torch.float32
    assert torch.equal(seq.x.flatten(), torch.from_numpy(arr).float().flatten())
    assert len(seq.labels) == shape[0]


@pytest.mark.parametrize(
    "arr",
    [np.arange(6, dtype=np.int16), np.array([True, False]), np.arange(4, dtype=">f8"),
     np.asfortranarray(np.arange(6.0).reshape(3, 2)), np.arange(3, dtype=np.float16)],
)
def test_npy_numeric_dtypes_and_layouts(arr):
    seq = from_npy(npy_bytes(arr), dtype=torch.float64)
    assert seq.x.dtype == torch.float64
    assert np.array_equal(seq.x.reshape(arr.shape).numpy(), arr.astype(np.float64))


def test_load_file_dispatches_on_extension():
    assert load_file("data.csv", b"1,2\n3,4").x.shape == (2, 1, 2)
    assert load_file("DATA.TXT", b"1 2 3\n").x.shape == (1, 1, 3)
    seq = load_file("dir/a.npy", npy_bytes(np.zeros((3, 2))))
    assert seq.x.shape == (3, 1, 2)
    assert seq.source.startswith("dir/a.npy")


@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=200))
def test_files_never_leak_another_error(data):
    for load in (from_csv, from_npy):
        with contextlib.suppress(InputError):
            load(data)


@settings(max_examples=200, deadline=None)
@given(cut=st.integers(0, 200), flip=st.integers(0, 200), byte=st.integers(0, 255))
def test_damaged_npy_never_leaks_another_error(cut, flip, byte):
    data = bytearray(npy_bytes(np.arange(12.0).reshape(4, 3)))
    if flip < len(data):
        data[flip] = byte
    with contextlib.suppress(InputError):
        from_npy(bytes(data[: len(data) - cut]))


# ---------------------------------------------------------------------------- input_size check


def test_check_input_size():
    seq = parse_typed("1 2 3")
    check_input_size(seq, 3)
    with pytest.raises(InputError, match="input has 3 features per step but input_size is 5"):
        check_input_size(seq, 5)


def test_input_error_is_a_value_error():
    assert issubclass(InputError, ValueError)


# ---------------------------------------------------------------------------- bad inputs

_GOOD = np.arange(12.0).reshape(4, 3)
_NAN = _GOOD.copy()
_NAN[1, 2] = np.nan

BAD = {
    # typed
    "wrong width": (lambda: parse_typed("1 2\n3 4\n5 6 7", 2),
        "line 3: expected 2 values (input_size 2), found 3"),
    "width from first step": (lambda: parse_typed("1 2\n3 4 5"),
        "line 2: expected 2 values (as in the first step"),
    "width per ;-step": (lambda: parse_typed("1 2; 3", 2), "line 1, step 2: expected 2 values"),
    "several per line at size 1": (lambda: parse_typed("1 2\n3", 1),
        "line 1: expected 1 value (input_size 1)"),
    "comment lines still count": (lambda: parse_typed("# c\n1 2\n1 2 3", 2), "line 3: expected 2 values"),
    "word": (lambda: parse_typed("1\nabc", 1), 'line 2, value 1: "abc" is not a number'),
    "too many characters to type": (lambda: parse_typed("0\n" * (MAX_TYPED_CHARS // 2 + 1)),
        "too long to type: 1,000,002 characters, the limit is 1,000,000; upload it as a .csv or .npy"),
    "empty": (lambda: parse_typed(""), "empty input: type at least one timestep"),
    "whitespace only": (lambda: parse_typed("  \n\t\n \n"), "empty input"),
    "comments only": (lambda: parse_typed("# nothing here"), "empty input"),
    "nan": (lambda: parse_typed("1\n2\n3\nnan", 1), 'line 4, value 1: NaN/Inf is not allowed ("nan")'),
    "inf": (lambda: parse_typed("1 -Infinity", 2), 'line 1, value 2: NaN/Inf is not allowed ("-Infinity")'),
    "overflows float32": (lambda: parse_typed("1e39", 1), 'line 1, value 1: "1e39" is too large'),
    "empty value": (lambda: parse_typed("1,,2", 3), "line 1, value 2: empty value"),
    "ragged batch": (lambda: parse_typed("1\n2\n3\n4\n5\n\n1\n2\n3\n4", 1),
        "batch element 2 has 4 steps, element 1 has 5"),
    "too long typed": (lambda: parse_typed("1 " * (MAX_STEPS + 1), 1),
        "too long: 100001 steps, the limit is 100000"),
    "too many typed batch": (lambda: parse_typed("1\n\n" * (MAX_BATCH + 1), 1),
        "too many batch elements: 1025"),
    "fullwidth digits": (lambda: parse_typed("１２", 1), '"１２" is not a number'),
    "arabic digits": (lambda: parse_typed("1 ١٢", 2), 'line 1, value 2: "١٢" is not a number'),
    "emoji": (lambda: parse_typed("1 🙂", 2), 'value 2: "🙂" is not a number'),
    "thousands separator": (lambda: parse_typed("1_000", 1), '"1_000" is not a number'),
    "typed input_size 0": (lambda: parse_typed("1", 0), "input_size must be a whole number ≥ 1, got 0"),
    # sizes and random
    "negative seq_len": (lambda: random_tensor(-1, 1, 1), "seq_len must be a whole number ≥ 1, got -1"),
    "zero batch": (lambda: random_tensor(3, 0, 1), "batch_size must be a whole number ≥ 1, got 0"),
    "fractional size": (lambda: random_tensor(2.5, 1, 1), "seq_len must be a whole number"),
    "bool size": (lambda: random_tensor(True, 1, 1), "seq_len must be a whole number"),
    "too many features": (lambda: random_tensor(1, 1, MAX_FEATURES + 1),
        "too many features: 4097, the limit is 4096"),
    "too many batch": (lambda: random_tensor(1, MAX_BATCH + 1, 1),
        "too many batch elements: 1025, the limit is 1024"),
    "too long random": (lambda: random_tensor(MAX_STEPS + 1, 1, 1), "too long: 100001 steps"),
    "too many values": (lambda: random_tensor(MAX_STEPS, MAX_BATCH, 1), "too large: 100000×1024×1 values"),
    "bad distribution": (lambda: random_tensor(2, 1, 1, distribution="cauchy"),
        'unknown distribution "cauchy"'),
    "fractional seed": (lambda: random_tensor(2, 1, 1, seed=1.5), "seed must be a whole number, got 1.5"),
    "huge seed": (lambda: random_tensor(2, 1, 1, seed=2**80),
        "seed 1208925819614629174706176 is out of range"),
    "integer dtype": (lambda: random_tensor(2, 1, 1, dtype=torch.int64), "dtype must be a floating-point"),
    # signals
    "bad signal kind": (lambda: signal("triangle", 10), 'unknown signal kind "triangle": choose one of sine'),
    "period 0": (lambda: signal("sine", 10, period=0), "period must be > 0, got 0"),
    "negative period": (lambda: signal("square", 10, period=-4), "period must be > 0, got -4"),
    "nan period": (lambda: signal("sine", 10, period=float("nan")), "period must be a finite number"),
    "inf amplitude": (lambda: signal("sine", 10, amplitude=math.inf), "amplitude must be a finite number"),
    "negative noise": (lambda: signal("sine", 10, noise=-0.1), "noise must be ≥ 0, got -0.1"),
    "signal overflows": (lambda: signal("sine", 10, amplitude=1e39), "the signal overflows torch.float32"),
    "signal negative length": (lambda: signal("sine", -5), "seq_len must be a whole number ≥ 1, got -5"),
    # text
    "char outside vocab": (lambda: text_to_onehot("abz", "ab"),
        "character 'z' at position 3 (line 1, column 3)"),
    "char outside vocab, line 2": (lambda: text_to_onehot("ab\ncz", "abc\n"),
        "'z' at position 5 (line 2, column 2)"),
    "empty text": (lambda: text_to_onehot(""), "empty input: type at least one character"),
    "duplicate vocab": (lambda: text_to_onehot("a", "aa"), "vocab must be distinct single characters"),
    "multi-char vocab entry": (lambda: text_to_onehot("a", ["a", "bc"]),
        "vocab must be distinct single characters"),
    "text too long": (lambda: text_to_onehot("a" * (MAX_STEPS + 1)), "too long: 100001 steps"),
    # CSV
    "ragged csv": (lambda: from_csv(b"1,2\n3,4\n5,6,7\n"),
        "row 3: expected 2 columns (as in row 1), found 3"),
    "csv short of header": (lambda: from_csv(b"a,b,c\n1,2\n"),
        "row 2: expected 3 columns (as in the header, row 1)"),
    "empty csv": (lambda: from_csv(b""), "empty file"),
    "blank csv": (lambda: from_csv(b"\n \n"), "empty file"),
    "header only": (lambda: from_csv(b"a,b\n"), "no data rows after the header"),
    "word in csv": (lambda: from_csv(b"1,2\n3,x\n"), 'row 2, column 2: "x" is not a number'),
    "nan in csv": (lambda: from_csv(b"1,2\n3,nan\n"), 'row 2, column 2: NaN/Inf is not allowed ("nan")'),
    "binary as csv": (lambda: from_csv(npy_bytes(_GOOD)), "not a UTF-8 text file"),
    "nul bytes in csv": (lambda: from_csv(b"1,2\x00\n"), "binary data, not a text file"),
    # npy
    "npy object dtype": (lambda: from_npy(npy_bytes(np.array([1, "a"], dtype=object), allow_pickle=True)),
        "object arrays"),
    "npy strings": (lambda: from_npy(npy_bytes(np.array(["a", "b"]))), "dtype <U1 is not supported"),
    "npy complex": (lambda: from_npy(npy_bytes(np.ones(3, dtype=complex))),
        "dtype complex128 is not supported"),
    "npy structured": (lambda: from_npy(npy_bytes(np.zeros(2, dtype=[("a", "f4")]))), "is not supported"),
    "npy 4-D": (lambda: from_npy(npy_bytes(np.zeros((2, 2, 2, 2)))),
        "a 4-D array (shape (2, 2, 2, 2)) is not a sequence"),
    "npy 0-D": (lambda: from_npy(npy_bytes(np.float64(3.0))), "a 0-D array"),
    "npy empty": (lambda: from_npy(npy_bytes(np.zeros((0, 3)))), "empty array (shape (0, 3))"),
    "npy truncated data": (lambda: from_npy(npy_bytes(_GOOD)[:-8]),
        "truncated .npy file: shape (4, 3) needs 96 bytes"),
    "npy truncated header": (lambda: from_npy(npy_bytes(_GOOD)[:20]), "broken .npy header"),
    "npy forged huge shape": (
        lambda: from_npy(npy_bytes(_GOOD).replace(b"(4, 3)", b"(9999999999, 3)".ljust(6))),
        "too long: 9999999999 steps",  # refused from the header, before numpy allocates anything
    ),
    "npy nan": (lambda: from_npy(npy_bytes(_NAN)), "NaN/Inf is not allowed (first at index (1, 2)"),
    "npy overflows float32": (lambda: from_npy(npy_bytes(np.array([1e300]))),
        "values too large for torch.float32"),
    "npy too many features": (lambda: from_npy(npy_bytes(np.zeros((2, MAX_FEATURES + 1)))),
        "too many features: 4097"),
    "not npy bytes": (lambda: from_npy(b"1,2\n3,4\n"), "not a .npy file"),
    "npz": (lambda: from_npy((lambda b: (np.savez(b, a=_GOOD), b.getvalue())[1])(io.BytesIO())),
        ".npz archive"),
    # files
    "unknown extension": (lambda: load_file("data.json", b"[1, 2]"),
        'unsupported file type ".json": use one of .csv, .txt, .npy'),
    "no extension": (lambda: load_file("data", b"1"), 'unsupported file type "data"'),
    "csv renamed .npy": (lambda: load_file("data.npy", b"1,2\n3,4\n"), "not a .npy file"),
    "npy renamed .csv": (lambda: load_file("data.csv", npy_bytes(_GOOD)), "not a UTF-8 text file"),
}


@pytest.mark.parametrize("make, fragment", BAD.values(), ids=BAD.keys())
def test_bad_input_says_where_and_why(make, fragment):
    with pytest.raises(InputError) as err:
        make()
    assert fragment in str(err.value), str(err.value)


def test_a_large_csv_is_read_within_the_memory_the_app_charges_for_it():
    """The review measured ~880 MB to parse a 33 MB CSV. Measured in a fresh process: the peak growth while
    reading a ~24 MB CSV stays under `parse_bytes`, the amount charged to the server before reading it."""
    from memory_support import peak_growth

    setup = """
        import numpy as np
        from lstm_viz.inputs import load_file, parse_bytes
        rows = np.random.default_rng(0).normal(size=(100_000, 16))
        data = "\\n".join(",".join(f"{v:.6f}" for v in row) for row in rows).encode()
        del rows
        print(len(data), parse_bytes("x.csv", data))
    """
    growth, outcome = peak_growth(setup, 'seq = load_file("x.csv", data); assert seq.x.shape == (100_000, 1, 16)')
    assert outcome == "ok", outcome
    from lstm_viz.inputs import parse_bytes

    charged = parse_bytes("x.csv", b"0" * 100_000 * 16 * 10)  # the same size: 16 values of ~10 bytes a row
    assert growth < charged, (growth / 1e6, charged / 1e6)
