"""raw_books' materialization record stays small however long the list: a summary in the metadata,
the full resolution in a file beside the books.

The size is measured the way the instance keeps a record (the serialized event), for a 1,000- and a
1,500-book shelf resolved against a catalog in the real CSV format, with the download report of
those books (a plain record of what was fetched: downloading 1,000 books takes minutes, which the
1,000-book benchmark measures). A real materialization of a 30-book shelf checks the wiring: the
file written beside the books, the link, and what the sensor reads back.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import dagster as dg
import pytest
from dagster._serdes import serialize_value

from llm_assets.books.booklist import load_book_list
from llm_assets.books.catalog import COLUMNS, parse_catalog
from llm_assets.books.downloads import DownloadedBook, DownloadReport
from llm_assets.books.resolution_store import record_path, write_record
from llm_assets.books.selection import resolve_book_list
from llm_assets.orchestration import metadata as md
from llm_assets.orchestration.assets import raw_books
from llm_assets.orchestration.resources import GutenbergResource, PathsResource
from llm_assets_tests.gutenberg_server import GutenbergMirror, make_book

LIMIT = 64 * 1024


def shelf_catalog(ids: list[int]) -> bytes:
    """A catalog in the real format whose rows are all on `Category: Novels`, with long fields."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for book_id in ids:
        title = f"The Long and Winding History of Book Number {book_id}; Or, A Very Long Subtitle | With Pipes"
        authors = f"Writer{book_id}, Annabel Cordelia, 1850-1920; Drawer{book_id}, Ann, 1860- [Illustrator]"
        writer.writerow([book_id, "Text", "2001-01-01", title, "en", authors, "Fiction; Love stories", "PR",
                         "Category: Novels; Category: Romance"])
    return out.getvalue().encode("utf-8")


def shelf_list(folder: Path, books: int) -> Path:
    path = folder / "books.yaml"
    path.write_text(f'books:\n  - bookshelf: "Category: Novels"\n    limit: {books}\n', encoding="utf-8")
    return path


@pytest.mark.parametrize("books", [1000, 1500])
def test_the_record_stays_under_64_kb_however_long_the_list(tmp_path: Path, books: int) -> None:
    ids = list(range(100, 100 + books))
    resolved = resolve_book_list(load_book_list(shelf_list(tmp_path, books)),
                                 parse_catalog(shelf_catalog(ids).decode("utf-8"), "pg_catalog.csv"))
    report = DownloadReport(
        books=tuple(DownloadedBook(i, tmp_path / f"{i}.txt", 400_000, "ab" * 32, f"https://www.gutenberg.org/"
                                   f"cache/epub/{i}/pg{i}.txt", True) for i in ids),
        skipped=(), requests=books, bytes_downloaded=400_000 * books, seconds=30.0)
    resolution = write_record(tmp_path / "raw", resolved.record(None))
    metadata = md.raw_books(report, resolved, tmp_path / "books.yaml", None, resolution)
    event = dg.AssetMaterialization(asset_key="raw_books", metadata=metadata)
    size = len(serialize_value(event))
    assert size < LIMIT, f"raw_books' record is {size:,} bytes for {books} books"
    assert len(json.dumps(resolved.metadata())) > 2 * LIMIT  # what the record used to hold
    assert ("selected_ids" in metadata) == (books <= md.LISTED)
    assert f"... and {books - md.SHOWN} more: see {resolution}" in metadata["chosen_by"].value
    stored = dg.AssetMaterialization(asset_key="raw_books", metadata=metadata).metadata
    assert md.recorded_selection(stored) == ids  # listed in the record, or read from the file
    assert json.loads(resolution.read_text(encoding="utf-8"))["book_ids"] == ids


def test_a_materialization_links_its_full_resolution(tmp_path: Path, gutenberg_mirror: GutenbergMirror) -> None:
    ids = list(range(100, 130))
    for book_id in ids:
        gutenberg_mirror.add_book(book_id, make_book(book_id, paragraphs=1).raw)
    gutenberg_mirror.add_catalog(shelf_catalog(ids))
    data = tmp_path / "data"
    data.mkdir()
    shelf_list(data, len(ids))
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize([raw_books], instance=instance, resources={
        "paths": PathsResource(data_dir=str(data), checkpoint_dir=str(tmp_path / "ckpt")),
        "gutenberg": GutenbergResource(mirror=gutenberg_mirror.url, backoff_seconds=0.01)})
    assert result.success
    event = instance.get_latest_materialization_event(dg.AssetKey("raw_books"))
    metadata = event.asset_materialization.metadata
    assert metadata["selected_count"].value == metadata["books"].value == 30
    assert "... and 5 more: see" in metadata["chosen_by"].value
    assert "| 2 | `bookshelf: \"Category: Novels\", limit: 30` | 30 | 30 | 30 |" in metadata["entries"].value
    record = Path(metadata["resolution"].value)
    fingerprint = metadata["book_list_fingerprint"].value
    assert record == record_path(data / "raw", fingerprint)
    full = json.loads(record.read_text(encoding="utf-8"))
    assert full["book_ids"] == ids and full["fingerprint"] == fingerprint
    assert full["chosen_by"][-1] == {"id": 129, "line": 2, "entry": 'bookshelf: "Category: Novels", limit: 30',
                                     "title": "The Long and Winding History of Book Number 129; Or, A Very Long "
                                              "Subtitle | With Pipes"}
    assert full["catalog"]["books"] == 30 and len(full["catalog"]["sha256"]) == 64
    assert md.recorded_selection(metadata) == ids
