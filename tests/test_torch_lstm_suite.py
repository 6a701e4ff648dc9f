"""PyTorch's own nn.LSTM tests, ported to pytest and run on two classes.

Every test is parametrized over `torch.nn.LSTM` (id "torch": its passing shows the port itself is right) and
`lstm_viz.InstrumentedLSTM` (id "instrumented": what we check). Sources, all in pytorch/pytorch:

- test/test_nn.py (TestNN, TestNNDeviceType): the LSTM tests; each test's docstring names the one it ports.
- torch/testing/_internal/common_modules.py: `module_inputs_torch_nn_LSTM` (its constructor kwargs and inputs),
  `module_error_inputs_torch_nn_RNN_GRU` (its error cases), `no_batch_dim_reference_lstm` (its reference).
- test/test_modules.py: the generic module checks that apply to nn.LSTM (forward, repr, pickle, non-contiguous
  inputs, factory kwargs, device context, gradcheck/gradgradcheck, train/eval, `.to`, device transfer).

Where a test compares numbers, the module under test holds the same weights as an nn.LSTM reference (loaded
through load_state_dict) and must match it: float32 to atol 1e-5 / rtol 1e-4, float64 to 1e-10. Where a test
feeds an input to an InstrumentedLSTM, `m.trace(input, hx)` must also report the forward's output, h_n and c_n
(`check_trace`). CUDA-only PyTorch tests are ported as their CPU half, or marked `cuda` and skipped without a GPU.
"""

from __future__ import annotations

import copy
import io
import itertools
import math
import warnings

import pytest
import torch
from conftest import DEVICES
from lstm_pairs import CLASSES, assert_close, build, tolerance
from torch import nn
from torch.func import functional_call
from torch.nn.utils import rnn as rnn_utils
from torch.nn.utils.rnn import PackedSequence

from lstm_viz import InstrumentedLSTM

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny LSTMs: see conftest


# --- helpers ----------------------------------------------------------------------------------------------------


def raised(fn) -> BaseException | None:
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - whatever nn.LSTM raises is what we compare against
        return e
    return None


def assert_same_error(ref_call, call, expected_type=None):
    """ref_call (nn.LSTM) raises; call raises the same exception type with the same message."""
    want = raised(ref_call)
    assert want is not None, "the nn.LSTM reference did not raise: the test case is wrong"
    if expected_type is not None:
        assert isinstance(want, expected_type), repr(want)
    got = raised(call)
    assert got is not None, f"did not raise; nn.LSTM raises {want!r}"
    assert type(got) is type(want), f"{got!r} instead of {want!r}"
    assert str(got) == str(want)


def deterministic(m) -> bool:
    return not (m.training and m.dropout > 0 and m.num_layers > 1)


def check_trace(m, x, hx, out, hidden):
    """For an InstrumentedLSTM (in a deterministic mode): trace(x, hx) reports forward's output, h_n and c_n."""
    if not isinstance(m, InstrumentedLSTM) or not deterministic(m):
        return
    tr = m.trace(x, hx)
    assert_close(tr.output, out)
    assert_close(tr.h_n, hidden[0])
    assert_close(tr.c_n, hidden[1])


def run_and_check_trace(m, x, hx=None):
    out, hidden = m(x, hx)
    check_trace(m, x, hx, out, hidden)
    return out, hidden


def make_noncontig(t: torch.Tensor) -> torch.Tensor:
    """The same values, not contiguous (as _test_RNN_cpu_vs_cudnn builds them)."""
    nd = t.dim()
    return torch.stack([torch.zeros_like(t), t], nd).select(nd, 1)


def states(m, batch: int | None, dtype=torch.float32, generator=None, fill=None):
    """(h0, c0) for m, batched when batch is an int, unbatched when None."""
    lead = (m.num_layers * (2 if m.bidirectional else 1),) + (() if batch is None else (batch,))
    shapes = lead + (m.proj_size or m.hidden_size,), lead + (m.hidden_size,)
    if fill is not None:
        return tuple(torch.full(s, fill, dtype=dtype) for s in shapes)
    return tuple(torch.randn(s, dtype=dtype, generator=generator) for s in shapes)


# --- common_modules.module_inputs_torch_nn_LSTM and the generic checks of test/test_modules.py ------------------


def module_input_samples():
    """The samples module_inputs_torch_nn_LSTM generates: (constructor kwargs, input shape, with hx)."""
    for bias, batch_first, bidir, proj in itertools.product((False, True), (False, True), (False, True), (0, 2)):
        kwargs = dict(input_size=2, hidden_size=3, num_layers=2, proj_size=proj, batch_first=batch_first,
                      bias=bias, bidirectional=bidir)
        name = f"bias{int(bias)}-bf{int(batch_first)}-bidir{int(bidir)}-proj{proj}"
        yield pytest.param(kwargs, (2, 2), False, id=name)
        yield pytest.param(kwargs, (3, 2), True, id=name + "-hx")


SAMPLES = list(module_input_samples())
SAMPLES_WITH_HX = [s for s in SAMPLES if s.values[2]]


def sample_input(m, shape, with_hx, dtype=torch.float32, requires_grad=False):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(shape, dtype=dtype, generator=g).requires_grad_(requires_grad)
    hx = tuple(s.requires_grad_(requires_grad) for s in states(m, None, dtype, g)) if with_hx else None
    return x, hx


@pytest.mark.parametrize("kwargs, shape, with_hx", SAMPLES)
@pytest.mark.parametrize("cls", CLASSES)
def test_module_inputs_forward(cls, kwargs, shape, with_hx):
    """Ports test/test_modules.py::test_forward on module_inputs_torch_nn_LSTM's samples: unbatched input equals
    the no_batch_dim_reference_lstm result (the same input as a batch of one, squeezed) and nn.LSTM's output."""
    m, ref = build(cls, **kwargs)
    x, hx = sample_input(m, shape, with_hx)
    out, (h, c) = run_and_check_trace(m, x, hx)
    assert_close((out, (h, c)), ref(x, hx))
    batch_dim = 0 if kwargs["batch_first"] else 1
    hx1 = None if hx is None else (hx[0].unsqueeze(1), hx[1].unsqueeze(1))
    out1, (h1, c1) = m(x.unsqueeze(batch_dim), hx1)
    assert_close((out, (h, c)), (out1.squeeze(batch_dim), (h1.squeeze(1), c1.squeeze(1))))


@pytest.mark.parametrize("kwargs, shape, with_hx", SAMPLES_WITH_HX)
@pytest.mark.parametrize("cls", CLASSES)
def test_module_inputs_grad(cls, kwargs, shape, with_hx):
    """Ports test/test_modules.py::test_grad: gradcheck (float64) of the module's outputs with respect to its input,
    initial states and every parameter, the parameters passed through torch.func.functional_call."""
    m, _ = build(cls, **kwargs, dtype=torch.float64)
    x, hx = sample_input(m, shape, with_hx, torch.float64, requires_grad=True)
    names = [n for n, _ in m.named_parameters()]
    params = [p.detach().clone().requires_grad_() for p in m.parameters()]

    def fn(x, h0, c0, *ps):
        out, (h, c) = functional_call(m, dict(zip(names, ps, strict=True)), (x, (h0, c0)))
        return out, h, c

    assert torch.autograd.gradcheck(fn, (x, *hx, *params), fast_mode=True)


@pytest.mark.parametrize("kwargs, shape, with_hx", SAMPLES_WITH_HX[::4])
@pytest.mark.parametrize("cls", CLASSES)
def test_module_inputs_gradgrad(cls, kwargs, shape, with_hx):
    """Ports test/test_modules.py::test_gradgrad: gradgradcheck (float64) with respect to input and states."""
    m, _ = build(cls, **kwargs, dtype=torch.float64)
    x, hx = sample_input(m, shape, with_hx, torch.float64, requires_grad=True)

    def fn(x, h0, c0):
        out, (h, c) = m(x, (h0, c0))
        return out, h, c

    assert torch.autograd.gradgradcheck(fn, (x, *hx), fast_mode=True)


CONSTRUCTION_ERRORS = [  # module_error_inputs_torch_nn_RNN_GRU: (args, kwargs, error type, regex)
    ((10, 0, 1), {}, ValueError, "hidden_size must be greater than zero"),
    ((10, 10, 0), {}, ValueError, "num_layers must be greater than zero"),
    ((3, 5), dict(bias=0), TypeError, "bias should be of type bool, got: int"),
    ((3, 5), dict(bias=1), TypeError, "bias should be of type bool, got: int"),
    ((3, 5), dict(bias="True"), TypeError, "bias should be of type bool, got: str"),
    ((3, 5), dict(batch_first=0), TypeError, "batch_first should be of type bool, got: int"),
    ((3, 5), dict(batch_first=1), TypeError, "batch_first should be of type bool, got: int"),
    ((3, 5), dict(batch_first="False"), TypeError, "batch_first should be of type bool, got: str"),
    ((3.0, 5), {}, TypeError, "input_size should be of type int, got: float"),
    (("10", 5), {}, TypeError, "input_size should be of type int, got: str"),
    ((0, 5), {}, ValueError, "input_size must be greater than zero"),
    ((-1, 5), {}, ValueError, "input_size must be greater than zero"),
    ((3, 5.0), {}, TypeError, "hidden_size should be of type int, got: float"),
]


@pytest.mark.parametrize("args, kwargs, error, regex", CONSTRUCTION_ERRORS,
                         ids=[f"{c[0]}-{c[1]}" for c in CONSTRUCTION_ERRORS])
@pytest.mark.parametrize("cls", CLASSES)
def test_module_error_inputs_construction(cls, args, kwargs, error, regex):
    """Ports test/test_modules.py::test_errors on module_error_inputs_torch_nn_RNN_GRU (construction errors)."""
    with pytest.raises(error, match=regex):
        cls(*args, **kwargs)
    assert_same_error(lambda: nn.LSTM(*args, **kwargs), lambda: cls(*args, **kwargs), error)


@pytest.mark.parametrize("dtype, other", [(torch.float32, torch.float64), (torch.float64, torch.float32)])
@pytest.mark.parametrize("cls", CLASSES)
def test_module_error_inputs_dtype_mismatch(cls, dtype, other):
    """Ports test/test_modules.py::test_errors on module_error_inputs_torch_nn_RNN_GRU (input dtype mismatch)."""
    m, ref = build(cls, 3, 5, dtype=dtype)
    x = torch.randn(2, 4, 3, dtype=other)
    with pytest.raises(ValueError, match=r"RNN input dtype .* does not match weight dtype .* "
                                         r"Convert input: input\.to\(.*\), or convert model: model\.to\(.*\)"):
        m(x)
    assert_same_error(lambda: ref(x), lambda: m(x), ValueError)


GENERIC_CONFIGS = [
    pytest.param(dict(input_size=3, hidden_size=4), id="plain"),
    pytest.param(dict(input_size=3, hidden_size=4, num_layers=2, bidirectional=True), id="2layers-bidir"),
    pytest.param(dict(input_size=3, hidden_size=4, num_layers=2, proj_size=2, batch_first=True), id="proj-bf"),
    pytest.param(dict(input_size=3, hidden_size=4, bias=False, bidirectional=True, proj_size=3), id="nobias-proj"),
]


def generic_input(m, dtype=torch.float32, batch=2, seq_len=4, seed=2):
    g = torch.Generator().manual_seed(seed)
    shape = (batch, seq_len) if m.batch_first else (seq_len, batch)
    return torch.randn(*shape, m.input_size, dtype=dtype, generator=g), states(m, batch, dtype, g)


@pytest.mark.parametrize("kwargs", GENERIC_CONFIGS)
@pytest.mark.parametrize("cls", CLASSES)
def test_factory_kwargs(cls, kwargs):
    """Ports test/test_modules.py::test_factory_kwargs: device= and dtype= reach every parameter."""
    ref = nn.LSTM(**kwargs, dtype=torch.float64, device="cpu")
    m = cls(**kwargs, dtype=torch.float64, device="cpu")
    assert [(n, p.shape) for n, p in m.named_parameters()] == [(n, p.shape) for n, p in ref.named_parameters()]
    assert all(p.dtype == torch.float64 and p.device.type == "cpu" for p in m.parameters())
    meta = cls(**kwargs, device="meta")
    assert all(p.device.type == "meta" for p in meta.parameters())
    m.load_state_dict(ref.state_dict())
    x, hx = generic_input(m, torch.float64)
    assert_close(run_and_check_trace(m, x, hx), ref(x, hx))


@pytest.mark.parametrize("kwargs", GENERIC_CONFIGS)
@pytest.mark.parametrize("cls", CLASSES)
def test_device_ctx_init(cls, kwargs):
    """Ports test/test_modules.py::test_device_ctx_init: built under `with torch.device("meta")`, every parameter
    is on meta with the shape the factory kwargs give."""
    with torch.device("meta"):
        m = cls(**kwargs)
    factory = cls(**kwargs, device="meta")
    assert [(n, p.shape, p.device.type) for n, p in m.named_parameters()] == \
           [(n, p.shape, p.device.type) for n, p in factory.named_parameters()]


@pytest.mark.parametrize("kwargs", GENERIC_CONFIGS)
@pytest.mark.parametrize("cls", CLASSES)
def test_repr(cls, kwargs):
    """Ports test/test_modules.py::test_repr: repr and str work (test_lstm_api compares them to nn.LSTM's)."""
    m = cls(**kwargs, dropout=0.25)
    assert repr(m)
    assert str(m) == repr(m)


@pytest.mark.parametrize("kwargs", GENERIC_CONFIGS)
@pytest.mark.parametrize("cls", CLASSES)
def test_pickle(cls, kwargs):
    """Ports test/test_modules.py::test_pickle (torch.save / torch.load of the whole module): same class, same
    configuration, same outputs."""
    m, ref = build(cls, **kwargs)
    x, hx = generic_input(m)
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=False)
    assert type(loaded) is type(m)
    assert_close(run_and_check_trace(loaded, x, hx), ref(x, hx))


@pytest.mark.parametrize("kwargs", GENERIC_CONFIGS)
@pytest.mark.parametrize("cls", CLASSES)
def test_non_contiguous_tensors(cls, kwargs):
    """Ports test/test_modules.py::test_non_contiguous_tensors: non-contiguous input and states give the outputs
    and gradients that contiguous ones give (float64)."""
    m, _ = build(cls, **kwargs, dtype=torch.float64)
    x, hx = generic_input(m, torch.float64)

    def run(x, h0, c0):
        leaves = [t.detach().requires_grad_() for t in (x, h0, c0)]
        m.zero_grad()
        out, (h, c) = m(leaves[0], (leaves[1], leaves[2]))
        (out.sin().sum() + h.cos().sum() + c.sum()).backward()
        return [out, h, c], [t.grad for t in leaves], [p.grad.clone() for p in m.parameters()]

    expected = run(x, *hx)
    noncontig = [make_noncontig(t) for t in (x, *hx)]
    assert not any(t.is_contiguous() for t in noncontig)
    got = run(*noncontig)
    assert_close(got, expected)
    check_trace(m, noncontig[0], tuple(noncontig[1:]), got[0][0], got[0][1:])


@pytest.mark.parametrize("kwargs", GENERIC_CONFIGS)
@pytest.mark.parametrize("cls", CLASSES)
def test_train_and_eval_same_without_dropout(cls, kwargs):
    """Ports test/test_modules.py::test_if_train_and_eval_modes_differ: without dropout nn.LSTM's train and eval
    modes give the same outputs (its ModuleInfo says train_and_eval_differ only through dropout)."""
    m, _ = build(cls, **kwargs)
    x, hx = generic_input(m)
    train = run_and_check_trace(m.train(), x, hx)
    assert_close(run_and_check_trace(m.eval(), x, hx), train)


@pytest.mark.parametrize("kwargs", GENERIC_CONFIGS)
@pytest.mark.parametrize("cls", CLASSES)
def test_to_dtype_and_to_empty(cls, kwargs):
    """Ports test/test_modules.py::test_to and test_to_empty: `.to(dtype)` converts in place (returns the module)
    and computes in float64 as nn.LSTM does; `.to_empty` keeps names, shapes and dtypes."""
    m, ref = build(cls, **kwargs)
    assert m.to(torch.float64) is m
    assert ref.to(torch.float64) is ref
    assert all(p.dtype == torch.float64 for p in m.parameters())
    x, hx = generic_input(m, torch.float64)
    assert_close(run_and_check_trace(m, x, hx), ref(x, hx))
    empty = copy.deepcopy(m).to_empty(device="cpu")
    assert [(n, p.shape, p.dtype) for n, p in empty.named_parameters()] == \
           [(n, p.shape, p.dtype) for n, p in m.named_parameters()]


@pytest.mark.parametrize("kwargs", GENERIC_CONFIGS)
@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.cuda.is_available() is False")
def test_multiple_device_transfer_and_cpu_gpu_parity(cls, kwargs):
    """Ports test/test_modules.py::test_multiple_device_transfer and test_cpu_gpu_parity: cpu → cuda → cpu keeps
    the module working, and on CUDA it matches the CPU nn.LSTM."""
    m, ref = build(cls, **kwargs)
    x, hx = generic_input(m)
    expected = ref(x, hx)
    m.cuda()
    assert all(p.is_cuda for p in m.parameters())
    out, (h, c) = run_and_check_trace(m, x.cuda(), tuple(s.cuda() for s in hx))
    assert_close((out.cpu(), (h.cpu(), c.cpu())), expected, atol=5e-5, rtol=1e-4)
    m.cpu()
    assert_close(run_and_check_trace(m, x, hx), expected)


# --- test/test_nn.py ----------------------------------------------------------------------------------------------


def bad_shape(shape, dim, size):
    shape = list(shape)
    shape[dim] = size
    return tuple(shape)


@pytest.mark.parametrize("cls", CLASSES)
def test_rnn_args_check(cls):
    """Ports TestNN.test_rnn_args_check (its LSTM part): a wrong input batch size, hidden batch size, input size,
    hidden size or hidden[0] size, in h or in c, raises RuntimeError (and the message nn.LSTM gives)."""
    input_size, hidden_size, num_layers, batch, seq_len, bad = 3, 5, 2, 4, 6, 7
    good_input, good_hidden = (seq_len, batch, input_size), (num_layers, batch, hidden_size)
    cases = [
        (bad_shape(good_input, 1, bad), good_hidden),
        (good_input, bad_shape(good_hidden, 1, bad)),
        (bad_shape(good_input, 2, bad), good_hidden),
        (good_input, bad_shape(good_hidden, 2, bad)),
        (good_input, bad_shape(good_hidden, 0, bad)),
    ]
    m, ref = build(cls, input_size, hidden_size, num_layers)
    for input_shape, hidden_shape in cases:
        x, hidden, good = torch.randn(input_shape), torch.randn(hidden_shape), torch.randn(good_hidden)
        hxs = [(hidden, hidden)] if hidden_shape == good_hidden else [(hidden, good), (good, hidden)]
        for hx in hxs:
            with pytest.raises(RuntimeError):
                m(x, hx)
            assert_same_error(lambda x=x, hx=hx: ref(x, hx), lambda x=x, hx=hx: m(x, hx), RuntimeError)


@pytest.mark.parametrize("cls", CLASSES)
def test_projections_lstm_args_check(cls):
    """Ports TestNN.test_projections_lstm_args_check: the same wrong shapes with proj_size, plus h of the hidden
    size instead of the projection size and a wrong number of layers in h or c, raise RuntimeError."""
    input_size, hidden_size, proj_size, num_layers, batch, seq_len, bad = 3, 5, 2, 2, 4, 6, 7
    good_input = (seq_len, batch, input_size)
    good_h, good_c = (num_layers, batch, proj_size), (num_layers, batch, hidden_size)
    cases = [
        (bad_shape(good_input, 1, bad), good_h, good_c),
        (good_input, bad_shape(good_h, 1, bad), bad_shape(good_c, 1, bad)),
        (bad_shape(good_input, 2, bad), good_h, good_c),
        (good_input, bad_shape(good_h, 2, bad), bad_shape(good_c, 2, bad)),
        (good_input, bad_shape(good_h, 0, bad), bad_shape(good_c, 0, bad)),
        (good_input, bad_shape(good_h, 0, hidden_size), good_c),
        (good_input, bad_shape(good_h, 0, bad), good_c),
        (good_input, good_h, bad_shape(good_c, 0, bad)),
    ]
    m, ref = build(cls, input_size, hidden_size, num_layers, proj_size=proj_size)
    for input_shape, h_shape, c_shape in cases:
        x, hx = torch.randn(input_shape), (torch.randn(h_shape), torch.randn(c_shape))
        with pytest.raises(RuntimeError):
            m(x, hx)
        assert_same_error(lambda x=x, hx=hx: ref(x, hx), lambda x=x, hx=hx: m(x, hx), RuntimeError)


@pytest.mark.parametrize("cls", CLASSES)
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.cuda.is_available() is False")
def test_rnn_check_device(cls):
    """Ports TestNN.test_rnn_check_device and test_projections_lstm_check_device (their single-GPU parts): input,
    parameters and states on different devices raise RuntimeError with nn.LSTM's messages."""
    for proj_size in (0, 2):
        m, _ = build(cls, 3, 5, 2, proj_size=proj_size)
        m_cuda = copy.deepcopy(m).to("cuda:0")
        x = torch.randn(6, 4, 3)
        hx = states(m, 4)
        with pytest.raises(RuntimeError, match="Input and parameter tensors are not at the same device"):
            m(x.to("cuda:0"))
        with pytest.raises(RuntimeError, match="Input and parameter tensors are not at the same device"):
            m_cuda(x)
        with pytest.raises(RuntimeError, match="Input and hidden tensors are not at the same device"):
            m(x, tuple(s.to("cuda:0") for s in hx))
        with pytest.raises(RuntimeError, match="Input and hidden tensors are not at the same device"):
            m_cuda(x.to("cuda:0"), hx)


@pytest.mark.parametrize("cls", CLASSES)
def test_rnn_initial_hidden_state(cls):
    """Ports TestNN.test_rnn_initial_hidden_state (LSTM): zero initial states equal giving none."""
    m, ref = build(cls, 6, 5, 2)
    x = torch.randn(4, 3, 6)
    zeros = torch.zeros(2, 3, 5)
    given = run_and_check_trace(m, x, (zeros, zeros))
    assert_close(run_and_check_trace(m, x), given)
    assert_close(given, ref(x))


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("cls", CLASSES)
def test_projections_lstm_initial_hidden_state(cls, bidirectional):
    """Ports TestNN.test_projections_lstm_initial_hidden_state: with proj_size, zero states equal none."""
    m, ref = build(cls, 6, 5, 2, bidirectional=bidirectional, proj_size=3)
    x = torch.randn(4, 3, 6)
    hx = states(m, 3, fill=0.0)
    assert hx[0].shape[-1] == 3
    assert hx[1].shape[-1] == 5
    given = run_and_check_trace(m, x, hx)
    assert_close(run_and_check_trace(m, x), given)
    assert_close(given, ref(x))


@pytest.mark.parametrize("proj_size", [0, 10])
@pytest.mark.parametrize("cls", CLASSES)
def test_cudnn_forward_exception(cls, proj_size):
    """Ports TestNN.test_cudnn_forward_exception (it runs on the CPU too): states of the wrong size and input of
    the wrong feature size raise RuntimeError with nn.LSTM's messages."""
    m, ref = build(cls, 10, 20, batch_first=True, proj_size=proj_size)
    hidden = (torch.zeros(1, 2, 19), torch.zeros(1, 2, 19))
    x_wrong, x_right = torch.randn(2, 3, 3), torch.randn(2, 3, 10)
    with pytest.raises(RuntimeError, match="Expected hidden.*size.*got"):
        m(x_right, hidden)
    with pytest.raises(RuntimeError, match=r"input\.size\(-1\) must be equal to input_size"):
        m(x_wrong)
    assert_same_error(lambda: ref(x_right, hidden), lambda: m(x_right, hidden))
    assert_same_error(lambda: ref(x_wrong), lambda: m(x_wrong))


def forward_backward(rnn, input_val, grad_output, weights_val, hx_val, grad_hy, cx_val=None, grad_cy=None):
    """_test_RNN_cpu_vs_cudnn's forward_backward: copy weights in through `all_weights`, run forward and backward
    with given output gradients, return the outputs and every gradient."""
    with torch.no_grad():
        for x_layer, y_layer in zip(rnn.all_weights, weights_val, strict=True):
            for x, y in zip(x_layer, y_layer, strict=True):
                x.copy_(y)
    if isinstance(input_val, PackedSequence):
        leaf = input_val.data.detach().clone().requires_grad_()
        inp = PackedSequence(leaf, input_val.batch_sizes, input_val.sorted_indices, input_val.unsorted_indices)
    else:
        leaf = input_val.detach().clone().requires_grad_()
        inp = leaf
    cx_val = hx_val if cx_val is None else cx_val
    hx = (hx_val.detach().clone().requires_grad_(), cx_val.detach().add(1).requires_grad_())
    rnn.zero_grad()
    output, hy = rnn(inp, hx)
    out_data = output.data if isinstance(output, PackedSequence) else output
    grad_cy = grad_hy + 1 if grad_cy is None else grad_cy + 1
    torch.autograd.backward([out_data, hy[0], hy[1]], [grad_output, grad_hy, grad_cy])
    return dict(output=output, hy=hy[0], cy=hy[1], grad_input=leaf.grad, grad_hx=hx[0].grad, grad_cx=hx[1].grad,
                weight_grads=[[w.grad for w in layer] for layer in rnn.all_weights], hx=hx, input=inp)


def cpu_vs_reference_cases():
    """A fraction of the original's full product of (bias, bidirectional, batch_first, contig, variable_len,
    lens_as_tensor), to keep the run short: every flag takes both values, lengths come as none, a list, a tensor."""
    for i, (bias, bidirectional, batch_first) in enumerate(itertools.product((True, False), repeat=3)):
        lengths = ("none", "list", "tensor")[i % 3]
        yield bias, bidirectional, batch_first, i % 2 == 0, lengths != "none", lengths == "tensor"


CPU_VS_REFERENCE_CASES = list(cpu_vs_reference_cases())


@pytest.mark.parametrize("proj_size", [0, 3])
@pytest.mark.parametrize("dropout", [0, 1], ids=["no_dropout", "with_dropout"])
@pytest.mark.parametrize("cls", CLASSES)
def test_RNN_cpu_vs_reference(cls, dropout, proj_size):
    """Ports TestNN._test_RNN_cpu_vs_cudnn (test_RNN_cpu_vs_cudnn_no_dropout / _with_dropout; its LSTM and
    LSTM-with-projections loops) with the module under test in the CUDA module's place, on the CPU: weights copied
    in through all_weights, combinations of bias, bidirectional, batch_first, contiguity and variable lengths (as a
    list or a tensor; see cpu_vs_reference_cases), float64; outputs, final states and all gradients equal
    nn.LSTM's."""
    input_size, hidden_size, num_layers, seq_length, batch = 10, 6, 2, 7, 6
    dtype = torch.float64
    torch.manual_seed(0)
    for bias, bidirectional, batch_first, contig, variable_len, lens_as_tensor in CPU_VS_REFERENCE_CASES:
        D = 2 if bidirectional else 1
        out_size = (proj_size or hidden_size) * D
        tb = (batch, seq_length) if batch_first else (seq_length, batch)
        input_val = torch.randn(*tb, input_size, dtype=dtype)
        grad_output = torch.randn(*tb, out_size, dtype=dtype)
        hx_val = torch.randn(num_layers * D, batch, proj_size or hidden_size, dtype=dtype)
        cx_val = torch.randn(num_layers * D, batch, hidden_size, dtype=dtype)
        grad_hy = torch.randn(num_layers * D, batch, proj_size or hidden_size, dtype=dtype)
        grad_cy = torch.randn(num_layers * D, batch, hidden_size, dtype=dtype)
        if not contig:
            input_val, grad_output = make_noncontig(input_val), make_noncontig(grad_output)
            hx_val, cx_val = make_noncontig(hx_val), make_noncontig(cx_val)
            grad_hy, grad_cy = make_noncontig(grad_hy), make_noncontig(grad_cy)
        if variable_len:
            lengths = [7, 5, 5, 2, 1, 1]
            if lens_as_tensor:
                lengths = torch.tensor(lengths, dtype=torch.long)
            input_val = rnn_utils.pack_padded_sequence(input_val, lengths, batch_first=batch_first)
            grad_output = rnn_utils.pack_padded_sequence(grad_output, lengths, batch_first=batch_first).data
        options = dict(bias=bias, dropout=dropout, bidirectional=bidirectional, batch_first=batch_first,
                       proj_size=proj_size)
        ref = nn.LSTM(input_size, hidden_size, num_layers, **options).to(dtype)
        m = cls(input_size, hidden_size, num_layers, **options).to(dtype)
        expected = forward_backward(ref, input_val, grad_output, ref.all_weights, hx_val, grad_hy, cx_val, grad_cy)
        got = forward_backward(m, input_val, grad_output, ref.all_weights, hx_val, grad_hy, cx_val, grad_cy)
        for key in ("output", "hy", "cy", "grad_input", "grad_hx", "grad_cx", "weight_grads"):
            assert_close(got[key], expected[key])
        check_trace(m, got["input"], got["hx"], got["output"], (got["hy"], got["cy"]))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("cls", CLASSES)
def test_rnn_fused(cls, device, dtype, bias):
    """Ports TestNNDeviceType.test_rnn_fused (LSTM): a CPU nn.LSTM and the module under test on `device`, weights
    copied through all_weights, given states and output gradients: outputs, states and every gradient agree."""
    input_size, hidden_size, num_layers, seq_length, batch = 10, 6, 2, 7, 6
    g = torch.Generator().manual_seed(3)
    input_val = torch.randn(seq_length, batch, input_size, dtype=dtype, generator=g)
    grad_output = torch.randn(seq_length, batch, hidden_size, dtype=dtype, generator=g)
    hx_val = torch.randn(num_layers, batch, hidden_size, dtype=dtype, generator=g)
    grad_hy = torch.randn(num_layers, batch, hidden_size, dtype=dtype, generator=g)
    torch.manual_seed(0)
    ref = nn.LSTM(input_size, hidden_size, num_layers, bias=bias).to(dtype)
    m = cls(input_size, hidden_size, num_layers, bias=bias).to(device, dtype)
    with torch.no_grad():
        for x_layer, y_layer in zip(m.all_weights, ref.all_weights, strict=True):
            for x, y in zip(x_layer, y_layer, strict=True):
                x.copy_(y)
    hx = (hx_val.clone().requires_grad_(), hx_val.add(1).requires_grad_())
    hx_dev = (hx_val.to(device, copy=True).requires_grad_(), hx_val.to(device).add(1).requires_grad_())
    inp, inp_dev = input_val.clone().requires_grad_(), input_val.to(device, copy=True).requires_grad_()
    out1, hy1 = ref(inp, hx)
    out2, hy2 = m(inp_dev, hx_dev)
    torch.autograd.backward([out1, hy1[0], hy1[1]], [grad_output, grad_hy, grad_hy + 1])
    torch.autograd.backward([out2, hy2[0], hy2[1]],
                            [grad_output.to(device), grad_hy.to(device), (grad_hy + 1).to(device)])
    tol = tolerance(dtype, device)
    to_cpu = lambda ts: [t.cpu() for t in ts]  # noqa: E731
    assert_close(to_cpu([out2, *hy2]), [out1, *hy1], **tol)
    assert_close(to_cpu([inp_dev.grad, *[h.grad for h in hx_dev]]), [inp.grad, *[h.grad for h in hx]], **tol)
    for x_layer, y_layer in zip(m.all_weights, ref.all_weights, strict=True):
        assert_close(to_cpu([w.grad for w in x_layer]), [w.grad for w in y_layer], **tol)
    check_trace(m, inp_dev, hx_dev, out2, hy2)


@pytest.mark.parametrize("cls", CLASSES)
def test_RNN_cudnn_weight_norm(cls):
    """Ports TestNN.test_RNN_cudnn_weight_norm (its CPU half): weight norm on weight_hh_l0, and on weight_hr_l0 with
    projections, leaves the output unchanged, and so does removing it. The old API recomputes the weight as a plain
    attribute before each call; the parametrization API makes it a property: the forward must read it at call
    time."""
    input_size, hidden_size, num_layers, seq_length, batch = 10, 6, 2, 7, 6
    for kwargs, name in ((dict(), "weight_hh_l0"), (dict(proj_size=3), "weight_hr_l0")):
        m, _ = build(cls, input_size, hidden_size, num_layers, **kwargs)
        x = torch.randn(seq_length, batch, input_size)
        expected = m(x)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # torch.nn.utils.weight_norm is deprecated
            old = torch.nn.utils.weight_norm(copy.deepcopy(m), name=name)
        assert name not in dict(old.named_parameters())
        assert_close(run_and_check_trace(old, x), expected)
        old = torch.nn.utils.remove_weight_norm(old, name=name)
        assert_close(run_and_check_trace(old, x), expected)
        new = torch.nn.utils.parametrizations.weight_norm(copy.deepcopy(m), name=name)
        assert_close(run_and_check_trace(new, x), expected)
        torch.nn.utils.parametrize.remove_parametrizations(new, name)
        assert_close(run_and_check_trace(new, x), expected)


@pytest.mark.parametrize("cls", CLASSES)
def test_partial_flat_weights(cls):
    """Ports TestNN.test_partial_flat_weights (CUDA-only there; here `.to(float64)` stands in for `.cuda()`): with
    weight_hh_l0 deleted the module still converts, and once the weight is set back (as a plain tensor) it runs and
    gives the original output."""
    m, _ = build(cls, 10, 6, 2)
    inp = torch.randn(3, 2, 10)
    out_expected = m(inp)
    weight_orig = m.weight_hh_l0
    del m.weight_hh_l0
    assert not hasattr(m, "weight_hh_l0")
    m.to(torch.float64)
    m.weight_hh_l0 = weight_orig.detach().to(torch.float64)
    out = run_and_check_trace(m, inp.double())
    assert_close(out[0], out_expected[0].double(), atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("p", [0, 0.276, 0.731, 1])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cls", CLASSES)
def test_RNN_dropout(cls, train, p):
    """Ports TestNN.test_RNN_dropout (an RNN with unit weights there) to the LSTM: two layers without biases, layer 0
    all-ones weights, layer 1 weights 1/H, one step on an all-ones input: every unit of the output is equal, and its
    value says how many of layer 0's H outputs the inter-layer dropout kept (k of them, scaled by 1/(1−p)). k = H
    without dropout or in eval mode, 0 when p = 1, and near H·(1−p) otherwise. h_n of layer 0 is never dropped."""
    H, n_in = 1000, 10
    m = cls(n_in, H, 2, bias=False, dropout=p, dtype=torch.float64).train(train)
    with torch.no_grad():
        m.weight_ih_l0.fill_(1)
        m.weight_hh_l0.fill_(1)
        m.weight_ih_l1.fill_(1 / H)
        m.weight_hh_l1.fill_(1)
    x = torch.ones(1, 1, n_in, dtype=torch.float64)
    hx = states(m, 1, torch.float64, fill=0.0)
    torch.manual_seed(0)
    output, (h_n, _) = m(x, hx)
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    cell = lambda z: sig(z) * math.tanh(sig(z) * math.tanh(z))  # noqa: E731 - one step from zero states, z all gates
    h1 = cell(n_in)
    layer2 = [cell(k * h1 / (H * (1 - p))) if p < 1 else 0.0 for k in range(H + 1)]
    assert output.min() == output.max()
    assert h_n[1].min() == h_n[1].max()
    value = output[0, 0, 0].item()
    assert h_n[0].min() == h_n[0].max()
    assert h_n[0][0, 0].item() == pytest.approx(h1, abs=1e-12)
    assert h_n[1][0, 0].item() == value
    if p == 0 or not train:
        assert value == pytest.approx(cell(h1), abs=1e-12)
    elif p == 1:
        assert value == 0
    else:
        k = min(range(H + 1), key=lambda k: abs(layer2[k] - value))
        assert abs(layer2[k] - value) < 1e-10, "the output is no whole number of kept units"
        assert 0.8 * H * (1 - p) < k < 1.2 * H * (1 - p)
    check_trace(m, x, hx, output, (h_n, _))


@pytest.mark.parametrize("bidirectional", [True, False])
@pytest.mark.parametrize("cls", CLASSES)
def test_error_RNN_seq_len_zero(cls, bidirectional):
    """Ports TestNN.test_error_RNN_seq_len_zero (its CPU part): an empty sequence raises RuntimeError "Expected
    sequence length to be larger than 0 in RNN"."""
    m, ref = build(cls, 5, 6, bidirectional=bidirectional)
    x = torch.ones(0, 10, 5)
    with pytest.raises(RuntimeError, match="Expected sequence length to be larger than 0 in RNN"):
        m(x)
    assert_same_error(lambda: ref(x), lambda: m(x))


@pytest.mark.parametrize("cls", CLASSES)
def test_RNN_input_size_zero(cls):
    """Ports TestNN.test_RNN_input_size_zero (LSTM): a batch of zero sequences gives an output of shape (5, 0, 4),
    and backward through it works."""
    m, ref = build(cls, input_size=3, hidden_size=4)
    x = torch.zeros(5, 0, 3, requires_grad=True)
    out, hidden = run_and_check_trace(m, x)
    assert out.shape == torch.Size([5, 0, 4])
    assert_close((out, hidden), ref(x))
    out.sum().backward()


@pytest.mark.parametrize("p", [0, 0.1234])
@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cls", CLASSES)
def test_RNN_dropout_state(cls, train, p):
    """Ports TestNN.test_RNN_dropout_state (an RNN there) to the LSTM: with dropout in train mode two calls differ,
    and so does a copy saved and loaded with torch.save/torch.load (then flatten_parameters); without dropout or in
    eval mode all three agree."""
    torch.manual_seed(0)
    m = cls(100, 100, 2, bias=False, dropout=p).train(train)
    x, hx = torch.rand(1, 1, 100), (torch.rand(2, 1, 100), torch.rand(2, 1, 100))
    output1, hy1 = m(x, hx)
    output2, hy2 = m(x, hx)
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    m2 = torch.load(buf, weights_only=False)
    m2.flatten_parameters()
    output3, hy3 = m2(x, hx)
    if p == 0 or not train:
        assert_close((output2, hy2), (output1, hy1))
        assert_close((output3, hy3), (output1, hy1))
        check_trace(m, x, hx, output1, hy1)
    else:
        assert not torch.equal(output1, output2)
        assert not torch.equal(output1, output3)
        assert not torch.equal(hy1[0], hy2[0])
        assert not torch.equal(hy1[0], hy3[0])


@pytest.mark.parametrize("train", [True, False], ids=["train", "eval"])
@pytest.mark.parametrize("cls", CLASSES)
def test_RNN_change_dropout(cls, train):
    """Ports TestNN.test_RNN_change_dropout (an RNN there) to the LSTM: `m.dropout = p` set between calls takes
    effect at once: in train mode 0 < p < 1 makes two calls differ and every change of p changes the output; p in
    {0, 1} or eval mode make calls repeatable (eval: always the same output)."""
    torch.manual_seed(0)
    m = cls(100, 100, 2, dropout=0).train(train)
    x = torch.rand(3, 2, 100)
    prev_output = None
    for p in (0, 0.5, 0, 0.7, 0.2, 1, 0.2, 0):
        m.dropout = p
        output1, hy1 = m(x)
        output2, hy2 = m(x)
        if p in (0, 1) or not train:
            assert_close((output2, hy2), (output1, hy1))
        else:
            assert not torch.equal(output1, output2)
            assert not torch.equal(hy1[0], hy2[0])
        if prev_output is not None:
            if train:
                assert not torch.equal(output1, prev_output)
                assert not torch.equal(output2, prev_output)
            else:
                assert_close(output1, prev_output)
                assert_close(output2, prev_output)
        prev_output = output1.detach()


@pytest.mark.parametrize("cls", CLASSES)
def test_cudnn_weight_tying(cls):
    """Ports TestNN.test_cudnn_weight_tying (its CPU half): with bias_ih_l0_reverse tied to bias_ih_l0 the module
    matches an nn.LSTM tied the same way, before and after an SGD step (which updates the shared tensor once)."""
    for proj_size in (0, 10):
        m, ref = build(cls, 10, 20, batch_first=True, bidirectional=True, proj_size=proj_size)
        for rnn in (m, ref):
            rnn.bias_ih_l0_reverse = rnn.bias_ih_l0
        assert len(list(m.parameters())) == len(list(ref.parameters()))
        x = torch.randn(5, 4, 10)
        hx = states(m, 5)
        for rnn in (m, ref):  # one step of plain SGD (lr 0.1) on each
            out, (h, c) = rnn(x, hx)
            (out.sum() + h.sum() + c.sum()).backward()
            with torch.no_grad():
                for p in rnn.parameters():
                    p -= 0.1 * p.grad
        assert m.bias_ih_l0_reverse is m.bias_ih_l0
        assert_close(run_and_check_trace(m, x, hx), ref(x, hx))


@pytest.mark.parametrize("proj_size", [0, 10])
@pytest.mark.parametrize("cls", CLASSES)
def test_cudnn_weight_format(cls, proj_size):
    """Ports TestNN.test_cudnn_weight_format (its CPU half): after a weight's storage is replaced with `.set_` the
    outputs and gradients are unchanged, and the parameter still shares the new storage."""
    m, _ = build(cls, 10, 20, batch_first=True, proj_size=proj_size)
    x = torch.randn(5, 4, 10, requires_grad=True)
    hx = tuple(s.requires_grad_() for s in states(m, 5))
    all_vars = [x, *hx, *m.parameters()]

    def run():
        for v in all_vars:
            v.grad = None
        out, hidden = m(x, hx)
        out.sum().backward()
        return out.detach(), [v.grad.clone() for v in all_vars]

    output, grads = run()
    weight = all_vars[4]
    weight_data = weight.data.clone()
    with torch.no_grad():
        weight.set_(weight_data)
    for _ in range(2):
        output_noncontig, grads_noncontig = run()
        assert_close(output_noncontig, output)
        assert_close(grads_noncontig, grads)
    weight_data[:] = 4
    assert torch.equal(weight_data, all_vars[4].data)


@pytest.mark.parametrize("cls", CLASSES)
def test_save_lstm_compatibility(cls):
    """Ports TestNNDeviceType.test_save_lstm_compatibility: a state (module __dict__) without proj_size, as PyTorch
    1.7 pickled it, loads through __setstate__ and gives the same output."""
    m, _ = build(cls, 2, 3)
    x = torch.randn(32, 5, 2)
    expected = m(x)
    assert m.proj_size == 0
    state = dict(m.__dict__)
    del state["proj_size"]
    loaded = cls(2, 3)
    loaded.__setstate__(state)
    assert loaded.proj_size == 0
    assert_close(run_and_check_trace(loaded, x), expected)


@pytest.mark.parametrize("cls", CLASSES)
def test_rnn_retain_variables(cls):
    """Ports TestNNDeviceType.test_rnn_retain_variables (LSTM, float64): backward repeated over a retained graph
    gives the same gradients every time, and they equal nn.LSTM's."""
    m, ref = build(cls, 10, 20, num_layers=2, dtype=torch.float64)
    x = torch.randn(5, 6, 10, dtype=torch.float64, requires_grad=True)
    output = m(x)
    output[0].sum().backward(retain_graph=True)
    grads = [x.grad.clone()] + [p.grad.clone() for p in m.parameters()]
    for _ in range(4):
        m.zero_grad()
        x.grad.zero_()
        output[0].sum().backward(retain_graph=True)
        assert_close([x.grad] + [p.grad for p in m.parameters()], grads)
    x_ref = x.detach().clone().requires_grad_()
    ref(x_ref)[0].sum().backward()
    assert_close(grads, [x_ref.grad] + [p.grad for p in ref.parameters()])


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("cls", CLASSES)
def test_LSTM_grad_and_gradgrad(cls, bias):
    """Ports TestNNDeviceType.test_LSTM_grad_and_gradgrad (_test_rnn_mod): gradcheck and gradgradcheck, float64, of
    (output, h_n, c_n) with respect to the input."""
    hsize = 4
    torch.manual_seed(0)
    inp = torch.rand(1, 3, hsize, dtype=torch.float64, requires_grad=True)
    mod = cls(hsize, hsize, bias=bias).to(torch.float64)

    def flatten_out(inp):
        out, (h, c) = mod(inp)
        return out, h, c

    assert torch.autograd.gradcheck(flatten_out, inp, check_batched_grad=False)
    assert torch.autograd.gradgradcheck(flatten_out, inp, check_batched_grad=False)


@pytest.mark.parametrize("cls", CLASSES)
def test_LSTM_differentiable_backward_using_oneDNN(cls):
    """Ports TestNNDeviceType.test_LSTM_differentiable_backward_using_oneDNN (smaller: 4 layers, not 20): double
    backward (a loss on d output / d input) gives the first and second derivatives nn.LSTM gives, with oneDNN on
    and off."""
    m, ref = build(cls, 3, 3, 4, batch_first=True)
    x = torch.rand(4, 5, 3)

    def double_backward(net):
        x1 = x.clone().requires_grad_()
        net.zero_grad()
        out, _ = net(x1)
        der = torch.autograd.grad(out, x1, grad_outputs=torch.ones_like(out), retain_graph=True,
                                  create_graph=True)[0]
        der.sum().backward(retain_graph=True)
        return der.detach(), x1.grad, [p.grad.clone() if p.grad is not None else None for p in net.parameters()]

    got = double_backward(m)
    for enabled in (False, True):
        with torch.backends.mkldnn.flags(enabled=enabled):
            expected = double_backward(ref)
        assert_close(got[:2], expected[:2])
        for g, e in zip(got[2], expected[2], strict=True):
            assert (g is None) == (e is None)
            if e is not None:
                assert_close(g, e)


def pad(t, length):
    if t.size(0) == length:
        return t
    return torch.cat([t, t.new_zeros(length - t.size(0), *t.size()[1:])])


VARIABLE_SEQUENCE_CASES = [  # enforce_sorted, lengths
    (True, [5]),
    (False, [5]),
    (True, [10, 10, 6, 2, 2, 1, 1]),
    (False, [10, 10, 6, 2, 2, 1, 1]),
    (False, [2, 1, 3, 2, 10, 5, 3]),
]


@pytest.mark.parametrize("proj_size", [0, 2])
@pytest.mark.parametrize("use_default_hiddens", [True, False], ids=["no_hx", "hx"])
@pytest.mark.parametrize("enforce_sorted, lengths", VARIABLE_SEQUENCE_CASES,
                         ids=[f"sorted{int(s)}-{'_'.join(map(str, lens))}" for s, lens in VARIABLE_SEQUENCE_CASES])
@pytest.mark.parametrize("cls", CLASSES)
def test_variable_sequence(cls, enforce_sorted, lengths, use_default_hiddens, proj_size):
    """Ports TestNNDeviceType.test_variable_sequence (float32, its tolerances): a packed batch of variable-length
    sequences (2 layers, bidirectional) gives, unpacked, the outputs and final states of running each sequence
    alone, and the same gradients for the input and every parameter. Also: the packed output equals nn.LSTM's."""
    input_size, hidden_size, num_layers = 3, 4, 2
    torch.manual_seed(0)
    max_length = max(lengths)
    x_leaf = torch.randn(max_length, len(lengths), input_size, requires_grad=True)
    lstm, ref = build(cls, input_size, hidden_size, bidirectional=True, num_layers=num_layers, proj_size=proj_size)
    lstm2 = copy.deepcopy(lstm)
    x = x_leaf
    hidden0 = None
    if not use_default_hiddens:
        hidden0 = states(lstm, len(lengths))

    seq_outs, seq_hiddens = [], []
    for i, length in enumerate(lengths):
        hidden_i = None if hidden0 is None else tuple(s[:, i:i + 1].contiguous() for s in hidden0)
        out, hid = lstm2(x[:length, i:i + 1], hidden_i)
        seq_outs.append(pad(out, max_length))
        seq_hiddens.append(hid)
    seq_out = torch.cat(seq_outs, 1)
    seq_hidden = tuple(torch.cat(hids, 1) for hids in zip(*seq_hiddens, strict=True))

    packed = rnn_utils.pack_padded_sequence(x, lengths, enforce_sorted=enforce_sorted)
    packed_out, packed_hidden = lstm(packed, hidden0)
    unpacked, unpacked_len = rnn_utils.pad_packed_sequence(packed_out)
    assert_close(packed_hidden, seq_hidden, atol=1e-5, rtol=0)
    assert_close(unpacked, seq_out, atol=1e-5, rtol=0)
    assert unpacked_len.tolist() == lengths
    assert_close((packed_out, packed_hidden), ref(packed, hidden0))
    check_trace(lstm, packed, hidden0, packed_out, packed_hidden)

    seq_out.sum().backward()
    grad_x = x_leaf.grad.clone()
    x_leaf.grad.zero_()
    unpacked.sum().backward()
    assert_close(x_leaf.grad, grad_x, atol=1e-5, rtol=0)
    for p1, p2 in zip(lstm.parameters(), lstm2.parameters(), strict=True):
        assert_close(p1.grad, p2.grad, atol=2e-4, rtol=0)
