"""The cleaner on the 18 real Gutenberg files beside the checkout, and on variants of them.

The manifest gives each file's true first and last body line, checked by hand. The thresholds are
the issue's: line recall and precision of at least 99.5% per book and no licence or marker line
left, on the files as served and on re-encoded / re-terminated / BOM-toggled variants the cleaner
was never tuned on.
"""

from __future__ import annotations

from pathlib import Path

from llm_assets.books.cleaning import (
    _BOILERPLATE_LINES,
    clean_book,
    decode_gutenberg,
    find_boilerplate_lines,
)
from llm_assets_tests.books.shared_books import (
    load_manifest,
    score_raw,
    total,
    variants,
)

THRESHOLD = 0.995


def _failures(shared: Path, all_variants: bool) -> tuple[list[str], list]:
    failures: list[str] = []
    scores = []
    for book in load_manifest(shared):
        body = book.body_lines()
        for name, raw in variants(book) if all_variants else [("as served", book.raw())]:
            score = score_raw(raw, body)
            scores.append(score)
            if (
                score.recall < THRESHOLD
                or score.precision < THRESHOLD
                or score.leaked
                or score.markers
                or not score.markers_found
            ):
                failures.append(
                    f"{book.book_id} ({name}): recall {score.recall:.4f} precision "
                    f"{score.precision:.4f} leaked {score.leaked} markers {score.markers}"
                )
    return failures, scores


def test_shared_books_as_served(shared_gutenberg: Path) -> None:
    failures, scores = _failures(shared_gutenberg, all_variants=False)
    assert len(scores) == 18
    assert not failures, "\n".join(failures)
    overall = total(scores)
    assert overall.recall >= THRESHOLD and overall.precision >= THRESHOLD


def test_shared_book_variants(shared_gutenberg: Path) -> None:
    failures, scores = _failures(shared_gutenberg, all_variants=True)
    assert len(scores) >= 18 * 4  # some UTF-8 books have no Latin-1 form
    assert not failures, "\n".join(failures)


def test_body_boundaries_match_the_manifest(shared_gutenberg: Path) -> None:
    for book in load_manifest(shared_gutenberg):
        cleaned = clean_book(book.raw())
        assert (cleaned.body_first_line, cleaned.body_last_line) == (
            book.body_first_line,
            book.body_last_line,
        ), book.book_id


def test_decoder_agrees_with_the_manifest_encoding(shared_gutenberg: Path) -> None:
    for book in load_manifest(shared_gutenberg):
        assert decode_gutenberg(book.raw()).split("\n")[: len(book.lines()) - 1] == book.lines()[:-1], (
            book.book_id
        )


def test_boilerplate_detector_sees_raw_licences_but_not_clean_bodies(shared_gutenberg: Path) -> None:
    for book in load_manifest(shared_gutenberg):
        raw = book.raw()
        assert find_boilerplate_lines(decode_gutenberg(raw)), book.book_id
        assert find_boilerplate_lines(clean_book(raw).text) == [], book.book_id
        assert find_boilerplate_lines("\n".join(book.body_lines())) == [], book.book_id


def _every_line_tested(text: str) -> list[str]:
    """The detector's definition: each LF-separated line tested against every pattern."""
    return [line for line in text.split("\n") if any(p.search(line) for p in _BOILERPLATE_LINES)]


def test_the_fast_boilerplate_scan_finds_exactly_the_lines_of_testing_every_line(shared_gutenberg: Path) -> None:
    """It tests only lines holding a word the patterns require, found in the lowercased text; the
    letters that match a word ignoring case but lowercase apart (İ, ı, ſ) take the slow scan."""
    raws = [decode_gutenberg(book.raw()) for book in load_manifest(shared_gutenberg)]
    cleaned = [clean_book(book.raw()).text for book in load_manifest(shared_gutenberg)]
    leaks = ("*** END OF THE PROJECT GUTENBERG EBOOK X ***\nSmall print, licence and gutenberg in one line\n"
             "  *END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\nThis file should be named x.txt")
    folded = "İstanbul\n*END*THE ſMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*\nLICENSE ı\nproject gutenberg-tm"
    for text in ["\n".join(raws), "\n\n".join(cleaned) + "\n" + leaks, "\n\n".join(cleaned) + folded, folded,
                 leaks, "", "no newline at all: Project Gutenberg Literary Archive Foundation"]:
        assert find_boilerplate_lines(text) == _every_line_tested(text)
    assert len(find_boilerplate_lines("\n".join(raws))) > 100
    assert "*END*THE ſMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*" in find_boilerplate_lines(folded)
