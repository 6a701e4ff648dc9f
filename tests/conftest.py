"""Shared test helpers: devices (CUDA cases marked and skipped without a GPU), random configs."""

from __future__ import annotations

import pytest
import torch

from lstm_viz.parity import TOLERANCE  # noqa: F401  (the app's parity badge and the tests share one constant)

CUDA = pytest.param(
    "cuda",
    marks=[pytest.mark.cuda,
           pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.cuda.is_available() is False")],
)
DEVICES = ["cpu", CUDA]


@pytest.fixture(autouse=True)
def _no_tf32():
    """TF32 would make cuDNN's float32 differ from ours by ~1e-3: parity is checked in full precision."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


@pytest.fixture(scope="module")
def one_thread():
    """For modules of tiny LSTMs: with a busy CPU, intra-op threads only wait on each other (about 5x slower here).
    Use with `pytestmark = pytest.mark.usefixtures("one_thread")`."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
