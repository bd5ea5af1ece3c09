"""llm-assets: a GPT-2 trained from scratch on Project Gutenberg, every stage a Dagster asset.

``llm_assets.defs`` is the :class:`dagster.Definitions`. It is loaded lazily so that the stage
modules (``books``, ``text``, ``training``) import without Dagster: a ``torchrun`` worker or a
notebook that only trains never pays for importing the orchestrator.
"""

from __future__ import annotations

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "defs":
        from llm_assets.definitions import defs

        return defs
    raise AttributeError(f"module 'llm_assets' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), "defs"])
