"""Where training runs and in which number format.

Decided once, before any work, so a machine without the requested accelerator fails in the first
second rather than after the data is loaded, and the choice is recorded in the metadata.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from llm_assets.settings import DEVICE_CHOICES, DEVICE_VAR
from llm_assets.training.config import PRECISIONS


class DeviceUnavailableError(RuntimeError):
    """An explicitly requested device is not present on this machine."""


def _cuda_available() -> bool:
    return torch.cuda.is_available()


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def resolve_device(requested: str) -> str:
    """Turn ``auto`` into the best device here (cuda, then mps, then cpu); check an explicit one exists.

    An explicit device that is missing is an error, not a silent CPU run: the user asked for it and
    would otherwise wait hours for a run they thought was on the GPU.
    """
    value = (requested or "auto").strip().lower()
    if value not in DEVICE_CHOICES:
        raise ValueError(
            f"{DEVICE_VAR}={requested!r} is not a device: use one of {', '.join(DEVICE_CHOICES)}."
        )
    if value == "auto":
        if _cuda_available():
            return "cuda"
        if _mps_available():
            return "mps"
        return "cpu"
    if value == "cuda" and not _cuda_available():
        raise DeviceUnavailableError(
            "LLM_DEVICE=cuda was requested but no CUDA GPU is visible to PyTorch "
            f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}). "
            "Install a CUDA build of torch, check CUDA_VISIBLE_DEVICES, or set LLM_DEVICE=auto or cpu."
        )
    if value == "mps" and not _mps_available():
        raise DeviceUnavailableError(
            "LLM_DEVICE=mps was requested but Apple's MPS backend is not available on this machine "
            "(it needs an Apple-silicon Mac with macOS 12.3+). Set LLM_DEVICE=auto or cpu."
        )
    return value


def prepare_device(device: str) -> None:
    """Process-wide settings for the chosen device, applied before the model is built.

    TF32 on CUDA trades mantissa bits nobody misses in training for up to 8x faster fp32 matmuls.
    (MPS's CPU fallback for missing kernels must be switched on before torch is imported: the
    package does that, see ``llm_assets/__init__.py``.)
    """
    if device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high")


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 instructions that oneDNN uses (AVX512-BF16 or AMX-BF16)."""
    mkldnn = getattr(torch.ops, "mkldnn", None)
    probe = getattr(mkldnn, "_is_mkldnn_bf16_supported", None) if mkldnn is not None else None
    if probe is not None:
        try:
            return bool(probe())
        except (RuntimeError, AttributeError):
            pass
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            flags = cpuinfo.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cuda_has_bf16() -> bool:
    return _cuda_available() and torch.cuda.is_bf16_supported()


def choose_precision(device: str, requested: str = "auto") -> str:
    """Pick the number format for ``device``: ``bf16``, ``fp16`` or ``fp32``.

    ``auto`` means bf16 autocast on CUDA GPUs that support it, fp32 everywhere else. On CPUs, bf16
    autocast was measured *slower* than fp32 on an AVX512-BF16 Xeon without AMX (see
    benchmarks/TRAINING.md), so it is opt-in there (``precision: bf16``). fp16 is offered only on
    accelerators: CPUs have no fp16 autocast worth using.
    """
    value = (requested or "auto").strip().lower()
    if value not in PRECISIONS:
        raise ValueError(
            f"Config key `precision`: {requested!r} is not a precision; use one of {', '.join(PRECISIONS)}."
        )
    if value == "auto":
        return "bf16" if device == "cuda" and cuda_has_bf16() else "fp32"
    if value == "fp32":
        return value
    if device == "cpu":
        if value == "fp16":
            raise ValueError(
                "Config key `precision`: fp16 is not supported on the CPU; use bf16 (CPUs with "
                "AVX512-BF16/AMX) or fp32."
            )
        if not cpu_has_native_bf16():
            raise ValueError(
                "Config key `precision`: bf16 was requested but this CPU has no native bf16 "
                "(AVX512-BF16 or AMX); use precision: fp32 or auto."
            )
        return value
    if device == "cuda" and value == "bf16" and not cuda_has_bf16():
        raise ValueError(
            "Config key `precision`: this GPU does not support bf16 (it needs Ampere or newer); "
            "use precision: fp16 or auto."
        )
    if device == "mps" and value == "bf16" and not torch.backends.mps.is_macos_or_newer(14, 0):
        raise ValueError("Config key `precision`: bf16 on MPS needs macOS 14 or newer; use fp16 or fp32.")
    return value


@lru_cache(maxsize=None)
def fused_adamw_supported(device: str) -> bool:
    """Whether torch has a fused AdamW kernel for ``device`` (one kernel instead of one per tensor).

    Asked by trying: torch refuses ``fused=True`` at construction for a device it has no kernel for.
    """
    try:
        torch.optim.AdamW([torch.zeros(1, device=device, requires_grad=True)], fused=True)
    except (RuntimeError, ValueError):
        return False
    return True
