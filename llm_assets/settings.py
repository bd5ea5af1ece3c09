"""The paths and environment variables users set (see the README's Configuration), in one place.

Every stage reads its inputs from and writes its outputs to the paths here, so any stage can be
re-run alone (from the UI, the CLI, a test or torchrun) and find the previous stage's files.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DATA_DIR_VAR = "LLM_ASSETS_DATA_DIR"
CHECKPOINT_DIR_VAR = "LLM_ASSETS_CHECKPOINT_DIR"
BOOK_LIST_VAR = "LLM_ASSETS_BOOK_LIST"
MIRROR_VAR = "GUTENBERG_MIRROR"
DEVICE_VAR = "LLM_DEVICE"

DEFAULT_MIRROR = "https://www.gutenberg.org"
DEVICE_CHOICES = ("auto", "cuda", "mps", "cpu")


@dataclass(frozen=True)
class Paths:
    """Where each stage's files live. Relative paths resolve against the working directory."""

    data_dir: Path
    checkpoint_dir: Path
    book_list: Path

    @property
    def raw_dir(self) -> Path:
        return self.data_dir / "raw"

    @property
    def corpus(self) -> Path:
        return self.data_dir / "all_books.txt"

    @property
    def tokenizer_dir(self) -> Path:
        return self.data_dir / "tokenizer"

    @property
    def dataset_dir(self) -> Path:
        return self.data_dir / "processed_dataset"

    @property
    def stamps_dir(self) -> Path:
        """What each data stage last built from what (see ``llm_assets.stamps``)."""
        return self.data_dir / ".stamps"

    def lock(self, stage: str) -> Path:
        """The lock file a stage holds while it writes its output (see ``llm_assets.locks``)."""
        return self.data_dir / ".locks" / f"{stage}.lock"

    @property
    def runs_dir(self) -> Path:
        """Trainer checkpoints, one sub-folder per (dataset, configuration) fingerprint."""
        return self.checkpoint_dir / "runs"

    @property
    def latest_model(self) -> Path:
        return self.checkpoint_dir / "latest"


def paths_from_env(env: Mapping[str, str] | None = None) -> Paths:
    """Read the path variables; called at run time, never at import time."""
    env = os.environ if env is None else env
    data_dir = Path(env.get(DATA_DIR_VAR) or "data")
    checkpoint_dir = Path(env.get(CHECKPOINT_DIR_VAR) or "checkpoints")
    book_list = Path(env.get(BOOK_LIST_VAR) or data_dir / "books.yaml")
    return Paths(data_dir=data_dir, checkpoint_dir=checkpoint_dir, book_list=book_list)


def gutenberg_mirror(env: Mapping[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    return env.get(MIRROR_VAR) or DEFAULT_MIRROR


def requested_device(env: Mapping[str, str] | None = None) -> str:
    """The device named by ``LLM_DEVICE`` (checked where it is resolved: ``devices.resolve_device``)."""
    env = os.environ if env is None else env
    return env.get(DEVICE_VAR) or "auto"
