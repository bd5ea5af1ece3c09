"""Generated books on the test mirror, for the client and download-cache tests."""

from __future__ import annotations

import pytest

from llm_assets_tests.gutenberg_server import GutenbergMirror, make_books


@pytest.fixture
def books(gutenberg_mirror: GutenbergMirror) -> dict:
    generated = make_books([11, 22, 33])
    for book_id, book in generated.items():
        gutenberg_mirror.add_book(book_id, book.raw)
    return generated
