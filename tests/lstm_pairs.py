"""nn.LSTM and InstrumentedLSTM side by side: the two classes every API and ported-PyTorch test runs on, built with
the same weights, and one comparison for their outputs (tensors, PackedSequences, nested tuples)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from lstm_viz import InstrumentedLSTM

CLASSES = [pytest.param(nn.LSTM, id="torch"), pytest.param(InstrumentedLSTM, id="instrumented")]


def tolerance(dtype: torch.dtype, device: str | torch.device = "cpu") -> dict:
    if dtype == torch.float64:
        return dict(atol=1e-10, rtol=1e-10)
    if torch.device(device).type == "cuda":
        return dict(atol=5e-5, rtol=1e-4)  # cuDNN against the CPU, as test_rnn_fused allows
    return dict(atol=1e-5, rtol=1e-4)


def assert_close(actual, expected, **tol):
    """Tensors, PackedSequences and (nested) tuples of them, to the tolerance of the expected dtype."""
    if isinstance(expected, PackedSequence):
        assert type(actual).__name__ == "PackedSequence", type(actual)  # also TorchScript's NamedTuple
        assert torch.equal(actual.batch_sizes, expected.batch_sizes)
        for name in ("sorted_indices", "unsorted_indices"):
            a, e = getattr(actual, name), getattr(expected, name)
            assert (a is None) == (e is None), name
            assert e is None or torch.equal(a.cpu(), e.cpu()), name
        assert_close(actual.data, expected.data, **tol)
    elif isinstance(expected, (tuple, list)):
        assert isinstance(actual, (tuple, list))
        assert len(actual) == len(expected)
        for a, e in zip(actual, expected, strict=True):
            assert_close(a, e, **tol)
    elif expected is None:
        assert actual is None
    else:
        torch.testing.assert_close(actual, expected, **(tol or tolerance(expected.dtype, expected.device)))


def build(cls, *args, seed: int = 0, **kwargs):
    """(m, ref): an nn.LSTM `ref` with seeded random weights and `cls(*args, **kwargs)` holding the same weights."""
    torch.manual_seed(seed)
    ref = nn.LSTM(*args, **kwargs)
    m = cls(*args, **kwargs)
    m.load_state_dict(ref.state_dict())
    return m, ref
