"""Fixtures shared by every test folder: a misbehaving local Gutenberg mirror and the real books."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from llm_assets_tests import postgres
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


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.PostgresServer]:
    """A PostgreSQL server on 127.0.0.1 for the session (Debian's package; .ci/run installs it)."""
    reason = postgres.missing()
    if reason is not None:
        pytest.skip(reason)
    base = Path(tempfile.mkdtemp(prefix="llm-assets-pg-"))  # not under pytest's root-only folders
    try:
        with postgres.postgres_server(base) as server:
            yield server
    finally:
        shutil.rmtree(base, ignore_errors=True)
