"""The bad-input inventory, through the app: each bad input shows a clear message (never a traceback), the
app keeps running, and the last good state stays on screen.

Each case starts the app in a good state, puts one bad input in (typed text, text, an uploaded sequence or
state_dict, a widget or a URL), reruns, and checks the message and that the step figure still shows the
last good trace.
"""

from __future__ import annotations

import io
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from app_support import APP, assert_clean, rendered, report, start
from figure_data import step_z
from streamlit.testing.v1 import AppTest

from lstm_viz.inputs import MAX_FEATURES, MAX_STEPS
from lstm_viz.pipeline import AppConfig

pytestmark = pytest.mark.app


# --- bad files, built here ---------------------------------------------------------------------


def saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def npy(array) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def lstm_state(**changes) -> dict:
    """nn.LSTM(3, 4, num_layers=2)'s state_dict; a value of None removes the key."""
    torch.manual_seed(0)
    state = dict(torch.nn.LSTM(3, 4, num_layers=2).state_dict()) | changes
    return {k: v for k, v in state.items() if v is not None}


def zip_bomb() -> bytes:
    """A torch.save archive whose tensor data is re-zipped with deflate: 64 MB of zeros in a ~70 kB file."""
    plain = zipfile.ZipFile(io.BytesIO(saved({"weight_ih_l0": torch.zeros(4 * 4096, 1024)})))
    packed = io.BytesIO()
    with zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as bomb:
        for name in plain.namelist():
            bomb.writestr(name, plain.read(name))
    return packed.getvalue()


def torchscript() -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated; its files still exist
        torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), buffer)
    return buffer.getvalue()


def huge_npy_header() -> bytes:
    """A .npy header that claims 10⁶ × 4096 float64s, with 16 bytes of data behind it."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False,
                                                  "shape": (10**6, MAX_FEATURES)})
    return header.getvalue() + bytes(16)


def with_pickle(pkl: bytes) -> bytes:
    """A torch.save archive of a good state_dict whose data.pkl is replaced by `pkl` (stored, as torch does)."""
    source = zipfile.ZipFile(io.BytesIO(saved(GOOD_STATE)))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as archive:
        for name in source.namelist():
            archive.writestr(name, pkl if name.endswith("/data.pkl") else source.read(name))
    return out.getvalue()


def legacy(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=False)
    return buffer.getvalue()


def zip_of(**members: bytes) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def under(prefix: str, **changes) -> dict:
    """GOOD_STATE with every key under `prefix`, changed as in lstm_state."""
    return {prefix + k: v for k, v in lstm_state(**changes).items()}


MARKUP = "[sign in again](https://evil.example/login) ![x](https://evil.example/x.png) <img src=x onerror=alert(1)>"
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(40)
GOOD_STATE = lstm_state()


# --- the inventory -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Bad:
    """One bad input: the good state to start from, where the bad input goes, and what the message says."""

    name: str
    says: str  # a fragment of the error message (case-insensitive)
    typed: str | None = None  # typed text (input source "typed")
    text: str | None = None  # text input (input source "text")
    upload: tuple[str, bytes] | None = None  # a sequence file (input source "file")
    weights: bytes | Callable[[], bytes] | None = None  # an uploaded state_dict (or what builds it, when slow)
    widgets: tuple[tuple[str, object], ...] = ()  # number inputs set to these values

    def good_state(self) -> dict:
        if self.typed is not None:
            return {"input_source": "typed"}
        if self.text is not None:
            return {"input_source": "text"}
        return {}

    def put_in(self, at: AppTest) -> None:
        if self.typed is not None:
            at.text_area(key="typed_text").set_value(self.typed)
        elif self.text is not None:
            at.text_input(key="text_input").set_value(self.text)
        elif self.upload is not None:
            at.selectbox(key="input_source").set_value("file").run()  # no file yet: a prompt, the last view
            at.file_uploader(key="upload").upload(*self.upload)
        elif self.weights is not None:
            at.selectbox(key="model_source").set_value("uploaded weights").run()
            data = self.weights() if callable(self.weights) else self.weights
            at.file_uploader(key="weights_upload").upload("model.pt", data)
        for key, value in self.widgets:
            at.number_input(key=key).set_value(value)
        at.run()


INVENTORY = [
    # typed sequences
    Bad("typed: wrong width", "line 2: expected 2 values", typed="1, 2\n3, 4, 5"),
    Bad("typed: a word", "line 1", typed="1, two"),
    Bad("typed: empty", "empty", typed=""),
    Bad("typed: only comments and blanks", "empty", typed="  \n# a note\n\n"),
    Bad("typed: NaN", "NaN", typed="nan, 1"),
    Bad("typed: Inf", "inf", typed="0.5, -inf"),
    Bad("typed: overflows float32", "too large", typed="1e39, 0"),
    Bad("typed: overflows any float", "1e999", typed="1e999, 0"),
    Bad("typed: Arabic-Indic digits", "line 1", typed="١, 2"),
    Bad("typed: hexadecimal", "0x1F", typed="0x1F, 2"),
    Bad("typed: batch elements of different lengths", "batch element 2 has 1 step", typed="1, 2\n3, 4\n\n5, 6"),
    Bad("typed: batch elements of different widths", "line 4: expected 2 values", typed="1, 2\n3, 4\n\n5\n6"),
    Bad("typed: separators only", "line 1", typed=",,;,"),
    Bad("typed: too many steps", "too long", typed="0\n" * (MAX_STEPS + 1)),
    Bad("typed: too many features", "too many features", typed=", ".join(["1"] * (MAX_FEATURES + 1))),
    Bad("typed: a number with two points", "1.2.3", typed="1.2.3, 4"),
    # text
    Bad("text: empty", "empty", text=""),
    Bad("text: longer than the step limit", "too long", text="ab" * (MAX_STEPS // 2 + 1)),
    Bad("text: more distinct characters than features allowed", "too many features",
        text="".join(chr(0x4E00 + k) for k in range(MAX_FEATURES + 1))),
    # sequence files
    Bad("csv: ragged rows", "row 2: expected 2 columns", upload=("x.csv", b"1,2\n3\n4,5\n")),
    Bad("csv: a word among numbers", "row 3", upload=("x.csv", b"a,b\n1,2\n3,oops\n")),
    Bad("csv: empty file", "empty", upload=("x.csv", b"")),
    Bad("csv: header only", "no data rows", upload=("x.csv", b"alpha,beta\n")),
    Bad("csv: NaN", "NaN", upload=("x.csv", b"1,2\n3,nan\n")),
    Bad("csv: a renamed PNG", "not a UTF-8", upload=("x.csv", PNG)),
    Bad("csv: binary zeros", "binary", upload=("x.csv", b"1,2\n\x00\x00\n")),
    Bad("csv: too many rows", "too long", upload=("x.csv", b"1\n" * (MAX_STEPS + 1))),
    Bad("npy: 4-D", "4-D", upload=("x.npy", npy(np.zeros((2, 2, 2, 2))))),
    Bad("npy: object dtype", "object arrays", upload=("x.npy", npy(np.array([[1, "a"]], dtype=object)))),
    Bad("npy: complex dtype", "complex128", upload=("x.npy", npy(np.ones((3, 2), dtype=complex)))),
    Bad("npy: strings", "not supported", upload=("x.npy", npy(np.array([["a", "b"]])))),
    Bad("npy: structured dtype", "not supported",
        upload=("x.npy", npy(np.zeros(3, dtype=[("a", "f4"), ("b", "i4")])))),
    Bad("npy: truncated", "truncated", upload=("x.npy", npy(np.ones((50, 3)))[:-40])),
    Bad("npy: zero bytes", "not a .npy", upload=("x.npy", b"")),
    Bad("npy: an empty array", "empty array", upload=("x.npy", npy(np.zeros((0, 3))))),
    Bad("npy: an .npz renamed", ".npz", upload=("x.npy", (lambda b: (np.savez(b, a=np.ones(3)), b.getvalue())[1])(
        io.BytesIO()))),
    Bad("npy: Inf", "NaN/Inf", upload=("x.npy", npy(np.array([[1.0, np.inf]])))),
    Bad("npy: a header claiming a huge array", "too long", upload=("x.npy", huge_npy_header())),
    Bad("file: unsupported type", "unsupported file type", upload=("x.exe", b"MZ\x90\x00")),
    # state_dicts
    Bad("weights: missing key", "missing key weight_hh_l1", weights=saved(lstm_state(weight_hh_l1=None))),
    Bad("weights: an extra projection key", "missing key weight_hr_l1",
        weights=saved(lstm_state(weight_hr_l0=torch.zeros(2, 4)))),
    Bad("weights: wrong shape", "wrong shape for bias_ih_l1", weights=saved(lstm_state(bias_ih_l1=torch.zeros(15)))),
    Bad("weights: a gap in the layers", "inconsistent layers", weights=saved(
        {k.replace("_l1", "_l2"): v for k, v in GOOD_STATE.items()})),
    Bad("weights: NaN", "NaN/Inf", weights=saved(lstm_state(weight_ih_l0=torch.full((16, 3), float("nan"))))),
    Bad("weights: integer tensors", "expected dense floating point",
        weights=saved(lstm_state(bias_hh_l0=torch.zeros(16, dtype=torch.int64)))),
    Bad("weights: a forged stride-0 tensor", "forged", weights=saved(lstm_state(
        weight_ih_l0=torch.zeros(1).expand(16, 3)))),
    Bad("weights: a GRU", "GRU", weights=saved(torch.nn.GRU(3, 4).state_dict())),
    Bad("weights: a list, not a dict", "expected a state_dict", weights=saved([torch.zeros(3)])),
    Bad("weights: truncated", "truncated or corrupt", weights=saved(GOOD_STATE)[:700]),
    Bad("weights: zero bytes", "empty", weights=b""),
    Bad("weights: a renamed PNG", "not a torch file", weights=PNG),
    Bad("weights: a renamed text file", "text file", weights=b"epoch,loss\n1,0.5\n"),
    Bad("weights: a renamed .npy", "NumPy", weights=npy(np.ones(3))),
    Bad("weights: TorchScript", "TorchScript", weights=torchscript),
    Bad("weights: a zip bomb", "zip bomb", weights=zip_bomb),
    # --- added with hardening II: markup, URLs and odd encodings in what users type and upload ---
    Bad("typed: a Markdown link as a token", "line 1, value 1", typed="[sign in](https://evil.example), 1"),
    Bad("typed: an HTML image as a token", "line 1, value 1", typed="<img src=x onerror=alert(1)>, 2"),
    Bad("typed: a bare URL", "is not a number", typed="https://evil.example/login"),
    Bad("typed: an email address", "is not a number", typed="1, admin@evil.example"),
    Bad("typed: a 5000-digit number", "too large", typed="9" * 5000),
    Bad("typed: a doubled sign", '"--1" is not a number', typed="--1, 2"),
    Bad("typed: two separators in a row", "empty value", typed="1, , 2"),
    Bad("typed: the infinity sign", "is not a number", typed="∞, 1"),
    Bad("typed: full-width digits", "is not a number", typed="１, 2"),
    Bad("typed: digit grouping", '"1_000" is not a number', typed="1_000, 2"),
    Bad("typed: LaTeX", "is not a number", typed="\\frac{1}{2}, $x$"),
    Bad("csv: a Markdown link in a cell", "row 2, column 2", upload=("x.csv", b"1,2\n3,[a](https://evil.example)\n")),
    Bad("csv: UTF-16", "not a UTF-8", upload=("x.csv", "1,2\n3,4\n".encode("utf-16"))),
    Bad("csv: comments and a header only", "no data rows", upload=("x.csv", b"# saved by numpy\nalpha,beta\n")),
    Bad("csv: -Infinity", "NaN/Inf", upload=("x.csv", b"1,2\n3,-Infinity\n")),
    Bad("csv: ragged with semicolons", "row 2: expected 3 columns", upload=("x.csv", b"1;2;3\n4;5\n")),
    Bad("csv: overflows float32", "too large", upload=("x.csv", b"1,2\n3,1e39\n")),
    Bad("csv: a word between tabs", "not a number", upload=("x.csv", b"1\t2\n3\tfour\n")),
    Bad("csv: too many columns", "too many features", upload=("x.csv", b",".join([b"1"] * (MAX_FEATURES + 1)))),
    Bad("csv: only comments", "empty", upload=("x.csv", b"# a\n# b\n")),
    Bad("csv: ragged with CRLF", "row 2: expected 2 columns", upload=("x.csv", b"1,2\r\n3\r\n")),
    Bad("csv: a file name with markup", "row 1", upload=(MARKUP + ".csv", b"1,x\n")),
    Bad("npy: NaN in float32", "NaN/Inf", upload=("x.npy", npy(np.array([[1, np.nan]], dtype=np.float32)))),
    Bad("npy: big-endian Inf", "NaN/Inf", upload=("x.npy", npy(np.array([1.0, -np.inf], dtype=">f8")))),
    Bad("npy: 0-D", "0-D", upload=("x.npy", npy(np.float64(3.0)))),
    Bad("npy: a garbage header", "broken .npy header", upload=("x.npy", b"\x93NUMPY\x01\x00\x10\x00{'descr': zz}    ")),
    Bad("npy: an unknown format version", "broken .npy header", upload=("x.npy", b"\x93NUMPY\x09\x00" + bytes(40))),
    Bad("npy: too large for float32", "too large for torch.float32",
        upload=("x.npy", npy(np.array([[1.0, 1e300]])))),
    Bad("npy: timedeltas", "not supported", upload=("x.npy", npy(np.array([1, 2], dtype="m8[s]")))),
    Bad("npy: too many batch elements", "too many batch elements", upload=("x.npy", npy(np.zeros((1, 1025, 1))))),
    Bad("file: no extension", "unsupported file type", upload=("data", b"1,2\n")),
    Bad("file: an .npz", "unsupported file type", upload=("x.npz", b"PK\x03\x04")),
    Bad("weights: markup in the keys", "wrong shape for [sign in again]",
        weights=lambda: saved(under(MARKUP + ".", bias_ih_l1=torch.zeros(15)))),
    Bad("weights: a checkpoint whose state_dict is a list", "no LSTM weights found",
        weights=lambda: saved({"state_dict": [torch.zeros(3)], "epoch": 3})),
    Bad("weights: an empty dict", "no LSTM weights found", weights=lambda: saved({})),
    Bad("weights: integer keys", "no LSTM weights found", weights=lambda: saved({1: torch.zeros(3)})),
    Bad("weights: rows not a multiple of 4", "expected 4*hidden_size",
        weights=lambda: saved({"weight_ih_l0": torch.zeros(10, 3), "weight_hh_l0": torch.zeros(10, 3)})),
    Bad("weights: a 3-D weight", "should be 2-D",
        weights=lambda: saved(lstm_state(weight_ih_l0=torch.zeros(16, 3, 1)))),
    Bad("weights: a string where a tensor belongs", "is a str, expected a tensor",
        weights=lambda: saved(lstm_state(bias_ih_l0="<b>bias</b>"))),
    Bad("weights: complex tensors", "expected dense floating point",
        weights=lambda: saved(lstm_state(bias_hh_l0=torch.zeros(16, dtype=torch.complex64)))),
    Bad("weights: legacy format, truncated", "truncated or corrupt", weights=lambda: legacy(GOOD_STATE)[:300]),
    Bad("weights: a pickle that calls os.system", "needs arbitrary code",
        weights=lambda: with_pickle(b"\x80\x02cposix\nsystem\nq\x00X\x02\x00\x00\x00idq\x01\x85q\x02Rq\x03.")),
    Bad("weights: a garbage pickle", "cannot read this torch file",
        weights=lambda: with_pickle(b"\x80\x02\xff\xfe garbage")),
    Bad("weights: a safetensors file", "safetensors",
        weights=(16).to_bytes(8, "little") + b'{"a": {"dtype"}}' + bytes(8)),
    Bad("weights: a Git LFS pointer", "Git LFS",
        weights=b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n"),
    Bad("weights: a zip without data.pkl", "without data.pkl", weights=lambda: zip_of(**{"a/readme.txt": b"hi"})),
    # settings
    Bad("proj_size above hidden_size", "proj_size has to be smaller", widgets=(("proj_size", 9),)),
    Bad("a trace with too many values for the server", "GB of memory", widgets=(
        ("hidden_size", 2048), ("batch_size", 1024), ("seq_len", 2000))),
    Bad("proj_size equal to hidden_size", "proj_size has to be smaller", widgets=(("proj_size", 8),)),
    Bad("a trace too big for the server", "GB of memory", widgets=(
        ("hidden_size", 2048), ("num_layers", 8), ("seq_len", MAX_STEPS))),
]


@pytest.mark.parametrize("bad", INVENTORY, ids=[b.name for b in INVENTORY])
def test_bad_input_says_what_is_wrong_and_keeps_the_last_good_state(bad):
    at = start(**bad.good_state())
    assert not at.error, [e.value for e in at.error]
    good = step_z(at, "f")
    bad.put_in(at)
    assert_clean(at)  # no traceback
    messages = [rendered(e.value) for e in at.error]
    assert any(bad.says.lower() in m.lower() for m in messages), messages
    assert any("last good" in i.value for i in at.info)
    np.testing.assert_array_equal(step_z(at, "f"), good)
    report(at, t=1)  # and the app keeps working
    assert_clean(at)


def test_the_inventory_is_at_least_forty():
    assert len({b.name for b in INVENTORY}) == len(INVENTORY) >= 40


# --- settings in a shared link ----------------------------------------------------------------

URLS = [
    ({"hidden_size": "10000000"}, "outside 1 … 2,048"),
    ({"hidden_size": "0"}, "outside"),
    ({"hidden_size": "-3"}, "outside"),
    ({"input_size": "5000"}, "outside"),
    ({"num_layers": "100"}, "outside"),
    ({"seq_len": "1000000000"}, "outside 1 … 100,000"),
    ({"batch_size": "5000"}, "outside"),
    ({"seed": "-1"}, "outside"),
    ({"num_layers": "two"}, "not a valid int"),
    ({"bidirectional": "maybe"}, "not a valid bool"),
    ({"dtype": "float16"}, "not one of float32, float64"),
    ({"device": "tpu"}, "not one of cpu, cuda"),
    ({"input_source": "../etc/passwd"}, "not one of random"),
    ({"hidden_size": "1e3"}, "not a valid int"),
    ({"seed": "9" * 30}, "outside"),
    ({"seq_len": "1" * 5000}, "more than a link carries"),
    ({"typed_text": "1, " * 1000}, "more than a link carries"),
    ({"weights": "x" * 3000}, "more than a link carries"),
    ({"tab": "<script>alert(1)</script>"}, "not one of"),
    ({"signal_period": "nan"}, "not a valid float"),
    ({"timestep": "-5"}, "outside"),
]


@pytest.mark.parametrize("query,says", URLS, ids=[next(iter(q.items())).__str__() for q, _ in URLS])
def test_bad_url_settings_are_ignored_with_a_warning(query, says):
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params.update(query)
    at.run()
    assert_clean(at)
    warnings = [rendered(w.value) for w in at.warning]
    assert any(says in w and "ignored" in w for w in warnings), warnings
    default = AppConfig()
    assert step_z(at, "f").shape == (default.batch_size, default.hidden_size)  # the defaults, drawn
