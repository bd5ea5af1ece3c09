"""Batches for the Trainer: token blocks straight from the memory-mapped Arrow files.

Each batch is one vectorised gather from zero-copy numpy views of the dataset's Arrow chunks
(``__getitems__``), not a Python call per row, so loading costs microseconds a step and memory
stays at what the page cache holds, however large the dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from llm_assets.text.dataset import COLUMN, load_splits


class TokenBlocks(torch.utils.data.Dataset):
    """One split of the tokenized dataset as fixed-length rows of token ids."""

    def __init__(self, dataset_dir: Path, split: str) -> None:
        self.dataset_dir, self.split = Path(dataset_dir).resolve(), split
        self._open()

    def _open(self) -> None:
        column = load_splits(self.dataset_dir)[self.split].data.column(COLUMN)
        width = column.type.list_size
        # Zero-copy views of each Arrow chunk; a row index maps to (chunk, row) by its offset.
        self._chunks = [chunk.flatten().to_numpy(zero_copy_only=True).reshape(-1, width) for chunk in column.chunks
                        if len(chunk)]
        self._starts = np.cumsum([0] + [len(c) for c in self._chunks])

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index: int) -> np.ndarray:
        chunk = int(np.searchsorted(self._starts, index, side="right")) - 1
        return self._chunks[chunk][index - self._starts[chunk]]

    def __getitems__(self, indices: list[int]) -> np.ndarray:
        """A whole batch at once: the DataLoader calls this instead of one ``__getitem__`` per row."""
        index = np.asarray(indices)
        if len(self._chunks) == 1:
            return self._chunks[0][index]
        chunk = np.searchsorted(self._starts, index, side="right") - 1
        return np.stack([self._chunks[c][i - self._starts[c]] for c, i in zip(chunk, index)])

    def __getstate__(self) -> dict[str, Any]:
        # Spawned DataLoader workers (macOS) re-open the memory map instead of copying the data.
        return {"dataset_dir": self.dataset_dir, "split": self.split}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.dataset_dir, self.split = state["dataset_dir"], state["split"]
        self._open()


def collate_blocks(rows: np.ndarray | list[np.ndarray]) -> dict[str, torch.Tensor]:
    """Widen to int64 once per batch; labels are the inputs (the model shifts them)."""
    blocks = rows if isinstance(rows, np.ndarray) else np.stack(rows)
    ids = torch.from_numpy(blocks.astype(np.int64))
    return {"input_ids": ids, "labels": ids}
