"""Shared test helpers: devices (CUDA cases marked and skipped without a GPU), random configs."""

from __future__ import annotations

import pytest
import torch

CUDA = pytest.param(
    "cuda",
    marks=[pytest.mark.cuda,
           pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.cuda.is_available() is False")],
)
DEVICES = ["cpu", CUDA]
# float64 must agree to the last bits; float32 within what reordered sums can differ by.
TOLERANCE = {torch.float64: 1e-10, torch.float32: 1e-5}


@pytest.fixture(autouse=True)
def _no_tf32():
    """TF32 would make cuDNN's float32 differ from ours by ~1e-3: parity is checked in full precision."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
