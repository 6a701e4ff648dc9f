"""Device faults, simulated on the CPU: without CUDA the device is offered disabled with the reason; when CUDA
runs out of memory (or its driver fails) the run is redone on the CPU with a message, and the session goes on."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from app_support import APP, assert_clean, rendered, report, start
from figure_data import explorer_focus, step_z
from streamlit.testing.v1 import AppTest

from lstm_viz import pipeline
from lstm_viz.pipeline import AppConfig, make_sequence, run

pytestmark = pytest.mark.app

CUDA_OOM = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 1.00 GiB free)")
DRIVER_FAULT = RuntimeError("CUDA error: an illegal memory access was encountered\nCompile with TORCH_USE_CUDA_DSA")


def faulty_gpu(monkeypatch, fault: Exception) -> list[str]:
    """Make every run on "cuda" fail with `fault` (before touching a device); returns the devices tried."""
    tried, real = [], pipeline.traced_run

    def traced_run(config, *args):
        tried.append(config.device)
        if config.device == "cuda":
            raise fault
        return real(config, *args)

    monkeypatch.setattr(pipeline, "traced_run", traced_run)
    return tried


@pytest.mark.parametrize("fault,says", [(CUDA_OOM, "CUDA ran out of GPU memory"),
                                        (DRIVER_FAULT, "CUDA failed: CUDA error: an illegal memory access")])
def test_a_cuda_fault_falls_back_to_the_cpu_with_a_notice(monkeypatch, fault, says):
    tried = faulty_gpu(monkeypatch, fault)
    config = AppConfig(device="cuda")
    result = run(config, make_sequence(config, {}))
    assert tried == ["cuda", "cpu"]
    assert result.notice.startswith(says)
    assert "computed on the CPU instead" in result.notice
    assert result.x.device.type == "cpu"
    assert result.trace.f.device.type == "cpu"
    on_cpu = run(AppConfig(), make_sequence(AppConfig(), {}))
    assert on_cpu.notice == ""
    torch.testing.assert_close(result.trace.c, on_cpu.trace.c, rtol=0, atol=0)  # the same run, on the CPU


def test_a_cpu_fault_is_not_retried(monkeypatch):
    tried = faulty_gpu(monkeypatch, CUDA_OOM)

    def out_of_memory(*args):
        tried.append("cpu")
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 80000000000 bytes")

    monkeypatch.setattr(pipeline, "traced_run", out_of_memory)
    with pytest.raises(RuntimeError, match="can't allocate memory"):
        run(AppConfig(), make_sequence(AppConfig(), {}))
    assert tried == ["cpu"]


def test_in_the_app_cuda_out_of_memory_shows_a_message_and_the_cpu_run(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU server, as far as the app can tell
    tried = faulty_gpu(monkeypatch, CUDA_OOM)
    at = start()
    cpu_view = step_z(at, "f")
    assert not at.selectbox(key="device").disabled
    at.selectbox(key="device").set_value("cuda").run()
    assert_clean(at)
    assert any("CUDA ran out of GPU memory" in w.value and "on the CPU instead" in w.value for w in at.warning)
    np.testing.assert_array_equal(step_z(at, "f"), cpu_view)  # same seed: the CPU run it fell back to
    assert tried[-2:] == ["cuda", "cpu"]
    report(at, t=1)  # the session goes on, and is not retried on every rerun
    assert_clean(at)
    assert explorer_focus(at)["t"] == 1
    assert tried.count("cuda") == 1


def test_in_the_app_running_out_of_cpu_memory_is_a_message_and_the_last_good_view_stays(monkeypatch):
    at = start()
    good = step_z(at, "f")

    def out_of_memory(*args):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 80000000000 bytes")

    monkeypatch.setattr(pipeline, "traced_run", out_of_memory)
    at.number_input(key="hidden_size").set_value(9).run()
    assert_clean(at)
    assert any("can't allocate memory" in rendered(e.value) for e in at.error)
    np.testing.assert_array_equal(step_z(at, "f"), good)


def test_without_cuda_the_device_is_disabled_with_the_reason_even_when_a_link_asks_for_it():
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["device"] = "cuda"  # a link made on a GPU server
    at.run()
    assert_clean(at)
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    device = at.selectbox(key="device")
    assert device.disabled
    assert device.value == "cpu"
    assert any("torch.cuda.is_available() is False" in c.value for c in at.sidebar.caption)
    assert step_z(at, "f").shape == (AppConfig().batch_size, AppConfig().hidden_size)
