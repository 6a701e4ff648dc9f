"""The command line writes the same trace as the API, and says clearly what is wrong otherwise."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from figure_data import explorer_html

import lstm_viz
from lstm_viz.__main__ import main
from lstm_viz.export import load_npz
from lstm_viz.loading import load_lstm


def test_cli_trace_equals_the_api(tmp_path):
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 5, num_layers=2, bidirectional=True)
    weights, inputs = tmp_path / "model.pt", tmp_path / "x.npy"
    torch.save(lstm.state_dict(), weights)
    x = np.random.default_rng(0).standard_normal((9, 2, 3)).astype(np.float32)
    np.save(inputs, x)
    out, html = tmp_path / "trace.npz", tmp_path / "report.html"
    weights = weights.rename(tmp_path / "m<img src=x onerror=alert(1)>.pt")  # a name must never become markup
    assert main(["trace", "--weights", str(weights), "--input", str(inputs), "--out", str(out),
                 "--html", str(html)]) == 0
    got = load_npz(out)
    want = load_lstm(weights).trace(torch.from_numpy(x))
    for q in ("f", "i", "g", "o", "c", "h", "output", "h_n", "c_n"):
        assert torch.equal(getattr(got, q), getattr(want, q)), q
    torch.testing.assert_close(got.output, lstm(torch.from_numpy(x))[0].detach(), rtol=0, atol=1e-6)
    page = html.read_text()
    assert "<title>lstm-viz: m&lt;img src=x onerror=alert(1)&gt;.pt on x.npy</title>" in page
    assert "<img src=x" not in page
    header, arrays, _ = explorer_html(page)
    np.testing.assert_array_equal(arrays["f"], want.f[0, 0].numpy())  # the explorer's data: layer 0, forward
    assert (header["start"], header["stop"]) == (0, 9)


def test_trace_explore_shows_inline_and_saves(tmp_path):
    trace = lstm_viz.trace(torch.nn.LSTM(2, 3), torch.randn(5, 1, 2))
    shown = trace.explore(layer=0, t=2)
    inline = shown._repr_html_()
    assert inline.startswith("<iframe srcdoc=")
    assert "<script>" not in inline  # the page's scripts are escaped into the attribute, run in the iframe
    assert shown.save(tmp_path / "e.html").read_text() == shown.html


def test_cli_errors_are_messages_not_tracebacks(tmp_path, capsys):
    weights, inputs = tmp_path / "model.pt", tmp_path / "x.npy"
    torch.save(torch.nn.LSTM(4, 5).state_dict(), weights)
    np.save(inputs, np.zeros((6, 3), dtype=np.float32))  # 3 features, the LSTM wants 4
    assert main(["trace", "--weights", str(weights), "--input", str(inputs), "--out", str(tmp_path / "t.npz")]) == 2
    assert "input_size 4" in capsys.readouterr().err
    (tmp_path / "bad.pt").write_bytes(b"not torch")
    assert main(["trace", "--weights", str(tmp_path / "bad.pt"), "--input", str(inputs),
                 "--out", str(tmp_path / "t.npz")]) == 2
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize("error", [RecursionError("maximum recursion depth exceeded"), KeyError("descr"),
                                   MemoryError()], ids=lambda e: type(e).__name__)
def test_any_kind_of_error_from_a_reader_is_one_line(tmp_path, capsys, monkeypatch, error):
    import lstm_viz.__main__ as cli

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(cli, "load_file", broken)  # a parser failing in a way nobody foresaw
    weights, inputs = small_inputs(tmp_path)
    assert main(["trace", "--weights", str(weights), "--input", str(inputs), "--out", str(tmp_path / "t.npz")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: could not read the inputs ({type(error).__name__}"), err
    assert err.count("\n") == 1, err


def small_inputs(tmp_path):
    weights, inputs = tmp_path / "model.pt", tmp_path / "x.npy"
    torch.save(torch.nn.LSTM(3, 4).state_dict(), weights)
    np.save(inputs, np.zeros((5, 3), dtype=np.float32))
    return weights, inputs


def test_cli_never_overwrites_its_inputs_and_asks_before_other_files(tmp_path, capsys):
    weights, inputs = small_inputs(tmp_path)
    before = weights.read_bytes()
    for out in (weights, inputs, tmp_path / "." / "model.pt"):
        assert main(["trace", "--weights", str(weights), "--input", str(inputs), "--out", str(out), "--force"]) == 2
        assert "is one of the inputs" in capsys.readouterr().err
    assert weights.read_bytes() == before
    out = tmp_path / "trace.npz"
    out.write_bytes(b"keep me")
    assert main(["trace", "--weights", str(weights), "--input", str(inputs), "--out", str(out)]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert main(["trace", "--weights", str(weights), "--input", str(inputs), "--out", str(out), "--force"]) == 0
    assert load_npz(out).f.shape[2] == 5


@pytest.mark.parametrize("change, says", [
    (lambda w, i, o: (w, Path("/dev/zero"), o), "not a regular file"),
    (lambda w, i, o: (w.parent / "missing.pt", i, o), "no such file"),
    (lambda w, i, o: (w, i, o.parent / "no" / "dir" / "t.npz"), "no directory"),
    (lambda w, i, o: (w, i, o.parent), "not a regular file"),
], ids=["dev-zero", "missing-weights", "missing-dir", "out-is-a-directory"])
def test_cli_bad_paths_are_one_line_errors_before_any_work(tmp_path, capsys, change, says):
    weights, inputs = small_inputs(tmp_path)
    w, i, o = change(weights, inputs, tmp_path / "t.npz")
    assert main(["trace", "--weights", str(w), "--input", str(i), "--out", str(o)]) == 2
    err = capsys.readouterr().err
    assert says in err
    assert err.count("\n") == 1
    assert "Traceback" not in err


def test_help_lists_both_commands(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    shown = capsys.readouterr().out
    assert "lstm-viz" in shown
    assert "app" in shown
    assert "trace" in shown


def test_app_is_streamlit_run_on_the_packaged_page_with_the_packaged_options_then_the_users(monkeypatch, capsys):
    import lstm_viz.__main__ as cli
    from lstm_viz import serve

    became = []
    monkeypatch.setattr(cli.os, "execv", lambda path, argv: became.append((path, argv)))  # instead of the server
    main(["app", "--server.port", "8600"])
    (path, argv), = became
    assert path == sys.executable == argv[0]
    assert argv[1:] == ["-m", "streamlit", "run", str(serve.SCRIPT), *serve.flags(), "--server.port", "8600"]
    assert "http://localhost:8600" in capsys.readouterr().out  # where to open it


def test_trace_refuses_options_it_does_not_know(tmp_path, capsys):
    weights, inputs = small_inputs(tmp_path)
    with pytest.raises(SystemExit) as exited:
        main(["trace", "--weights", str(weights), "--input", str(inputs), "--out", str(tmp_path / "t.npz"),
              "--server.port", "8600"])
    assert exited.value.code == 2
    assert "unrecognized arguments: --server.port 8600" in capsys.readouterr().err
    assert not (tmp_path / "t.npz").exists()
