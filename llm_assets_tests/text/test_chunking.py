"""Cutting the corpus into pieces that tokenize exactly like the whole, in batches."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer

from llm_assets.text.chunking import iter_chunk_batches, split_text
from llm_assets.text.tokenizer import train_tokenizer
from llm_assets_tests.text.conftest import Corpus, read_books, write_corpus

TRICKY = (
    "He said:  \n\n\n  “Oh!”\t\n\nno   \n  'tis 42 ...\n\nEnd.  \n \nfin\n\n"
    "x\u00a0\ny\u3000\nz\n"
)


@pytest.fixture(scope="module")
def whitespace_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    """Trained with runs of newlines and spaces, so those merges exist and a bad cut shows."""
    directory = tmp_path_factory.mktemp("whitespace")
    c = write_corpus(directory, {**read_books(), 99: TRICKY * 200})
    train_tokenizer(c.corpus, directory / "tok", vocab_size=1000)
    tok = Tokenizer.from_file(str(directory / "tok" / "tokenizer.json"))
    assert all(tok.token_to_id(t) is not None for t in ("ĊĊ", "ĠĠ"))
    return tok


@pytest.mark.parametrize("size", [1, 7, 64, 2048])
def test_split_text_pieces_encode_exactly_like_the_whole(
    whitespace_tokenizer: Tokenizer, size: int
) -> None:
    for text in [TRICKY * 60, *read_books().values()]:
        pieces = list(split_text(text, size))
        assert "".join(pieces) == text
        assert len(pieces) > 1
        by_piece = [i for e in whitespace_tokenizer.encode_batch(pieces) for i in e.ids]
        assert by_piece == whitespace_tokenizer.encode(text).ids


def test_chunk_batches_cover_the_corpus_and_mark_book_ends(corpus: Corpus) -> None:
    chunks, ends = [], []
    for batch_chunks, batch_ends, _ in iter_chunk_batches(corpus.files, batch_chars=5000, chunk_chars=300):
        chunks += batch_chunks
        ends += batch_ends
    assert sum(ends) == len(corpus.books)
    texts, current = [], ""
    for chunk, ends_book in zip(chunks, ends):
        current += chunk
        if ends_book:
            texts.append(current)
            current = ""
    assert texts == list(corpus.books.values())


