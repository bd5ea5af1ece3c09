"""Cut the corpus into pieces that tokenize exactly like the whole, in batches for the Rust tokenizer.

Tokenizer training and dataset encoding both stream the corpus this way: memory stays flat, and
``tokenizers`` gets many small, evenly sized pieces to spread over every core (BPE is also very
slow on multi-megabyte strings).
"""

from __future__ import annotations

from collections.abc import Iterator

from llm_assets.books.corpus import CorpusFiles, iter_corpus_books

# Pieces of ~2k characters: measured fastest for encode_batch (lines carry per-item overhead,
# 64k pieces make the pre-tokenizer slow), and ~512 of them per batch keep both cores busy.
CHUNK_CHARS = 2048
BATCH_CHARS = 1 << 20


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
    files: CorpusFiles, *, batch_chars: int = BATCH_CHARS, chunk_chars: int = CHUNK_CHARS
) -> Iterator[tuple[list[str], list[bool], int]]:
    """Yield ``(chunks, ends_book, corpus bytes done)`` batches of about ``batch_chars``.

    ``ends_book[i]`` marks the last chunk of a book, where ``<|endoftext|>`` goes. The bytes done
    count whole books only: good enough for a progress bar, and free.
    """
    chunks: list[str] = []
    ends: list[bool] = []
    chars = 0
    done = 0
    for book, text in iter_corpus_books(files):
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
