"""llm-assets: a GPT-2 trained from scratch on Project Gutenberg, every stage a Dagster asset.

``llm_assets.defs`` is the :class:`dagster.Definitions`. It is loaded lazily so that the stage
modules (``books``, ``text``, ``training``) import without Dagster: a ``torchrun`` worker or a
notebook that only trains never pays for importing the orchestrator.
"""

from __future__ import annotations

import os

# PyTorch reads this once, when torch is first imported. Every entry point (Dagster's code
# location, the CLI, the torchrun worker) imports this package first, so MPS operations that lack
# a kernel run on the CPU instead of failing. A value the user set is kept.
os.environ.setdefault("PYTORCH_ENABLE_MPS_FALLBACK", "1")


def __getattr__(name: str):
    if name == "defs":
        from llm_assets.definitions import defs

        return defs
    raise AttributeError(f"module 'llm_assets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "defs"])
