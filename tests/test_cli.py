"""The command line writes the same trace as the API, and says clearly what is wrong otherwise."""

from __future__ import annotations

import numpy as np
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
    assert shown._repr_html_().startswith("<iframe srcdoc=") and "<script>" not in shown._repr_html_()
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
