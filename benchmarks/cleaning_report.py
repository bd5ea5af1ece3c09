"""Cleaner quality on hand-checked Gutenberg books and on variants of them.

    python benchmarks/cleaning_report.py [--books DIR] [--generated N]

``DIR`` holds ``MANIFEST.tsv`` (each book's true first and last body line) and the books in mirror
layout under ``mirror/``; by default the set the tests score the cleaner on.

For each of the 18 hand-checked books (MANIFEST.tsv gives the true body lines) and each variant
(re-encoded UTF-8 <-> Latin-1, CRLF <-> LF, CR only, BOM added/removed) it prints line recall,
precision and the number of boilerplate lines left, then totals. ``--generated`` adds books made by
the test generator in every header style, language and encoding. Exit status 1 if any book falls
below 99.5% recall or precision or leaks a boilerplate line.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from llm_assets_tests.books.shared_books import Score, load_manifest, score_lines, score_raw, total, variants  # noqa: E402
from llm_assets_tests.conftest import SHARED_GUTENBERG as HAND_CHECKED  # noqa: E402
from llm_assets_tests.gutenberg_server import STYLES, make_book  # noqa: E402
from llm_assets.books.cleaning import clean_book  # noqa: E402

THRESHOLD = 0.995
_GENERATED = [("en", "utf-8-sig", "\r\n"), ("fr", "latin-1", "\r\n"), ("nl", "cp1252", "\n"),
              ("la", "utf-8", "\n"), ("is", "utf-8-sig", "\r")]


def _row(label: str, variant: str, score: Score) -> str:
    ok = score.recall >= THRESHOLD and score.precision >= THRESHOLD and not score.leaked and not score.markers
    return (f"{label:>8} {variant:<24} {score.body:>7} {score.kept:>7} {score.recall:>8.4%} "
            f"{score.precision:>9.4%} {score.leaked:>6} {score.markers:>7}  {'ok' if ok else 'FAIL'}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--books", type=Path, default=HAND_CHECKED)
    parser.add_argument("--generated", type=int, default=1,
                        help="generated books per (style, language/encoding); 0 for none")
    args = parser.parse_args(argv)

    header = (f"{'book':>8} {'variant':<24} {'body':>7} {'kept':>7} {'recall':>8} "
              f"{'precision':>9} {'leaked':>6} {'markers':>7}")
    began = time.perf_counter()
    served: list[Score] = []
    varied: list[Score] = []
    print(header)
    for book in load_manifest(args.books):
        body = book.body_lines()
        for name, raw in variants(book):
            score = score_raw(raw, body)
            (served if name == "as served" else varied).append(score)
            print(_row(str(book.book_id), name, score))
    generated: list[Score] = []
    for n in range(args.generated):
        for style in STYLES:
            for language, encoding, newline in _GENERATED:
                book = make_book(100_000 + n, style, language=language, encoding=encoding, newline=newline)
                cleaned = clean_book(book.raw)
                generated.append(score_lines(cleaned.text.split("\n"), book.body_lines, cleaned.markers_found))
                print(_row("gen", f"{style} {language} {encoding}", generated[-1]))
    seconds = time.perf_counter() - began

    print()
    print(header)
    groups = [("checked", "as served", served), ("checked", "variants", varied),
              ("gen", "generated", generated)]
    for label, name, scores in groups:
        if scores:
            print(_row(label, name, total(scores)))
    everything = served + varied + generated
    worst_recall = min(s.recall for s in everything)
    worst_precision = min(s.precision for s in everything)
    print(f"\nworst single file: recall {worst_recall:.4%}, precision {worst_precision:.4%}; "
          f"{len(everything)} files scored in {seconds:.1f} s")
    failed = [s for s in everything if s.recall < THRESHOLD or s.precision < THRESHOLD or s.leaked or s.markers]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
