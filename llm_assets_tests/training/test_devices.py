import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llm_assets.definitions import PRELOADED
from llm_assets.training.devices import (
    DeviceUnavailableError,
    choose_precision,
    cpu_has_native_bf16,
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


# A fresh interpreter that records PYTORCH_ENABLE_MPS_FALLBACK at the moment torch is first
# imported (PyTorch reads it then and never again), then starts one of the entry points.
FIRST_IMPORT_SPY = """
import importlib, importlib.abc, os, sys
seen = []
class Spy(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" and not seen:
            seen.append(os.environ.get("PYTORCH_ENABLE_MPS_FALLBACK"))
        return None
sys.meta_path.insert(0, Spy())
for module in sys.argv[1:]:
    importlib.import_module(module)
if "llm_assets" in sys.modules:
    sys.modules["llm_assets"].defs  # what Dagster's code location loads
print(repr(seen))
"""
ENTRY_POINTS = {
    # dagster dev / dagster asset materialize -m llm_assets, the executor's fork server, then the
    # training step forked from it
    "dagster code location": ["dagster", "llm_assets", *PRELOADED, "llm_assets.training.train"],
    "llm-assets command": ["llm_assets.cli", "llm_assets.training.generate"],
    "torchrun worker": ["llm_assets.training.launch"],
}


@pytest.mark.parametrize("entry", ENTRY_POINTS)
@pytest.mark.parametrize("user_value", [None, "0"])
def test_mps_fallback_is_set_before_torch_is_first_imported(entry: str, user_value: str | None):
    env = {k: v for k, v in os.environ.items() if k != "PYTORCH_ENABLE_MPS_FALLBACK"}
    if user_value is not None:
        env["PYTORCH_ENABLE_MPS_FALLBACK"] = user_value
    done = subprocess.run([sys.executable, "-c", FIRST_IMPORT_SPY, *ENTRY_POINTS[entry]],
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == repr([user_value or "1"])


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
