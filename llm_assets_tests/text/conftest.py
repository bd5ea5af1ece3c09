"""Small real corpora for the text stage: ~25 kB slices of three public-domain Gutenberg books
(English, English with curly quotes, French), laid out as the books stage lays out its corpus."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from llm_assets.books.corpus import INDEX_FILE, CorpusFiles
from llm_assets.text.tokenizer import train_tokenizer

BOOKS_DIR = Path(__file__).parent / "books"
BOOK_IDS = (84, 174, 6838)
SMALL_VOCAB = 600


@dataclass(frozen=True)
class Corpus:
    corpus: Path
    index: Path
    books: dict[int, str]

    @property
    def files(self) -> CorpusFiles:
        return CorpusFiles(text=self.corpus, index=self.index)


def write_corpus(directory: Path, books: dict[int, str]) -> Corpus:
    """Books in order, a blank line between, with the byte-offset index beside them."""
    directory.mkdir(parents=True, exist_ok=True)
    corpus, index = directory / "all_books.txt", directory / INDEX_FILE
    entries, data = [], b""
    for book_id, text in books.items():
        if entries:
            data += b"\n\n"
        encoded = text.encode("utf-8")
        entries.append({"id": book_id, "start": len(data), "end": len(data) + len(encoded)})
        data += encoded
    corpus.write_bytes(data)
    index.write_text(json.dumps({"books": entries}), encoding="utf-8")
    return Corpus(corpus, index, dict(books))


def read_books() -> dict[int, str]:
    return {i: (BOOKS_DIR / f"{i}.txt").read_text(encoding="utf-8") for i in BOOK_IDS}


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Corpus:
    return write_corpus(tmp_path_factory.mktemp("corpus"), read_books())


@pytest.fixture(scope="session")
def tokenizer_dir(corpus: Corpus, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "tokenizer"
    train_tokenizer(corpus.corpus, out, vocab_size=SMALL_VOCAB)
    return out
