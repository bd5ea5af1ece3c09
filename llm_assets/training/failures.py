"""What to do when training fails on the device: out of memory, or an MPS runtime error.

Out of memory is reported with the settings that fix it (the same batch in more micro-batches, so
the run still resumes from its checkpoints). An MPS error, on a backend that still lacks kernels,
is survived: training continues on the CPU from the last checkpoint, once.
"""

from __future__ import annotations

import torch

from llm_assets.training.checkpoints import checkpoint_step, find_resume_checkpoint
from llm_assets.training.plan import TrainPlan

MPS_ERROR_MARKERS = ("placeholder storage has not been allocated on mps", "mps backend", "mps device", "mpsgraph")


class TrainingOutOfMemoryError(RuntimeError):
    """The device ran out of memory; the message says what to change. Checkpoints are kept."""


def is_mps_error(exc: BaseException) -> bool:
    return isinstance(exc, RuntimeError) and any(marker in str(exc).lower() for marker in MPS_ERROR_MARKERS)


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()


def out_of_memory_error(exc: BaseException, plan: TrainPlan, device: str, run_dir) -> TrainingOutOfMemoryError:  # noqa: ANN001
    last = find_resume_checkpoint(run_dir)
    kept = (
        f"checkpoints are kept in {run_dir} (latest: step {checkpoint_step(last)})"
        if last
        else f"no checkpoint was written yet ({run_dir})"
    )
    more = plan.gradient_accumulation_steps * 2
    advice = (
        f"Set `gradient_accumulation_steps`: {more} (micro-batches of {plan.batch_size // more}; the same "
        "batch_size, so the run resumes from its checkpoint)"
        if plan.batch_size % more == 0
        else f"Set `batch_size`: {max(1, plan.batch_size // 2)} (a new run)"
    )
    return TrainingOutOfMemoryError(
        f"Out of memory on {device} with micro-batches of {plan.micro_batch_size} sequences of "
        f"{plan.context_length} tokens ({plan.preset.name!r} preset). {advice}, or choose a smaller "
        f"`preset` or `context_length`. {kept}. Cause: {exc}"
    )


def cpu_precision(requested: str) -> str:
    """The precision to continue in on the CPU: what was asked, unless the CPU cannot do it."""
    from llm_assets.training.devices import choose_precision

    try:
        return choose_precision("cpu", requested)
    except ValueError:
        return "fp32"  # e.g. fp16 asked for MPS: the CPU has no fp16 autocast
