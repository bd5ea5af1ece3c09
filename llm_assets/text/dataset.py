"""Token blocks for training: encode the corpus, hold out validation stretches, save to disk.

Two streaming passes keep memory flat: the corpus is encoded batch by batch into a flat token file
(``<|endoftext|>`` after each book), then read once more to route each block into its split
(``splits``). Every block lies on one grid, so only the final remainder is lost; validation is one
contiguous stretch inside each book, never a lone block between training neighbours, so
``eval_loss`` is not flattered. Each intermediate form of the tokens is deleted as soon as the next
is written: the build's peak disk use stays under twice the finished dataset, and is reported.
"""

from __future__ import annotations

import hashlib
import shutil
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import numpy as np
from tokenizers import Tokenizer

from llm_assets.atomic import new_version
from llm_assets.books.corpus import CorpusFiles, read_corpus_index, resolve_corpus
from llm_assets.text.byte_counts import token_byte_lengths, write_byte_counts
from llm_assets.text.chunking import iter_chunk_batches
from llm_assets.text.splits import (
    COLUMN,
    ROWS_PER_BATCH,
    SPLITS,
    DiskPhases,
    folder_bytes,
    save_with_datasets,
    write_splits,
)
from llm_assets.text.tokenizer import END_OF_TEXT, TOKENIZER_FILE, tokenizer_threads

if TYPE_CHECKING:
    from datasets import DatasetDict

MIN_STRETCH_BLOCKS = 2  # a validation stretch is never one block between two training blocks
# datasets' own default is 500 MB; smaller shards let readers and copies make progress sooner.
MAX_SHARD_BYTES = 256 << 20


@dataclass(frozen=True)
class DatasetReport:
    path: Path
    context_length: int
    train_blocks: int
    validation_blocks: int
    validation_stretches: int
    total_tokens: int
    dropped_tokens: int  # the final remainder only
    token_dtype: str  # "uint16" or "uint32"
    books: int
    corpus_bytes: int
    seconds: float
    disk_bytes: int  # the finished dataset's files
    peak_disk_bytes: int  # the most the build's folder held at once
    disk_phases: dict[str, int]  # what it held at the end of each phase: tokens, splits, saved


@dataclass(frozen=True)
class DatasetCheck:
    """What a saved dataset holds, and every way it falls short of what training needs."""

    problems: tuple[str, ...]
    block_lengths: tuple[int, ...]
    rows: dict[str, int]
    largest_id: int


@dataclass(frozen=True)
class _Stream:
    """What pass 1 learned about the token stream."""

    tokens: int
    book_ends: tuple[int, ...]  # token offset after each book's <|endoftext|>
    digest: str


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 halves the dataset (and the page cache it needs) whenever ids fit."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def build_dataset(
    corpus_path: Path,
    tokenizer_dir: Path,
    out_dir: Path,
    *,
    context_length: int = 128,
    validation_fraction: float = 0.05,
    seed: int = 1234,
    progress: Callable[[int, int], None] | None = None,
    max_shard_bytes: int = MAX_SHARD_BYTES,
) -> DatasetReport:
    """Encode, chunk, split and publish; ``progress(bytes done, corpus bytes)`` per batch."""
    _check_config(context_length, validation_fraction)
    started = time.perf_counter()
    files = resolve_corpus(corpus_path)
    books = read_corpus_index(files)
    tokenizer = _load_fast_tokenizer(Path(tokenizer_dir))
    eot = tokenizer.token_to_id(END_OF_TEXT)
    dtype = token_dtype(tokenizer.get_vocab_size(with_added_tokens=True))
    report_progress = progress or (lambda done, total: None)

    with new_version(out_dir) as folder:
        disk = DiskPhases(folder)
        scratch = folder / "scratch"
        scratch.mkdir()
        token_file = scratch / "tokens.bin"
        with open(token_file, "wb") as sink, tokenizer_threads():
            stream = _encode_corpus(files, tokenizer, eot, dtype, sink,
                                    lambda done: report_progress(done, books[-1].end))
        disk.measure("tokens")
        blocks = stream.tokens // context_length
        if blocks < 2:
            raise ValueError(
                f"context_length={context_length} is too long for this corpus: its "
                f"{stream.tokens} tokens make {blocks} block(s), and train and validation need "
                "one each. Use a smaller context_length or add books."
            )
        is_validation = choose_validation(stream.book_ends, blocks, context_length, validation_fraction, seed)
        arrow_files, byte_counts = write_splits(token_file, scratch, is_validation, context_length, dtype,
                                                token_byte_lengths(tokenizer))
        disk.measure("splits")
        token_file.unlink()  # every block is in a split file now
        write_byte_counts(folder, byte_counts)
        save_with_datasets(
            arrow_files, folder, context_length, dtype, max_shard_bytes,
            fingerprint=f"{stream.digest}/{context_length}/{validation_fraction!r}/{seed}",
        )
        disk.measure("saved")
        shutil.rmtree(scratch)  # every block is in the saved dataset now
        disk_bytes = folder_bytes(folder)
    report_progress(books[-1].end, books[-1].end)
    validation_blocks = int(is_validation.sum())
    return DatasetReport(
        path=Path(out_dir),
        context_length=context_length,
        train_blocks=blocks - validation_blocks,
        validation_blocks=validation_blocks,
        validation_stretches=_count_stretches(is_validation),
        total_tokens=stream.tokens,
        dropped_tokens=stream.tokens - blocks * context_length,
        token_dtype=dtype.name,
        books=len(books),
        corpus_bytes=sum(b.end - b.start for b in books),
        seconds=time.perf_counter() - started,
        disk_bytes=disk_bytes,
        peak_disk_bytes=disk.peak,
        disk_phases=dict(disk.phases),
    )


def _check_config(context_length: int, validation_fraction: float) -> None:
    if isinstance(context_length, bool) or not isinstance(context_length, int) or context_length < 1:
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
    files: CorpusFiles,
    tokenizer: Tokenizer,
    eot: int,
    dtype: np.dtype,
    sink: BinaryIO,
    progress: Callable[[int], None],
) -> _Stream:
    """Pass 1: append every book's ids and an end-of-text to ``sink``; count, hash, note book ends.

    One batch is always encoding in Rust (which releases the GIL) while Python reads and cuts
    the next one and writes the previous one, so neither side waits for the other.
    """
    digest = hashlib.blake2b(digest_size=16)
    tokens = 0
    book_ends: list[int] = []

    def drain(pending: tuple[Future, list[bool], int]) -> None:
        nonlocal tokens
        future, ends, done = pending
        flat: list[int] = []
        for encoding, ends_book in zip(future.result(), ends):
            flat.extend(encoding.ids)
            if ends_book:
                flat.append(eot)
                book_ends.append(tokens + len(flat))
        ids = np.array(flat, dtype=dtype)
        sink.write(ids.data)
        digest.update(ids.data)
        tokens += len(ids)
        progress(done)

    pending = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode") as pool:
        for chunks, ends, done in iter_chunk_batches(files):
            future = pool.submit(tokenizer.encode_batch_fast, chunks, add_special_tokens=False)
            if pending is not None:
                drain(pending)
            pending = (future, ends, done)
        if pending is not None:
            drain(pending)
    return _Stream(tokens=tokens, book_ends=tuple(book_ends), digest=digest.hexdigest())


def choose_validation(
    book_ends: tuple[int, ...], blocks: int, context_length: int, fraction: float, seed: int
) -> np.ndarray:
    """Mark one contiguous stretch of validation blocks inside each book, at a seeded position.

    A book with ``n`` whole blocks gives ``round(n * fraction)`` of them (at least
    ``MIN_STRETCH_BLOCKS`` once it owes one at all); blocks that straddle two books always
    train. At least one block ends up in each split, however extreme the fraction.
    """
    rng = np.random.default_rng(seed)
    mask = np.zeros(blocks, dtype=bool)
    start = 0
    for end in book_ends:
        first, last = -(-start // context_length), min(end // context_length, blocks)
        inside = last - first
        owed = inside * fraction
        count = min(inside, max(MIN_STRETCH_BLOCKS, round(owed))) if owed >= 1 else 0
        if count:
            begin = first + int(rng.integers(0, inside - count + 1))
            mask[begin : begin + count] = True
        start = end
    if not mask.any():
        mask[-1] = True
    if mask.all():
        mask[0] = False
    return mask


def _count_stretches(mask: np.ndarray) -> int:
    starts = mask[1:] & ~mask[:-1]
    return int(starts.sum() + mask[0])


def load_splits(dataset_dir: Path) -> DatasetDict:
    """The saved dataset (memory-mapped); each problem that would stop training is named."""
    from datasets import DatasetDict, load_from_disk

    dataset_dir = Path(dataset_dir)
    if not dataset_dir.exists():
        raise FileNotFoundError(f"Tokenized dataset not found at {dataset_dir}: materialize `tokenized_dataset` first.")
    splits = load_from_disk(str(dataset_dir.resolve()))
    if not isinstance(splits, DatasetDict):
        raise ValueError(f"{dataset_dir} holds a single Dataset; re-materialize `tokenized_dataset`.")
    for name in SPLITS:
        if name not in splits or COLUMN not in splits[name].column_names or len(splits[name]) == 0:
            raise ValueError(
                f"Split {name!r} of {dataset_dir} is missing, empty or has no `{COLUMN}` column: "
                "add books or lower `context_length`, and re-materialize `tokenized_dataset`."
            )
    return splits


def check_dataset(dataset_dir: Path, vocab_size: int) -> DatasetCheck:
    """Both splits present, every block one length, every id inside the vocabulary; vectorized."""
    import pyarrow.compute as pc

    splits = load_splits(dataset_dir)
    problems: list[str] = []
    lengths: set[int] = set()
    largest = -1
    for name in SPLITS:
        column = splits[name].data.column(COLUMN)
        row_lengths = pc.list_value_length(column)
        shortest, longest = pc.min(row_lengths).as_py(), pc.max(row_lengths).as_py()
        if shortest != longest:
            problems.append(f"{name}: rows of {shortest} to {longest} tokens")
        lengths.update((shortest, longest))
        top = pc.max(pc.list_flatten(column)).as_py()
        largest = max(largest, top)
        if top >= vocab_size:
            problems.append(f"{name}: token id {top} >= the tokenizer's {vocab_size} tokens")
    if len(lengths) > 1 and not problems:
        problems.append(f"splits have different block lengths {sorted(lengths)}")
    return DatasetCheck(
        problems=tuple(problems),
        block_lengths=tuple(sorted(lengths)),
        rows={name: len(splits[name]) for name in SPLITS},
        largest_id=largest,
    )


def unigram_entropy(dataset_dir: Path, split: str = "train") -> float:
    """Entropy (nats) of a split's token frequencies: the loss of a model that learned only them.

    A trained model's eval loss must beat it, or it learned nothing about context. Counts are
    accumulated batch by batch, so memory stays flat.
    """
    splits = load_splits(dataset_dir)
    if split not in splits:
        raise FileNotFoundError(f"No split {split!r} in {dataset_dir}: re-materialize `tokenized_dataset`.")
    counts = np.zeros(0, dtype=np.int64)
    for batch in splits[split].with_format("arrow").iter(batch_size=ROWS_PER_BATCH):
        ids = batch.column(COLUMN).combine_chunks().flatten().to_numpy()
        found = np.bincount(ids)
        if len(found) > len(counts):
            counts = np.pad(counts, (0, len(found) - len(counts)))
        counts[: len(found)] += found
    total = counts.sum()
    if total == 0:
        raise ValueError(f"Split {split!r} of {dataset_dir} holds no tokens.")
    p = counts[counts > 0] / total
    return float(-(p * np.log(p)).sum())
