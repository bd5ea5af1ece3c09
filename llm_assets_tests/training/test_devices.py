import os
from pathlib import Path

import pytest
import torch

from llm_assets.training.devices import (
    DeviceUnavailableError,
    choose_precision,
    cpu_has_native_bf16,
    prepare_device,
    resolve_device,
)

NO_MPS = not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available())
NO_CUDA = not torch.cuda.is_available()


@pytest.mark.skipif(not NO_MPS, reason="this machine has MPS")
def test_requesting_absent_mps_fails_fast_naming_mps():
    with pytest.raises(DeviceUnavailableError) as caught:
        resolve_device("mps")
    message = str(caught.value)
    assert "LLM_DEVICE=mps" in message
    assert "auto or cpu" in message


@pytest.mark.skipif(not NO_CUDA, reason="this machine has CUDA")
def test_requesting_absent_cuda_fails_fast_naming_cuda():
    with pytest.raises(DeviceUnavailableError, match="LLM_DEVICE=cuda"):
        resolve_device("cuda")


def test_auto_picks_the_best_present_device():
    expected = "cuda" if not NO_CUDA else "mps" if not NO_MPS else "cpu"
    assert resolve_device("auto") == expected
    assert resolve_device(" AUTO ") == expected
    assert resolve_device("cpu") == "cpu"


def test_a_typo_is_not_a_device():
    with pytest.raises(ValueError, match="LLM_DEVICE='gpu'"):
        resolve_device("gpu")


def test_prepare_mps_enables_the_cpu_fallback_for_missing_kernels(monkeypatch):
    monkeypatch.delenv("PYTORCH_ENABLE_MPS_FALLBACK", raising=False)
    prepare_device("mps")
    assert os.environ["PYTORCH_ENABLE_MPS_FALLBACK"] == "1"


def test_cpu_auto_precision_is_fp32_by_measurement():
    # bf16 autocast measured slower than fp32 on this AVX512-BF16 CPU (benchmarks/TRAINING.md).
    assert choose_precision("cpu") == "fp32"
    assert choose_precision("cpu", "fp32") == "fp32"


def test_cpu_fp16_is_refused_naming_the_key():
    with pytest.raises(ValueError, match="`precision`"):
        choose_precision("cpu", "fp16")


def test_cpu_bf16_follows_the_hardware():
    if cpu_has_native_bf16():
        assert choose_precision("cpu", "bf16") == "bf16"
    else:
        with pytest.raises(ValueError, match="`precision`"):
            choose_precision("cpu", "bf16")


def test_unknown_precision_names_the_key():
    with pytest.raises(ValueError, match="`precision`.*'fp8'"):
        choose_precision("cpu", "fp8")


def test_mps_auto_precision_is_fp32():
    assert choose_precision("mps") == "fp32"


def test_native_bf16_agrees_with_the_cpu_flags():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.exists():
        pytest.skip("no /proc/cpuinfo")
    flags = cpuinfo.read_text()
    assert cpu_has_native_bf16() == ("avx512_bf16" in flags or "amx_bf16" in flags)
