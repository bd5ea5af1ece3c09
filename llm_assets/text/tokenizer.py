"""Byte-level BPE tokenizer (GPT-2 style) trained on the streamed corpus, saved for ``AutoTokenizer``.

The corpus arrives in pieces that tokenize exactly like the whole (see ``text.chunking``), so
training sees the words a whole-book pass would see while memory stays flat and every core works.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from llm_assets.atomic import new_version
from llm_assets.books.corpus import read_corpus_index, resolve_corpus
from llm_assets.text.chunking import iter_chunk_batches

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

END_OF_TEXT = "<|endoftext|>"
SPECIAL_TOKENS = (END_OF_TEXT,)
BYTE_SYMBOLS = 256
MIN_VOCAB_SIZE = BYTE_SYMBOLS + len(SPECIAL_TOKENS)
MAX_VOCAB_SIZE = 1_000_000
TOKENIZER_FILE = "tokenizer.json"

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
class RoundTrip:
    """Whether a tokenizer gives back exactly the text it encoded, and how densely it encodes."""

    passed: bool
    vocab_size: int
    chars: int
    tokens: int
    end_of_text: bool  # <|endoftext|> is the eos token, as the dataset and the model expect


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
    out_dir: Path,
    *,
    vocab_size: int = 50257,
    progress: Callable[[str], None] | None = None,
) -> TokenizerReport:
    """Train the BPE on the streamed corpus and publish ``out_dir`` as one new version."""
    check_vocab_size(vocab_size)
    started = time.perf_counter()
    files = resolve_corpus(corpus_path)
    books = read_corpus_index(files)
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
    batches = (chunks for chunks, _, _ in iter_chunk_batches(files))
    with tokenizer_threads():
        tokenizer.train_from_iterator(batches, trainer=trainer)
    learned = tokenizer.get_vocab_size(with_added_tokens=True)

    with new_version(out_dir) as folder:
        save_for_transformers(tokenizer, folder)
    seconds = time.perf_counter() - started
    say(f"Learned {learned} tokens in {seconds:.1f} s; saved to {out_dir}.")
    return TokenizerReport(
        path=Path(out_dir),
        vocab_size=learned,
        requested_vocab_size=vocab_size,
        corpus_bytes=corpus_bytes,
        seconds=seconds,
    )


def save_for_transformers(tokenizer: Tokenizer, directory: Path) -> None:
    """Save with the files ``AutoTokenizer`` needs; ``<|endoftext|>`` is bos, eos, unk and pad, as in GPT-2."""
    from transformers import PreTrainedTokenizerFast

    special = {name: END_OF_TEXT for name in ("bos_token", "eos_token", "unk_token", "pad_token")}
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, clean_up_tokenization_spaces=False, **special)
    fast.save_pretrained(str(directory))


def load_tokenizer(path: Path) -> PreTrainedTokenizerFast:
    """The saved tokenizer as ``transformers`` sees it; a missing folder is an error, never a hub lookup."""
    path = Path(path)
    if not (path / TOKENIZER_FILE).is_file():
        raise FileNotFoundError(
            f"No {TOKENIZER_FILE} in {path}: materialize the `tokenizer` asset first."
        )
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path.resolve()), local_files_only=True)


def check_round_trip(tokenizer_dir: Path, corpus_path: Path, chars: int = 20_000) -> RoundTrip:
    """Encode the corpus's first ``chars`` characters and decode them again: byte-level BPE is lossless."""
    tokenizer = load_tokenizer(tokenizer_dir)
    with open(resolve_corpus(corpus_path).text, encoding="utf-8") as handle:
        sample = handle.read(chars)
    ids = tokenizer(sample)["input_ids"]
    return RoundTrip(
        passed=tokenizer.decode(ids) == sample and tokenizer.eos_token == END_OF_TEXT,
        vocab_size=len(tokenizer),
        chars=len(sample),
        tokens=len(ids),
        end_of_text=tokenizer.eos_token == END_OF_TEXT,
    )
