"""Fixtures shared by every test folder: a misbehaving local Gutenberg mirror and the real books."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_assets_tests.gutenberg_server import GutenbergMirror

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_GUTENBERG = REPO_ROOT.parent / "shared" / "gutenberg"


@pytest.fixture
def gutenberg_mirror() -> Iterator[GutenbergMirror]:
    """An empty local mirror (add books and faults per test); stopped after the test."""
    with GutenbergMirror() as mirror:
        yield mirror


@pytest.fixture(scope="session")
def shared_gutenberg() -> Path:
    """The 18 real Gutenberg files with MANIFEST.tsv, checked out beside the repository."""
    if not (SHARED_GUTENBERG / "MANIFEST.tsv").is_file():
        pytest.skip(f"no shared Gutenberg books at {SHARED_GUTENBERG} (MANIFEST.tsv missing)")
    return SHARED_GUTENBERG
