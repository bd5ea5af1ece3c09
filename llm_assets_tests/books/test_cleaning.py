"""The cleaner on small generated texts: one test per marker style and per decoding quirk."""

from __future__ import annotations

import pytest

from llm_assets.books.cleaning import clean_book, clean_text, decode_gutenberg
from llm_assets_tests.gutenberg_server import STYLES, make_body, make_book

BODY = "CHAPTER I.\n\nIt was a dark night.\n\nThe end came soon.\n\nTHE END"


def _check(raw: bytes, body: str) -> None:
    cleaned = clean_book(raw)
    assert cleaned.text == body
    assert cleaned.markers_found


# --- decoding ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (b"\xef\xbb\xbfCaf\xc3\xa9\r\nna\xc3\xafve\r\n", "Café\nnaïve\n"),  # UTF-8 + BOM, CRLF
        (b"Caf\xc3\xa9\nna\xc3\xafve\n", "Café\nnaïve\n"),  # UTF-8, LF
        (b"Caf\xe9\r\nna\xefve\r", "Café\nnaïve\n"),  # Latin-1, CRLF and a lone CR
        (b"\x93Quoted\x94 \x96 dash\n", "\u201cQuoted\u201d \u2013 dash\n"),  # cp1252 punctuation
        (b"\x81\xe9\n", "\x81é\n"),  # a byte cp1252 leaves undefined: Latin-1
        ("Þú\r\n".encode("utf-16"), "Þú\n"),  # UTF-16 with its BOM
    ],
)
def test_decode_gutenberg(raw: bytes, text: str) -> None:
    assert decode_gutenberg(raw) == text


def test_line_numbers_ignore_form_feeds_and_nel() -> None:
    # str.splitlines would split on \x0c and \x85 (NEL, a Latin-1 byte) and shift line numbers.
    text = "head\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\nA\x0cB\nC\x85D\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\n"
    cleaned = clean_text(text)
    assert cleaned.text == "A\x0cB\nC\x85D"
    assert (cleaned.body_first_line, cleaned.body_last_line) == (3, 4)


# --- every generated style, encoding and line ending ----------------------------------------


@pytest.mark.parametrize("style", [s for s in STYLES if s != "none"])
@pytest.mark.parametrize(
    ("language", "encoding", "newline"),
    [
        ("en", "utf-8-sig", "\r\n"),
        ("fr", "latin-1", "\r\n"),
        ("nl", "utf-8", "\n"),
        ("la", "utf-8-sig", "\n"),
        ("is", "cp1252", "\r"),
    ],
)
def test_generated_styles(style: str, language: str, encoding: str, newline: str) -> None:
    book = make_book(3, style, language=language, encoding=encoding, newline=newline)
    cleaned = clean_book(book.raw)
    assert cleaned.text == book.body
    assert (cleaned.body_first_line, cleaned.body_last_line) == (
        book.body_first_line,
        book.body_last_line,
    )
    assert cleaned.markers_found
    assert "Gutenberg" not in cleaned.text
    assert "Produced by" not in cleaned.text and "E-text prepared" not in cleaned.text


# --- each marker style, spelled out ----------------------------------------------------------


def test_start_of_the_markers() -> None:
    raw = (
        "Header line\n\n*** START OF THE PROJECT GUTENBERG EBOOK X ***\n\n"
        f"{BODY}\n\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\nlicence\n"
    ).encode()
    _check(raw, BODY)


def test_start_of_this_markers_with_produced_by_and_end_of_line() -> None:
    raw = (
        "Project Gutenberg's X, by Y\n\n*** START OF THIS PROJECT GUTENBERG EBOOK X ***\n\n\n"
        "Produced by Someone and the Online Distributed\nProofreading Team at http://www.pgdp.net\n\n\n"
        f"{BODY}\n\n\nEnd of Project Gutenberg's X, by\nY\n\n"
        "*** END OF THIS PROJECT GUTENBERG EBOOK X ***\n\n***** This file should be named x.txt *****\n"
    ).encode()
    _check(raw, BODY)


def test_markers_without_spaces_and_html_note() -> None:
    raw = (
        "***START OF THE PROJECT GUTENBERG EBOOK X***\n\n\nE-text prepared by A and B\n\n\n"
        "Note: Project Gutenberg also has an HTML version of this\n      file.\n\n\n"
        f"{BODY}\n\n***END OF THE PROJECT GUTENBERG EBOOK X***\n"
    ).encode()
    _check(raw, BODY)


def test_markers_wrapped_over_two_lines() -> None:
    raw = (
        "***START OF THE PROJECT GUTENBERG EBOOK THE LOG SCHOOL-HOUSE ON THE\nCOLUMBIA***\n\n"
        f"{BODY}\n\n***END OF THE PROJECT GUTENBERG EBOOK THE LOG SCHOOL-HOUSE ON THE\nCOLUMBIA***\n"
    ).encode()
    _check(raw, BODY)


def test_wrapped_marker_does_not_swallow_a_body_starting_right_after_it() -> None:
    # An unterminated marker followed directly by text not ending in "*" is a one-line marker.
    raw = (
        "*** START OF THE PROJECT GUTENBERG EBOOK X\nFirst line of the book.\n\n"
        "*** END OF THE PROJECT GUTENBERG EBOOK X ***\n"
    ).encode()
    assert clean_book(raw).text == "First line of the book."


def test_indented_end_marker_between_whitespace_lines() -> None:
    raw = (
        "*** START OF THE PROJECT GUTENBERG EBOOK X ***\n\n\n"
        f"{BODY}\n\n\n        \n            *** END OF THE PROJECT GUTENBERG EBOOK X ***\n        \n\n"
        "Updated editions will replace the previous one\n"
    ).encode()
    _check(raw, BODY)


def test_comma_marker_with_small_print_after_the_end() -> None:
    raw = (
        "*** START OF THE PROJECT GUTENBERG EBOOK, X ***\n\n"
        f"{BODY}\n\n*** END OF THE PROJECT GUTENBERG EBOOK, X ***\n\n"
        "***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN EBOOKS**START***\nlawyers\n"
        "*END THE SMALL PRINT! FOR PUBLIC DOMAIN EBOOKS*Ver.02/11/02*END*\n"
    ).encode()
    _check(raw, BODY)


def test_1990s_small_print_header_without_markers() -> None:
    raw = (
        "The Project Gutenberg Etext of X\n\nWe need your donations.\n\n"
        "***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***\nlawyers\n"
        "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n\n\n"
        "This etext was produced from the 1908 edition by David Price\n\n\n"
        f"{BODY}\n\n\nEnd of The Project Gutenberg Etext of X\n"
    ).encode()
    cleaned = clean_book(raw)
    assert cleaned.text == BODY and cleaned.markers_found
    assert any("no END marker" in w for w in cleaned.warnings)


def test_end_the_small_print_without_star_between() -> None:
    raw = (
        "Project Gutenberg Etext of X\n***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***\n"
        "lawyers\n*END THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.12.12.00*END*\n\n"
        f"{BODY}\n\nEnd of Project Gutenberg Etext of X\n"
    ).encode()
    _check(raw, BODY)


def test_lowercase_and_non_ascii_markers() -> None:
    raw = (
        "*** Start of the Project Gutenberg eBook Le Dernier Jour d'un Condamné ***\n\n"
        "Le texte.\n\n*** End of the Project Gutenberg eBook Le Dernier Jour d'un Condamné ***\n"
    ).encode("utf-8")
    _check(raw, "Le texte.")


def test_credit_paragraphs_only_dropped_at_the_start() -> None:
    # "Produced by" inside the book is the book's text.
    body = "A play.\n\nProduced by the Royal Company in 1890.\n\nTHE END"
    raw = f"*** START OF THE PROJECT GUTENBERG EBOOK X ***\n\n{body}\n\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\n"
    _check(raw.encode(), body)


def test_body_lines_are_kept_exactly() -> None:
    # Indentation, trailing spaces and section breaks inside the body survive unchanged.
    body = "    indented verse  \n\n*       *       *\n\n\tTabbed line"
    raw = f"*** START OF THE PROJECT GUTENBERG EBOOK X ***\n\n{body}\n\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\n"
    _check(raw.encode(), body)


def test_no_markers_kept_whole_with_warning() -> None:
    text = make_body(5, "nl", 4)
    cleaned = clean_text("\n\n" + text + "\n\n")
    assert cleaned.text == text
    assert not cleaned.markers_found
    assert cleaned.warnings


def test_only_an_end_marker_keeps_the_top_and_warns() -> None:
    cleaned = clean_text(f"{BODY}\n\n*** END OF THE PROJECT GUTENBERG EBOOK X ***\nlicence\n")
    assert cleaned.text == BODY and cleaned.markers_found
    assert any("no START marker" in w for w in cleaned.warnings)


def test_markers_around_nothing_keep_the_text_whole() -> None:
    text = "*** START OF THE PROJECT GUTENBERG EBOOK X ***\n\n*** END OF THE PROJECT GUTENBERG EBOOK X ***"
    cleaned = clean_text(text)
    assert cleaned.text == text and not cleaned.markers_found


def test_short_book_under_a_long_small_print_header() -> None:
    # The licence can be longer than the book: the header's end is found wherever it is.
    licence = "\n".join(f"lawyers line {n}" for n in range(300))
    raw = (
        "The Project Gutenberg Etext of A Poem\n"
        f"***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***\n{licence}\n"
        "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n\n"
        "A short poem.\nOf two lines.\n\nEnd of The Project Gutenberg Etext of A Poem\n"
    ).encode()
    _check(raw, "A short poem.\nOf two lines.")


def test_small_print_after_the_footer_is_not_taken_for_a_header() -> None:
    raw = (
        f"{BODY}\n\nEnd of the Project Gutenberg EBook of X\n\n"
        "***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN EBOOKS**START***\nlawyers\n"
        "*END THE SMALL PRINT! FOR PUBLIC DOMAIN EBOOKS*Ver.02/11/02*END*\n"
    ).encode()
    cleaned = clean_book(raw)
    assert cleaned.text == BODY
