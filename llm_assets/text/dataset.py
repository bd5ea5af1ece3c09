"""Token blocks for training: encode the corpus, chunk the whole stream, split, save to disk.

Two streaming passes keep memory flat however large the corpus grows:

1. encode: batches of text chunks go through ``encode_batch_fast`` (Rust, every core) while
   Python reads the next batch; ids go to a flat uint16/uint32 file, ``<|endoftext|>`` after each
   book. The whole stream is chunked, so only its final remainder (< ``context_length``) is lost,
   where ``run_clm``'s per-batch ``group_texts`` drops a remainder every thousand lines.
2. write: a seeded choice of validation blocks (exact fraction, known once the stream is
   counted), then one sequential read of the token file, routing each block into its split's
   Arrow shards.

The output is exactly what ``DatasetDict.save_to_disk`` writes (``dataset_dict.json``; per split
``data-XXXXX-of-YYYYY.arrow`` IPC streams, ``state.json``, ``dataset_info.json``), written with
``pyarrow`` directly: ``datasets`` costs 1.3 s and 150 MB to import and would copy the data
once more. Tests load it back with ``datasets.load_from_disk``. Nothing in the files depends on
time or process, so the same corpus and config give byte-identical folders.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
from tokenizers import Tokenizer

from llm_assets.text.tokenizer import (
    END_OF_TEXT,
    TOKENIZER_FILE,
    iter_chunk_batches,
    read_corpus_index,
    staging_dir,
    tokenizer_threads,
)

SPLITS = ("train", "validation")
COLUMN = "input_ids"
TOKEN_FILE = "tokens.bin"
# datasets' own default is 500 MB; smaller shards let readers and copies make progress sooner.
MAX_SHARD_BYTES = 256 << 20
# Blocks per Arrow record batch: datasets writes 1000-row batches; a few MB each reads fast.
ROWS_PER_BATCH = 8192


@dataclass(frozen=True)
class DatasetReport:
    path: Path
    context_length: int
    train_blocks: int
    validation_blocks: int
    total_tokens: int
    dropped_tokens: int  # the final remainder only
    token_dtype: str  # "uint16" or "uint32"
    books: int
    corpus_bytes: int
    seconds: float
    shards: int


@dataclass(frozen=True)
class _Stream:
    """What pass 1 learned about the token stream."""

    tokens: int
    digest: str


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 halves the dataset (and the page cache it needs) whenever ids fit."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def build_dataset(
    corpus_path: Path,
    index_path: Path,
    tokenizer_dir: Path,
    out_dir: Path,
    *,
    context_length: int = 128,
    validation_fraction: float = 0.05,
    seed: int = 1234,
    progress: Callable[[int, int], None] | None = None,
    max_shard_bytes: int = MAX_SHARD_BYTES,
) -> DatasetReport:
    """Encode, chunk, split and save; ``progress(bytes done, corpus file bytes)`` per batch.

    ``max_shard_bytes`` caps each Arrow file (tests use it to exercise sharding).
    """
    _check_config(context_length, validation_fraction)
    started = time.perf_counter()
    books = read_corpus_index(corpus_path, index_path)
    tokenizer = _load_fast_tokenizer(Path(tokenizer_dir))
    eot = tokenizer.token_to_id(END_OF_TEXT)
    dtype = token_dtype(tokenizer.get_vocab_size(with_added_tokens=True))
    report_progress = progress or (lambda done, total: None)

    out_dir = Path(out_dir)
    with staging_dir(out_dir) as tmp:
        token_file = tmp / TOKEN_FILE
        with open(token_file, "wb") as sink, tokenizer_threads():
            stream = _encode_corpus(
                corpus_path, index_path, tokenizer, eot, dtype, sink,
                lambda done: report_progress(done, books[-1].end),
            )
        blocks = stream.tokens // context_length
        if blocks < 2:
            raise ValueError(
                f"context_length={context_length} is too long for this corpus: its "
                f"{stream.tokens} tokens make {blocks} block(s), and train and validation need "
                "one each. Use a smaller context_length or add books."
            )
        is_validation = _choose_validation(blocks, validation_fraction, seed)
        shards = _write_splits(
            token_file, tmp, is_validation, context_length, dtype, max_shard_bytes,
            fingerprint=f"{stream.digest}/{context_length}/{validation_fraction!r}/{seed}",
        )
        token_file.unlink()
    report_progress(books[-1].end, books[-1].end)
    validation_blocks = int(is_validation.sum())
    return DatasetReport(
        path=out_dir,
        context_length=context_length,
        train_blocks=blocks - validation_blocks,
        validation_blocks=validation_blocks,
        total_tokens=stream.tokens,
        dropped_tokens=stream.tokens - blocks * context_length,
        token_dtype=dtype.name,
        books=len(books),
        corpus_bytes=sum(b.end - b.start for b in books),
        seconds=time.perf_counter() - started,
        shards=shards,
    )


def _check_config(context_length: int, validation_fraction: float) -> None:
    if isinstance(context_length, bool) or not isinstance(context_length, int):
        raise ValueError(f"context_length must be a positive integer, got {context_length!r}.")
    if context_length < 1:
        raise ValueError(f"context_length must be a positive integer, got {context_length!r}.")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(
            f"validation_fraction must lie strictly between 0 and 1, got {validation_fraction!r}."
        )


def _load_fast_tokenizer(tokenizer_dir: Path) -> Tokenizer:
    """The Rust tokenizer itself: ``transformers`` would only add import time here."""
    path = tokenizer_dir / TOKENIZER_FILE
    if not path.is_file():
        raise FileNotFoundError(f"No {path}: materialize the `tokenizer` asset first.")
    tokenizer = Tokenizer.from_file(str(path))
    if tokenizer.token_to_id(END_OF_TEXT) is None:
        raise ValueError(
            f"The tokenizer in {path} has no {END_OF_TEXT} token to separate books: "
            "re-materialize the `tokenizer` asset."
        )
    return tokenizer


def _encode_corpus(
    corpus_path: Path,
    index_path: Path,
    tokenizer: Tokenizer,
    eot: int,
    dtype: np.dtype,
    sink: BinaryIO,
    progress: Callable[[int], None],
) -> _Stream:
    """Pass 1: append every book's ids and an end-of-text to ``sink``; count and hash them.

    One batch is always encoding in Rust (which releases the GIL) while Python reads and cuts
    the next one and writes the previous one, so neither side waits for the other.
    """
    digest = hashlib.blake2b(digest_size=16)
    tokens = 0

    def drain(pending: tuple[Future, list[bool], int]) -> None:
        nonlocal tokens
        future, ends, done = pending
        flat: list[int] = []
        for encoding, ends_book in zip(future.result(), ends):
            flat.extend(encoding.ids)
            if ends_book:
                flat.append(eot)
        ids = np.array(flat, dtype=dtype)
        sink.write(ids.data)
        digest.update(ids.data)
        tokens += len(ids)
        progress(done)

    pending = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode") as pool:
        for chunks, ends, done in iter_chunk_batches(corpus_path, index_path):
            future = pool.submit(tokenizer.encode_batch_fast, chunks, add_special_tokens=False)
            if pending is not None:
                drain(pending)
            pending = (future, ends, done)
        if pending is not None:
            drain(pending)
    return _Stream(tokens=tokens, digest=digest.hexdigest())


def _choose_validation(blocks: int, fraction: float, seed: int) -> np.ndarray:
    """Mark ``round(blocks * fraction)`` random blocks for validation, at least one per split."""
    count = min(blocks - 1, max(1, round(blocks * fraction)))
    chosen = np.random.default_rng(seed).choice(blocks, size=count, replace=False)
    mask = np.zeros(blocks, dtype=bool)
    mask[chosen] = True
    return mask


def _features(context_length: int, dtype: np.dtype) -> dict:
    """``Features({"input_ids": Sequence(Value(dtype), length=context_length)})`` as JSON.

    "Sequence" reads back as a fixed-length ``List`` in datasets 4-5 and as itself in 3.
    """
    return {
        COLUMN: {
            "feature": {"dtype": dtype.name, "_type": "Value"},
            "length": context_length,
            "_type": "Sequence",
        }
    }


def _schema(context_length: int, dtype: np.dtype) -> pa.Schema:
    metadata = {"huggingface": json.dumps({"info": {"features": _features(context_length, dtype)}})}
    column = pa.list_(pa.from_numpy_dtype(dtype), context_length)
    return pa.schema([pa.field(COLUMN, column)], metadata=metadata)


class _ShardWriter:
    """Writes one split's rows into ``shards`` contiguous, evenly sized Arrow stream files."""

    def __init__(self, split_dir: Path, rows: int, shards: int, schema: pa.Schema) -> None:
        self.split_dir, self.schema = split_dir, schema
        self.rows_per_shard = math.ceil(rows / shards)
        shards = math.ceil(rows / self.rows_per_shard)  # 9 rows in 4 shards: 3 of 3, not 4
        self.names = [f"data-{i:05d}-of-{shards:05d}.arrow" for i in range(shards)]
        self.shard, self.rows_in_shard = -1, self.rows_per_shard
        self.writer: pa.ipc.RecordBatchStreamWriter | None = None
        split_dir.mkdir()

    def write(self, blocks: np.ndarray) -> None:
        while len(blocks):
            if self.rows_in_shard == self.rows_per_shard:
                self._next_shard()
            take = min(len(blocks), self.rows_per_shard - self.rows_in_shard)
            values = pa.array(blocks[:take].reshape(-1))
            column = pa.FixedSizeListArray.from_arrays(values, blocks.shape[1])
            self.writer.write_batch(pa.record_batch([column], schema=self.schema))
            self.rows_in_shard += take
            blocks = blocks[take:]

    def _next_shard(self) -> None:
        self.close()
        self.shard += 1
        self.writer = pa.ipc.new_stream(str(self.split_dir / self.names[self.shard]), self.schema)
        self.rows_in_shard = 0

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def _write_splits(
    token_file: Path,
    out_dir: Path,
    is_validation: np.ndarray,
    context_length: int,
    dtype: np.dtype,
    max_shard_bytes: int,
    fingerprint: str,
) -> int:
    """Pass 2: route each block of the token file to its split's shards; write the JSON files."""
    schema = _schema(context_length, dtype)
    block_bytes = context_length * dtype.itemsize
    rows = {"train": int((~is_validation).sum()), "validation": int(is_validation.sum())}
    writers = {
        split: _ShardWriter(
            out_dir / split, n, max(1, min(n, math.ceil(n * block_bytes / max_shard_bytes))), schema
        )
        for split, n in rows.items()
    }
    try:
        for first, blocks in _read_blocks(token_file, len(is_validation), context_length, dtype):
            mask = is_validation[first : first + len(blocks)]
            writers["train"].write(blocks[~mask])
            writers["validation"].write(blocks[mask])
    finally:
        for writer in writers.values():
            writer.close()

    for split, writer in writers.items():
        _write_json(out_dir / split / "state.json", {
            "_data_files": [{"filename": name} for name in writer.names],
            # From the token stream and the config, not random: reruns stay byte-identical.
            "_fingerprint": hashlib.blake2b(
                f"{fingerprint}/{split}".encode(), digest_size=8
            ).hexdigest(),
            "_format_columns": None,
            "_format_kwargs": {},
            "_format_type": None,
            "_output_all_columns": False,
            "_split": split,
        })
        _write_json(out_dir / split / "dataset_info.json", {
            "citation": "",
            "description": "",
            "features": _features(context_length, dtype),
            "homepage": "",
            "license": "",
        })
    _write_json(out_dir / "dataset_dict.json", {"splits": list(SPLITS)})
    return sum(len(writer.names) for writer in writers.values())


def _read_blocks(
    token_file: Path, blocks: int, context_length: int, dtype: np.dtype
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(first block number, blocks)`` read sequentially, never mapping the whole file."""
    with open(token_file, "rb") as source:
        for first in range(0, blocks, ROWS_PER_BATCH):
            count = min(ROWS_PER_BATCH, blocks - first)
            data = np.fromfile(source, dtype=dtype, count=count * context_length)
            yield first, data.reshape(count, context_length)


def _write_json(path: Path, content: dict) -> None:
    path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def unigram_entropy(dataset_dir: Path, split: str = "train") -> float:
    """Entropy (nats) of a split's token frequencies: the loss of a model that learned only them.

    A trained model's eval loss must beat it, or it learned nothing about context. Counts are
    accumulated batch by batch from the Arrow files, so memory stays flat.
    """
    split_dir = Path(dataset_dir) / split
    state_path = split_dir / "state.json"
    if not state_path.is_file():
        raise FileNotFoundError(
            f"No split {split!r} in {dataset_dir} ({state_path} missing): "
            "materialize the `tokenized_dataset` asset first."
        )
    state = json.loads(state_path.read_text(encoding="utf-8"))
    counts = np.zeros(0, dtype=np.int64)
    for entry in state["_data_files"]:
        with pa.OSFile(str(split_dir / entry["filename"])) as source:
            for batch in pa.ipc.open_stream(source):
                ids = batch.column(COLUMN).flatten().to_numpy()
                found = np.bincount(ids)
                if len(found) > len(counts):
                    counts = np.pad(counts, (0, len(found) - len(counts)))
                counts[: len(found)] += found
    total = counts.sum()
    if total == 0:
        raise ValueError(f"Split {split!r} of {dataset_dir} holds no tokens.")
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum())
