"""What the sensor's 30-second check costs with a catalog of Project Gutenberg's real size.

    python benchmarks/catalog_tick.py [--rows 77000] [--repeat 7] [--keep DIR]

Generates a catalog in the real ``pg_catalog.csv`` format (header ``Text#,Type,Issued,Title,
Language,Authors,Subjects,LoCC,Bookshelves``, RFC 4180 quoting, titles with newlines, ``; ``-joined
lists, ``Category: ...`` shelves, the 2025 date and role forms, Sound/Dataset/Image rows, the newest
books without subjects or shelves; ~20 MB at 77,000 rows), serves it from the local test mirror and
downloads it through the real client into a fresh ``raw/`` (as raw_books or catalog_refresh does).
Then it times, in this one process, the call the sensor makes every tick:
``resolve_with_catalog(load_book_list(path), raw_dir, None)``:

- **before**: what that call cost before the index: read and hash the file, parse all of it,
  resolve (``parse_catalog`` + ``resolve_book_list``, the same parser and rules);
- **no index**: the first call after a catalog appears without an index (written by older code):
  hash, parse once, write the index;
- **cold**: the list was just edited: the index is there, the resolution cache misses;
- **warm**: nothing changed: the usual tick.

Each is the median of ``--repeat`` calls, wall and CPU seconds, for a ``bookshelf:``, an
``author:``, a ``title:`` and a ``subject:`` list, with the ratio before / after. The download's
own cost (parse + index, once per catalog version) is printed too.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from llm_assets.books.booklist import load_book_list  # noqa: E402
from llm_assets.books.catalog import COLUMNS, parse_catalog  # noqa: E402
from llm_assets.books.catalog_cache import CATALOG_FILE, fetch_catalog  # noqa: E402
from llm_assets.books.catalog_index import index_dir  # noqa: E402
from llm_assets.books.resolution_store import CACHE_FILE  # noqa: E402
from llm_assets.books.selection import resolve_book_list, resolve_with_catalog  # noqa: E402
from llm_assets_tests.gutenberg_server import GutenbergMirror, fast_client  # noqa: E402

LISTS = {  # what a reader writes; each selects up to 1,000 books
    "bookshelf": 'books:\n  - bookshelf: "Category: Novels"\n    language: en\n    limit: 1000\n',
    "author": 'books:\n  - author: "Dickens, Charles"\n    limit: 900\n  - author: "Smith, John"\n    limit: 100\n',
    "title": "books:\n  - title: \"Aesop's\"\n    limit: 500\n  - title: \"the island\"\n    limit: 500\n",
    "subject": 'books:\n  - subject: "England -- Fiction"\n    limit: 1000\n',
}
CATEGORIES = [
    "Category: Novels", "Category: Science-Fiction & Fantasy", "Category: Crime, Thrillers and Mystery",
    "Category: History - American", "Category: History - European", "Category: Poetry", "Category: Short Stories",
    "Category: Children & Young Adult Reading", "Category: Biographies", "Category: Travel Writing",
    "Category: Religion/Spirituality", "Category: Adventure", "Category: Romance", "Category: Humour",
    "Category: Classics of Literature", "Category: Drama", "Category: Essays, Letters & Speeches",
]
READING_LISTS = ["Science Fiction", "Politics", "Gothic Fiction", "Movie Books", "Best Books Ever Listings", "Humor"]
WORDS = ("the of a and adventures history life letters voyage journal story poems essays travels memoirs island "
         "king queen war peace garden house river mountain night day love death city country people world new "
         "old young little great last first aesop's mystery").split()
SURNAMES = ("Smith Brown Wilson Taylor Johnson White Martin Anderson Thompson Wood Hall Clarke Walker Wright Green "
            "Harris Lewis Robinson Young Allen King Scott Baker Adams Hill Moore Mitchell Turner Parker Collins "
            "Edwards Stewart Morris Murphy Cook Rogers Morgan Bell Ward Fox Brontë Molière Sigurjónsson").split()
GIVEN = "John Mary William Elizabeth James Anne Charles Margaret George Sarah Henry Jane Thomas Emily Edward".split()
PLACES = ["England", "France", "United States", "London (England)", "Paris (France)", "Italy", "Germany"]
KINDS = ["Fiction", "Juvenile fiction", "History", "Biography", "Poetry", "Drama", "Description and travel"]
ROLES = ["Illustrator", "Translator", "Editor", "Contributor", "Author of introduction, etc.", "Unknown role"]


def _dates(r: random.Random) -> str:
    born = r.randint(1600, 1900)
    return r.choice([f", {born}-{born + r.randint(20, 90)}"] * 14 + [
        f", active {born}-{born + 30}", f", {born}-", f", -{born}", f", {born}?-{born + 60}",
        f", {r.randint(400, 700)}? BCE-{r.randint(300, 399)}? BCE", ""])


def _creators(r: random.Random) -> list[str]:
    """A pool of creators, as the real catalog has: ~25,000, a few of them prolific."""
    pool = [f"{r.choice(SURNAMES)}, {r.choice(GIVEN)} {r.choice('ABCDEFGHJKLMNPRSTW')}.{_dates(r)}" for _ in range(25_000)]
    pool[:2] = ["Dickens, Charles, 1812-1870", "Smith, John, 1580-1631"]
    pool[2:5] = ["United States. Central Intelligence Agency", "Paris Peace Conference (1919-1920)",
                 "United States. Committee on Public Information, 1917-1919"]
    return pool


def _row(r: random.Random, book_id: int, pool: list[str], newest: bool) -> list[str]:
    kind = "Text" if r.random() < 0.965 else r.choice(["Sound", "Dataset", "Image", "Text; Sound"])
    title = " ".join(r.choice(WORDS) for _ in range(r.randint(2, 9))).capitalize()
    if r.random() < 0.08:
        title += "\n" + " ".join(r.choice(WORDS) for _ in range(r.randint(3, 8)))
    if r.random() < 0.05:
        title = title.replace("'", "\u2019").replace(" ", "\u2013", 1)
    authors = [pool[r.randrange(200) if r.random() < 0.3 else r.randrange(len(pool))]]  # 200 prolific authors
    authors += [f"{r.choice(pool)} [{r.choice(ROLES)}]" for _ in range(r.choice([0, 0, 0, 1, 1, 2]))]
    language = "en" if r.random() < 0.78 else r.choice(["fr", "de", "fi", "nl", "es", "it", "en; la"])
    subjects = "; ".join(f"{r.choice(PLACES)} -- {r.choice(KINDS)}" + r.choice(["", " -- 19th century"])
                         for _ in range(r.randint(1, 4)))
    shelves = sorted(set(r.sample(CATEGORIES[1:], r.randint(1, 2)) + (["Category: Novels"] if r.random() < 0.35 else [])
                         + r.sample(READING_LISTS, r.choice([0, 0, 1]))))
    if newest:  # the newest books are not catalogued yet
        subjects, shelves = "", []
    return [str(book_id), kind, f"{1971 + book_id * 54 // 77_000}-01-01", title, language, "; ".join(authors),
            subjects, "" if newest else r.choice(["PR", "PS", "PQ", "PZ", "PR; PZ"]), "; ".join(shelves)]


def generate_catalog(rows: int = 77_000, seed: int = 19) -> bytes:
    """A catalog of ``rows`` rows in the real format (deterministic for a seed)."""
    r = random.Random(seed)
    pool = _creators(r)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for book_id in range(1, rows + 1):
        writer.writerow(_row(r, book_id, pool, newest=book_id > rows - 300))
    return out.getvalue().encode("utf-8")


def _timed(call: Callable[[], object], repeat: int, before_each: Callable[[], None] = lambda: None) -> tuple[float, float]:
    """Median (wall, CPU) seconds of ``repeat`` calls."""
    walls, cpus = [], []
    for _ in range(repeat):
        before_each()
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def _old_tick(raw: Path, book_list: Path) -> object:
    """The call as it was: read and hash the whole file, parse it all, resolve."""
    data = (raw / CATALOG_FILE).read_bytes()
    hashlib.sha256(data).hexdigest()
    return resolve_book_list(load_book_list(book_list), parse_catalog(data.decode("utf-8"), str(raw / CATALOG_FILE)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=77_000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="catalog_tick-"))
    raw = work / "raw"
    shutil.rmtree(raw, ignore_errors=True)
    began = time.perf_counter()
    body = generate_catalog(args.rows)
    print(f"catalog: {args.rows:,} rows, {len(body) / 1e6:.1f} MB, generated in {time.perf_counter() - began:.1f} s")
    with GutenbergMirror() as mirror:
        mirror.add_catalog(body)
        wall, cpu = time.perf_counter(), time.process_time()
        fetch_catalog(raw, fast_client(mirror, max_attempts=3))
        print(f"download (parse + index, once per catalog version): {time.perf_counter() - wall:.2f} s wall, "
              f"{time.process_time() - cpu:.2f} s CPU; index {sum(p.stat().st_size for p in index_dir(raw).iterdir()) / 1e6:.1f} MB")
    book_list = work / "books.yaml"
    forget = lambda: (index_dir(raw) / CACHE_FILE).unlink(missing_ok=True)  # noqa: E731
    sensor = lambda: resolve_with_catalog(load_book_list(book_list), raw, None)  # noqa: E731
    print(f"\nthe sensor's call, median of {args.repeat} (wall / CPU seconds):")
    print(f"{'list':<10} {'books':>5} {'before':>13} {'no index':>13} {'cold':>13} {'warm':>13} {'before/cold':>11} {'before/warm':>11}")
    for name, text in LISTS.items():
        book_list.write_text(text, encoding="utf-8")
        before = _timed(lambda: _old_tick(raw, book_list), max(1, args.repeat // 3))

        def drop_index() -> None:
            forget()
            for path in index_dir(raw).glob("*.json"):
                path.unlink()

        no_index = _timed(sensor, 1, drop_index)
        cold = _timed(sensor, args.repeat, forget)
        sensor()
        warm = _timed(sensor, args.repeat)
        books = len(sensor()[0].ids)
        cell = lambda t: f"{t[0]:.3f}/{t[1]:.3f}"  # noqa: E731
        print(f"{name:<10} {books:>5} {cell(before):>13} {cell(no_index):>13} {cell(cold):>13} {cell(warm):>13} "
              f"{before[1] / cold[1]:>10.0f}x {before[1] / max(warm[1], 1e-6):>10.0f}x")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
