"""Seeded initial weights without the global RNG.

The app's sessions are threads of one server process. `torch.manual_seed` (even inside `fork_rng`) in one
thread changes the numbers another thread is drawing, so two users building a model at once got each
other's weights. Here each model is drawn from a private generator, and the numbers are exactly those that
`torch.manual_seed(seed)` followed by the same constructor gives. Seeds in shared links keep their weights.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def _uninitialised(cls: type[nn.Module], *args, **kwargs) -> nn.Module:
    """cls(*args, **kwargs) on the CPU with uninitialised parameters: built on the meta device, where its own init
    draws nothing from the global RNG (torch.nn.utils.skip_init, which nn.LSTM's signature does not pass)."""
    return cls(*args, **kwargs, device="meta").to_empty(device="cpu")


def generator(seed: int) -> torch.Generator:
    """A private CPU generator: the same stream as the global one after torch.manual_seed(seed)."""
    return torch.Generator().manual_seed(int(seed))


def lstm(cls: type[nn.Module], gen: torch.Generator, **kwargs) -> nn.Module:
    """cls(**kwargs) (nn.LSTM or InstrumentedLSTM) with nn.LSTM's init, drawn from `gen`: every parameter, in
    registration order, ~ U(−1/√H, 1/√H)."""
    module = _uninitialised(cls, **kwargs)
    bound = 1.0 / math.sqrt(module.hidden_size)
    with torch.no_grad():
        for p in module.parameters():
            p.uniform_(-bound, bound, generator=gen)
    return module


def linear(in_features: int, out_features: int, gen: torch.Generator) -> nn.Linear:
    """nn.Linear(in_features, out_features) with its own init, drawn from `gen`: weight kaiming-uniform
    (a = √5), bias ~ U(−1/√in_features, 1/√in_features)."""
    module = _uninitialised(nn.Linear, in_features, out_features)
    nn.init.kaiming_uniform_(module.weight, a=math.sqrt(5), generator=gen)
    bound = 1.0 / math.sqrt(in_features)
    nn.init.uniform_(module.bias, -bound, bound, generator=gen)
    return module
