"""Pass 2 of the dataset build and its save: token blocks routed to their split, saved by ``datasets``.

The build holds the tokens in three forms, one after the other: the flat token file of pass 1, the
per-split Arrow stream files of pass 2, and the saved ``DatasetDict``. Each is deleted as soon as
the next one is written, so no more than two exist at any moment and the build's peak disk use is
at most twice the finished dataset: the flat file is the blocks plus a remainder of under one
block, and each Arrow form is the blocks plus its headers, the saved one's the larger (1000-row
batches, the features in its schema). ``DiskPhases`` measures it at each phase's end: within a
phase files only grow, so the peak is one of those moments.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from llm_assets.text.byte_counts import TargetBytes, add, count_targets

SPLITS = ("train", "validation")
COLUMN = "input_ids"
# Blocks per Arrow record batch: datasets writes 1000-row batches; a few MB each reads fast.
ROWS_PER_BATCH = 8192


def folder_bytes(folder: Path) -> int:
    """The sizes of the files under ``folder``, summed: what the folder holds on disk."""
    return sum(os.path.getsize(os.path.join(top, name)) for top, _, files in os.walk(folder) for name in files)


@dataclass
class DiskPhases:
    """Bytes the staged dataset folder holds at the end of each phase of the build."""

    folder: Path
    phases: dict[str, int] = field(default_factory=dict)

    def measure(self, phase: str) -> None:
        self.phases[phase] = folder_bytes(self.folder)

    @property
    def peak(self) -> int:
        return max(self.phases.values(), default=0)


def features(context_length: int, dtype: np.dtype):  # -> datasets.Features, imported late
    from datasets import Features, List, Value

    return Features({COLUMN: List(Value(dtype.name), length=context_length)})


def write_splits(
    token_file: Path, folder: Path, is_validation: np.ndarray, context_length: int, dtype: np.dtype,
    byte_lengths: np.ndarray,
) -> tuple[dict[str, Path], dict[str, TargetBytes]]:
    """Pass 2: route each block of the token file to its split's Arrow stream file, counting the
    bytes of text each split's targets spell (``byte_counts``: what bits per byte divide by)."""
    column = pa.list_(pa.from_numpy_dtype(dtype), context_length)
    schema = pa.schema([pa.field(COLUMN, column)])
    paths = {split: folder / f"{split}.arrow" for split in SPLITS}
    counts = {split: TargetBytes(0, 0) for split in SPLITS}
    writers = {split: pa.ipc.new_stream(str(path), schema) for split, path in paths.items()}
    try:
        for first, blocks in _read_blocks(token_file, len(is_validation), context_length, dtype):
            mask = is_validation[first : first + len(blocks)]
            for split, rows in (("train", blocks[~mask]), ("validation", blocks[mask])):
                if len(rows):
                    counts[split] = add(counts[split], count_targets(rows, byte_lengths))
                    values = pa.FixedSizeListArray.from_arrays(pa.array(rows.reshape(-1)), context_length)
                    writers[split].write_batch(pa.record_batch([values], schema=schema))
    finally:
        for writer in writers.values():
            writer.close()
    return paths, counts


def save_with_datasets(
    arrow_files: dict[str, Path],
    folder: Path,
    context_length: int,
    dtype: np.dtype,
    max_shard_bytes: int,
    fingerprint: str,
) -> None:
    """Save the split files as a ``DatasetDict`` through ``datasets``' public API.

    The fingerprint comes from the token stream and the config, not from file paths or times,
    so rebuilding the same dataset writes the same bytes.
    """
    from datasets import (
        Dataset,
        DatasetDict,
        DatasetInfo,
        NamedSplit,
        disable_progress_bars,
        enable_progress_bars,
        is_progress_bar_enabled,
    )
    from datasets.table import MemoryMappedTable

    info = DatasetInfo(features=features(context_length, dtype))
    splits: dict[str, Dataset] = {}
    for split, path in arrow_files.items():
        table = MemoryMappedTable.from_file(str(path))
        split_fingerprint = hashlib.blake2b(f"{fingerprint}/{split}".encode(), digest_size=8).hexdigest()
        splits[split] = Dataset(table.cast(info.features.arrow_schema), info=info.copy(),
                                split=NamedSplit(split), fingerprint=split_fingerprint)
    shards = {
        split: max(1, min(len(ds), math.ceil(ds.data.nbytes / max_shard_bytes))) for split, ds in splits.items()
    }
    bars = is_progress_bar_enabled()
    disable_progress_bars()  # a bar per split would interleave with the stage's own progress lines
    try:
        DatasetDict(splits).save_to_disk(str(folder), num_shards=shards)
    finally:
        if bars:
            enable_progress_bars()


def _read_blocks(
    token_file: Path, blocks: int, context_length: int, dtype: np.dtype
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first block number, blocks)`` read sequentially, never mapping the whole file."""
    with open(token_file, "rb") as source:
        for first in range(0, blocks, ROWS_PER_BATCH):
            count = min(ROWS_PER_BATCH, blocks - first)
            data = np.fromfile(source, dtype=dtype, count=count * context_length)
            yield first, data.reshape(count, context_length)
