"""Byte-level BPE tokenizer (GPT-2 style) trained on the corpus, saved for ``AutoTokenizer``.

The corpus is streamed book by book through the byte offsets of ``all_books.index.json`` and cut
into text chunks of a few kilobytes at places where GPT-2's pre-tokenizer could never join the two
sides, so training and encoding see exactly the words a whole-book pass would see, while memory
stays flat and the Rust library gets many small, evenly sized pieces to spread over every core
(BPE is also very slow on multi-megabyte strings).

Only ``tokenizers`` is imported here: ``transformers`` costs a second and ~60 MB per process, so
the two small JSON files ``AutoTokenizer.from_pretrained`` needs are written directly, and the
tests load the result through the real ``AutoTokenizer``.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

END_OF_TEXT = "<|endoftext|>"
SPECIAL_TOKENS = (END_OF_TEXT,)
BYTE_SYMBOLS = 256
MIN_VOCAB_SIZE = BYTE_SYMBOLS + len(SPECIAL_TOKENS)
MAX_VOCAB_SIZE = 1_000_000
TOKENIZER_FILE = "tokenizer.json"

# Pieces of ~2k characters: measured fastest for encode_batch (lines carry per-item overhead,
# 64k pieces make the pre-tokenizer slow), and ~512 of them per batch keep both cores busy.
CHUNK_CHARS = 2048
BATCH_CHARS = 1 << 20

_PARALLELISM_VAR = "TOKENIZERS_PARALLELISM"
_parallelism_left_by_us: str | None = None


@dataclass(frozen=True)
class TokenizerReport:
    path: Path
    vocab_size: int
    requested_vocab_size: int
    corpus_bytes: int
    seconds: float


@dataclass(frozen=True)
class CorpusBook:
    """Where one book lies in the corpus file (byte offsets, end exclusive)."""

    id: int
    start: int
    end: int


def read_corpus_index(corpus_path: Path, index_path: Path) -> list[CorpusBook]:
    """Read and check the book offsets up front, so a stale index fails before minutes of work."""
    corpus_path, index_path = Path(corpus_path), Path(index_path)
    if not corpus_path.is_file():
        raise FileNotFoundError(
            f"Corpus file {corpus_path} not found: materialize the `corpus` asset first."
        )
    if not index_path.is_file():
        raise FileNotFoundError(
            f"Corpus index {index_path} not found: materialize the `corpus` asset first."
        )
    try:
        raw = json.loads(index_path.read_text(encoding="utf-8"))
        entries = raw["books"]
        books = [CorpusBook(int(e["id"]), int(e["start"]), int(e["end"])) for e in entries]
    except (ValueError, KeyError, TypeError) as exc:
        raise ValueError(
            f"Corpus index {index_path} is not of the form "
            f'{{"books": [{{"id": ..., "start": ..., "end": ...}}, ...]}} ({exc!r}): '
            "re-materialize the `corpus` asset."
        ) from exc
    if not books:
        raise ValueError(f"Corpus index {index_path} lists no books: add books to the book list.")
    size = corpus_path.stat().st_size
    previous_end = 0
    for book in books:
        if not previous_end <= book.start <= book.end <= size:
            raise ValueError(
                f"Book {book.id} has offsets [{book.start}, {book.end}) in {index_path} that do "
                f"not fit {corpus_path} ({size} bytes, previous book ends at {previous_end}): "
                "the index is stale; re-materialize the `corpus` asset."
            )
        previous_end = book.end
    return books


def iter_corpus_books(corpus_path: Path, index_path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(book id, text)`` in corpus order, one book in memory at a time."""
    for book, text in _iter_books(corpus_path, index_path):
        yield book.id, text


def _iter_books(corpus_path: Path, index_path: Path) -> Iterator[tuple[CorpusBook, str]]:
    books = read_corpus_index(corpus_path, index_path)
    with open(corpus_path, "rb") as corpus:
        for book in books:
            corpus.seek(book.start)
            data = corpus.read(book.end - book.start)
            try:
                text = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(
                    f"Book {book.id} in {corpus_path} is not valid UTF-8 at byte "
                    f"{book.start + exc.start}: re-materialize the `corpus` asset."
                ) from exc
            yield book, text


def split_text(text: str, size: int = CHUNK_CHARS) -> Iterator[str]:
    """Cut ``text`` into pieces of about ``size`` characters that encode exactly like the whole.

    Each cut falls just before a newline that follows a non-space character. No match of GPT-2's
    pre-tokenizer regex runs from a non-space into a space (a space only ever prefixes a word),
    and its one lookahead (``\\s+(?!\\S)``) only looks along a run of spaces, which a cut never
    splits: so the pieces give the same pre-tokens, hence the same ids, as the unsplit text.
    """
    start, n = 0, len(text)
    while start < n:
        cut = text.find("\n", start + size)
        while cut != -1 and text[cut - 1].isspace():
            cut = text.find("\n", cut + 1)
        if cut == -1:
            cut = n
        yield text[start:cut]
        start = cut


def iter_chunk_batches(
    corpus_path: Path,
    index_path: Path,
    *,
    batch_chars: int = BATCH_CHARS,
    chunk_chars: int = CHUNK_CHARS,
) -> Iterator[tuple[list[str], list[bool], int]]:
    """Yield ``(chunks, ends_book, corpus bytes done)`` batches of about ``batch_chars``.

    ``ends_book[i]`` marks the last chunk of a book, where ``<|endoftext|>`` goes. The bytes done
    count whole books only: good enough for a progress bar, and free.
    """
    chunks: list[str] = []
    ends: list[bool] = []
    chars = 0
    done = 0
    for book, text in _iter_books(corpus_path, index_path):
        pieces = list(split_text(text, chunk_chars)) or [""]
        for i, piece in enumerate(pieces):
            chunks.append(piece)
            ends.append(i == len(pieces) - 1)
            chars += len(piece)
            if chars >= batch_chars:
                yield chunks, ends, done
                chunks, ends, chars = [], [], 0
        done = book.end
    if chunks:
        yield chunks, ends, done


@contextmanager
def tokenizer_threads() -> Iterator[None]:
    """Run ``tokenizers`` on every core inside; leave it safe for processes forked afterwards.

    The Rust thread pool does not survive ``fork``: a DataLoader worker forked after parallel
    tokenization would warn and could deadlock if it tokenized. Unless the user set
    ``TOKENIZERS_PARALLELISM`` themselves (then it is left alone), it is "true" inside and
    "false" afterwards, which silences the warning; the next stage call turns it on again.
    """
    global _parallelism_left_by_us
    current = os.environ.get(_PARALLELISM_VAR)
    ours = current is None or current == _parallelism_left_by_us
    if ours:
        os.environ[_PARALLELISM_VAR] = "true"
    try:
        yield
    finally:
        if ours:
            os.environ[_PARALLELISM_VAR] = _parallelism_left_by_us = "false"


def check_vocab_size(vocab_size: int) -> None:
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise TypeError(f"vocab_size must be an integer, got {vocab_size!r}.")
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(
            f"vocab_size={vocab_size} is too small: a byte-level BPE needs {BYTE_SYMBOLS} byte "
            f"symbols plus {len(SPECIAL_TOKENS)} special token ({END_OF_TEXT}); use at least "
            f"{MIN_VOCAB_SIZE} (GPT-2 uses 50257)."
        )
    if vocab_size > MAX_VOCAB_SIZE:
        raise ValueError(
            f"vocab_size={vocab_size} is absurdly large (over {MAX_VOCAB_SIZE:,}): the embedding "
            "table would dwarf the model; use something like 50257."
        )


def new_tokenizer() -> Tokenizer:
    """An empty GPT-2-style byte-level BPE: no normalizer, no prefix space, byte-level decoding."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def train_tokenizer(
    corpus_path: Path,
    index_path: Path,
    out_dir: Path,
    *,
    vocab_size: int = 50257,
    progress: Callable[[str], None] | None = None,
) -> TokenizerReport:
    """Train the BPE on the streamed corpus and write ``out_dir`` in one rename."""
    check_vocab_size(vocab_size)
    started = time.perf_counter()
    books = read_corpus_index(corpus_path, index_path)
    corpus_bytes = sum(b.end - b.start for b in books)
    say = progress or (lambda message: None)
    say(f"Training a byte-level BPE of {vocab_size} tokens on {len(books)} books "
        f"({corpus_bytes / 1e6:.1f} MB).")

    tokenizer = new_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    batches = (chunks for chunks, _, _ in iter_chunk_batches(corpus_path, index_path))
    with tokenizer_threads():
        tokenizer.train_from_iterator(batches, trainer=trainer)
    learned = tokenizer.get_vocab_size(with_added_tokens=True)

    out_dir = Path(out_dir)
    with staging_dir(out_dir) as tmp:
        tokenizer.save(str(tmp / TOKENIZER_FILE))
        write_transformers_config(tmp)
    seconds = time.perf_counter() - started
    say(f"Learned {learned} tokens in {seconds:.1f} s; saved to {out_dir}.")
    return TokenizerReport(
        path=out_dir,
        vocab_size=learned,
        requested_vocab_size=vocab_size,
        corpus_bytes=corpus_bytes,
        seconds=seconds,
    )


def write_transformers_config(directory: Path) -> None:
    """The two files beside ``tokenizer.json`` that make ``AutoTokenizer`` load it as GPT-2 does.

    ``PreTrainedTokenizerFast`` (an alias of ``TokenizersBackend`` in transformers 5) reads
    ``tokenizer.json`` as is; ``<|endoftext|>`` serves as bos, eos, unk and pad like in GPT-2.
    """
    special = {name: END_OF_TEXT for name in ("bos_token", "eos_token", "unk_token", "pad_token")}
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        **special,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "model_max_length": 1_000_000_000_000_000_019_884_624_838_656,
    }
    for name, content in (("tokenizer_config.json", config), ("special_tokens_map.json", special)):
        (directory / name).write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")


def load_tokenizer(path: Path) -> PreTrainedTokenizerFast:
    """The saved tokenizer as ``transformers`` sees it (what the model and ``generate`` use)."""
    path = Path(path)
    if not (path / TOKENIZER_FILE).is_file():
        raise FileNotFoundError(
            f"No {TOKENIZER_FILE} in {path}: materialize the `tokenizer` asset first."
        )
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


@contextmanager
def staging_dir(out_dir: Path) -> Iterator[Path]:
    """Yield an empty sibling folder; on success it replaces ``out_dir`` by rename.

    Readers (and a crashed run's successor) see the old folder or the new one, never half of
    one: the only window is between two renames, after which the old copy is deleted.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    old = out_dir.with_name(f".{out_dir.name}.old-{os.getpid()}")
    for leftover in (tmp, old):  # from a crashed run that had our pid
        shutil.rmtree(leftover, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out_dir.exists():
        out_dir.rename(old)
    tmp.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
