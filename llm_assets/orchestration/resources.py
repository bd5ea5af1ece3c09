"""Resources: where files live, how to reach Gutenberg, and which device trains.

Each field left unset falls back to its environment variable (README: Configuration), read when a run starts rather
than when the code is imported, so a `.env` file or an exported variable always takes effect.
Resources are frozen: they compute what they need and never assign to their own fields.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from llm_assets import settings
from llm_assets.books.gutenberg import GutenbergClient
from llm_assets.settings import Paths


class PathsResource(dg.ConfigurableResource):
    """The data folder, the checkpoint folder and the book list (LLM_ASSETS_* variables)."""

    data_dir: str | None = None
    checkpoint_dir: str | None = None
    book_list: str | None = None

    def paths(self) -> Paths:
        from_env = settings.paths_from_env()
        data_dir = from_env.data_dir if self.data_dir is None else Path(self.data_dir)
        book_list = self.book_list or (
            from_env.book_list if self.data_dir is None else data_dir / "books.yaml"
        )
        return Paths(
            data_dir=data_dir,
            checkpoint_dir=Path(self.checkpoint_dir or from_env.checkpoint_dir),
            book_list=Path(book_list),
        )


class GutenbergResource(dg.ConfigurableResource):
    """Project Gutenberg or a mirror with the same layout (GUTENBERG_MIRROR)."""

    mirror: str | None = None
    timeout_seconds: float = 30.0
    max_attempts: int = 5
    backoff_seconds: float = 1.0

    def client(self) -> GutenbergClient:
        return GutenbergClient(
            self.mirror or settings.gutenberg_mirror(),
            timeout=self.timeout_seconds,
            max_attempts=self.max_attempts,
            backoff_seconds=self.backoff_seconds,
        )


class DeviceResource(dg.ConfigurableResource):
    """Where training runs (LLM_DEVICE): auto picks cuda, then mps, then cpu.

    An explicitly requested device that is absent fails here, before any work is done.
    """

    device: str | None = None

    def resolve(self) -> str:
        from llm_assets.training.devices import (  # PyTorch: only where it trains
            prepare_device,
            resolve_device,
        )

        device = resolve_device(self.device or settings.requested_device())
        prepare_device(device)
        return device
