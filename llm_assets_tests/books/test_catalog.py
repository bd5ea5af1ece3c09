"""The catalog parser and every selection rule, on a hand-written catalog in the real format.

``fixtures/pg_catalog.csv`` holds 60 Gutenberg rows in the real file's format (header, minimal
RFC 4180 quoting, LF line ends; metadata as published, written from memory, so a detail may differ
from today's catalog): every book of the shared test set, seven Dickens texts, the Science Fiction
shelves, quoted fields, titles with LF and CRLF inside the quotes, several creators with roles, an
organisation, an empty Authors field, non-ASCII names, a row in two languages. Like the catalog
since mid-2025, its automated shelves are ``Category: ...``; five rows keep an older file's
``Browsing: ...`` shelves (1, 10, 1404, 2186, 9198). Rows added for the 2025 catalog (modelled on
real ones; the forms are Gutenberg's, a few names and ids are illustrative): typographic
apostrophes, quotes and an en dash in titles (21, 13272, 55802), dates ``621? BCE-565? BCE``,
``751? BCE-651? BCE``, ``active 12th century``, ``active 1799-1828``, ``1869-`` and ``-1919``,
organisations that end in a year (48003, 64307), the roles ``[Author of introduction, etc.]`` and
``[Unknown role]``, a Sound row (20795), a Dataset row (2201), a ``Text; Sound`` Type list (29420)
and the newest books, with no subjects or shelves yet (76921, 76934).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from llm_assets.books.catalog import (
    COLUMNS,
    Catalog,
    CatalogError,
    CatalogQuery,
    fold,
    load_catalog,
    parse_catalog,
    parse_creator,
)

FIXTURE = Path(__file__).parent / "fixtures" / "pg_catalog.csv"
ROWS = 60
DICKENS = (46, 98, 730, 766, 1023, 1400, 24022)  # his Text rows; 20795 is a Sound row
WELLS = (35, 36, 159, 1013, 5230)
SF_AND_FANTASY = (29420, 35, 36, 62, 84, 159, 164, 1013, 1951, 5230)  # the automated shelf's rows


def shelf_rows(text: str) -> str:
    """The fixture as an older file had it: every ``Category:`` shelf still ``Browsing:``."""
    return text.replace("Category: ", "Browsing: ")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(FIXTURE)


def pick(catalog: Catalog, selector: str, value: str, language: str | None = None,
         limit: int | None = None) -> tuple[int, ...]:
    return catalog.select(CatalogQuery(selector, value, language, limit))


# --- reading the file --------------------------------------------------------------------------


def test_the_fixture_is_in_the_real_format(catalog: Catalog) -> None:
    raw = FIXTURE.read_bytes()
    assert raw.decode("utf-8").split("\n", 1)[0] == ",".join(COLUMNS)
    assert b'"""Captains Courageous"": A Story' in raw  # RFC 4180 quote doubling
    assert raw.count(b"\r\n") == 3  # CRLF only inside quoted titles; lines end in LF
    assert len(catalog) == ROWS and catalog.skipped == ()
    assert catalog.get(2186).title == '"Captains Courageous": A Story of the Grand Banks'
    assert catalog.get(84).title == "Frankenstein; Or, The Modern Prometheus"


def test_rows_record_the_line_they_start_on(catalog: Catalog) -> None:
    lines = FIXTURE.read_text(encoding="utf-8").split("\n")
    for book in catalog.books:
        assert lines[book.line - 1].startswith(f"{book.book_id},"), book.book_id
    assert catalog.get(21937).line + 2 == catalog.get(23650).line  # a title over two lines


def test_titles_keep_their_embedded_newlines(catalog: Catalog) -> None:
    assert catalog.get(21937).title == "Modern Icelandic Plays\nEyvind of the Hills; The Hraun Farm"
    assert catalog.get(3261).title == (
        "News from Nowhere; Or, An Epoch of Rest\r\nBeing Some Chapters from a Utopian Romance"
    )


def test_creators_names_dates_and_roles(catalog: Catalog) -> None:
    beethoven = catalog.get(13272)
    assert [(c.name, c.dates, c.role) for c in beethoven.creators] == [
        ("Beethoven, Ludwig van", "1770-1827", ""),
        ("Nohl, Ludwig", "1831-1885", "Editor"),
        ("Wallace, Grace, Lady", "-1878", "Translator"),
    ]
    assert [c.name for c in beethoven.authors] == ["Beethoven, Ludwig van"]
    assert [(c.name, c.dates) for c in catalog.get(35830).creators] == [
        ("United States. Central Intelligence Agency", "")
    ]
    assert catalog.get(10).creators == ()  # the Authors field is empty
    assert catalog.get(972).creators[0].dates == "1842-1914?"
    assert catalog.get(2536).creators[0].name == "Molière"
    assert catalog.get(21937).creators[1] == parse_creator("Schanche, Henninge Krohn [Translator]")
    assert parse_creator("Wells, H. G. (Herbert George), 1866-1946").words == {
        "wells", "h", "g", "herbert", "george"
    }


def test_list_columns(catalog: Catalog) -> None:
    assert catalog.get(31894).languages == ("en", "la")
    assert catalog.get(14263).subjects == ()
    assert catalog.get(11).locc == ("PR", "PZ")
    assert catalog.get(84).bookshelves[-2:] == ("Precursors of Science Fiction", "Science Fiction by Women")


def test_crlf_lines_and_a_bom_read_the_same(catalog: Catalog) -> None:
    text = FIXTURE.read_text(encoding="utf-8")
    crlf = "\ufeff" + text.replace("\r\n", "\0").replace("\n", "\r\n").replace("\0", "\r\n")
    other = parse_catalog(crlf, "crlf.csv")
    assert [b.book_id for b in other.books] == [b.book_id for b in catalog.books]
    for a, b in zip(catalog.books, other.books):
        assert (a.line, a.creators, a.subjects, a.bookshelves) == (b.line, b.creators, b.subjects, b.bookshelves)
        assert a.title.split() == b.title.split()


def test_bad_rows_are_skipped_and_named(caplog) -> None:
    text = FIXTURE.read_text(encoding="utf-8")
    end = text.count("\n")  # the file's last line; the bad rows follow it
    text += "abc,Text,2020-01-01,Nonsense,en,,,,\n99999,Text,2020-01-01,Too short\n84,Text,,Again,en,,,,\n"
    with caplog.at_level(logging.WARNING):
        catalog = parse_catalog(text, "pg.csv")
    assert len(catalog) == ROWS
    assert [line for line, _ in catalog.skipped] == [end + 1, end + 2, end + 3]
    first = parse_catalog(FIXTURE.read_text(encoding="utf-8")).get(84).line
    assert f"Text# 84 again (first on line {first})" in catalog.skipped[2][1]
    assert f"pg.csv, line {end + 1}: row skipped" in caplog.text
    assert catalog.get(84).title.startswith("Frankenstein")


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("<!DOCTYPE html>\n<html><body>Are you a robot?</body></html>\n", "line 1: not Project Gutenberg's catalog"),
        ("Text#,Type,Title\n1,Text,X\n", "lacks Language, Authors, Subjects, Bookshelves"),
        (",".join(COLUMNS) + "\n", "holds no books"),
        ("", "holds no books"),
        (",".join(COLUMNS) + '\n1,Text,2000,"Unclosed,en,,,,\n', "line 2: not valid CSV"),
        (",".join(COLUMNS) + '\n1,Text,2000,"A" title,en,,,,\n', "line 2: not valid CSV"),
    ],
)
def test_what_is_not_a_catalog_is_refused(text: str, words: str) -> None:
    with pytest.raises(CatalogError, match="pg.csv") as caught:
        parse_catalog(text, "pg.csv")
    assert words in str(caught.value)


def test_a_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "pg_catalog.csv"
    bad.write_bytes(FIXTURE.read_bytes().replace("Molière".encode(), "Molière".encode("latin-1")))
    with pytest.raises(CatalogError, match="not UTF-8"):
        load_catalog(bad)


def test_every_shared_test_book_is_in_the_fixture(catalog: Catalog, shared_gutenberg: Path) -> None:
    from llm_assets.books.catalog import fold
    from llm_assets_tests.books.shared_books import load_manifest

    for entry in load_manifest(shared_gutenberg):
        book = catalog.get(entry.book_id)
        assert book is not None and book.is_text, entry.book_id
        line = (shared_gutenberg / "MANIFEST.tsv").read_text(encoding="utf-8").split(f"\n{entry.book_id}\t")[1]
        _title, author, language = line.split("\t")[:3]
        assert language in book.languages
        words = {w for c in book.creators for w in c.words}
        assert words & set(fold(author).replace("(", " ").replace(")", " ").split()), entry.book_id


# --- the selection rules -------------------------------------------------------------------------


def test_only_text_rows_are_chosen(catalog: Catalog) -> None:
    assert catalog.get(20795).type == "Sound" and not catalog.get(20795).is_text
    assert catalog.get(2201).type == "Dataset" and not catalog.get(2201).is_text
    assert pick(catalog, "title", "A Christmas Carol") == (46, 24022)
    assert pick(catalog, "author", "Dickens") == DICKENS
    assert pick(catalog, "subject", "Audiobooks") == ()
    assert pick(catalog, "author", "Human Genome Project") == pick(catalog, "title", "Chromosome") == ()


def test_type_is_a_list_and_text_among_it_counts(catalog: Catalog) -> None:
    assert catalog.get(29420).types == ("Text", "Sound") and catalog.get(29420).is_text
    assert pick(catalog, "author", "Christopher Morley") == (29420,)


def test_title_is_a_folded_substring(catalog: Catalog) -> None:
    assert pick(catalog, "title", "christmas CAROL") == (46, 24022)
    assert pick(catalog, "title", "Misérables") == pick(catalog, "title", "miserables") == (135,)
    assert pick(catalog, "title", "condamne") == (6838,)
    assert pick(catalog, "title", "Icelandic Plays Eyvind") == (21937,)  # across the LF
    assert pick(catalog, "title", "epoch of  rest being") == (3261,)  # across the CRLF
    assert pick(catalog, "title", '"Captains') == (2186,)
    assert pick(catalog, "title", "Moby Dick; Or, The Whale") == (2701,)


def test_subject_matches_within_one_subject(catalog: Catalog) -> None:
    assert pick(catalog, "subject", "time travel") == (35,)
    assert pick(catalog, "subject", "Revolution, 17") == (1, 98)
    assert pick(catalog, "subject", "Wells, H. G.") == (36,)  # a subject, not an author
    assert pick(catalog, "subject", "Fiction; Time travel") == ()  # never across two subjects


def test_bookshelf_matches_within_one_shelf(catalog: Catalog) -> None:
    assert pick(catalog, "bookshelf", "Science Fiction") == (32, 35, 36, 62, 84, 159, 164, 1013, 1951, 5230)
    assert pick(catalog, "bookshelf", "precursors of science fiction") == (84, 1951)
    assert pick(catalog, "bookshelf", "Category: Science-Fiction & Fantasy") == tuple(sorted(SF_AND_FANTASY))
    assert pick(catalog, "bookshelf", "Science-Fiction") == tuple(sorted(SF_AND_FANTASY))  # not Herland (32)
    assert pick(catalog, "bookshelf", "Littérature") == pick(catalog, "bookshelf", "FR litterature") == (6838,)
    assert pick(catalog, "bookshelf", "Crime, Thrillers and Mystery") == (1661,)  # a comma inside one shelf
    assert pick(catalog, "bookshelf", "Mystery; Category") == ()  # never across two shelves


def test_browsing_and_category_prefixes_read_as_one(catalog: Catalog) -> None:
    """The 2025 rename: `Browsing: X` shelves became `Category: X`; a query finds both."""
    assert catalog.get(1404).bookshelves[0] == "Browsing: History - American"  # an older file's row
    assert catalog.get(48003).bookshelves[0] == "Category: History - American"
    for query in ("Category: History - American", "Browsing: History - American", "History - American",
                  "category:history - american", "BROWSING:  History - American"):
        assert pick(catalog, "bookshelf", query) == (1, 1404, 14881, 48003), query
    assert pick(catalog, "bookshelf", "Category: Politics") == (1, 1404, 3261, 64307)
    assert pick(catalog, "bookshelf", "Politics") == (1, 1404, 3261, 64307)  # the reading list "Politics" too
    assert pick(catalog, "bookshelf", "Browsing: United States Law") == ()  # a reading list has no prefix


def test_a_shelf_query_finds_the_same_books_in_an_old_and_a_new_file(catalog: Catalog) -> None:
    old = parse_catalog(shelf_rows(FIXTURE.read_text(encoding="utf-8")), "old.csv")
    assert "Category: Novels" not in {s for b in old.books for s in b.bookshelves}
    for query in ("Category: Novels", "Browsing: Novels", "Novels", "Category: Science-Fiction & Fantasy",
                  "Science-Fiction & Fantasy", "Category: Crime, Thrillers and Mystery", "Science Fiction"):
        assert pick(old, "bookshelf", query) == pick(catalog, "bookshelf", query) != (), query
    novels = pick(catalog, "bookshelf", "Novels")
    assert 35 in novels and 1661 not in novels and 1 not in novels


def test_a_renamed_shelf_says_why_it_matches_nothing(catalog: Catalog) -> None:
    assert pick(catalog, "bookshelf", "Browsing: Crime/Mystery") == ()  # renamed beyond its prefix
    hint = catalog.explain_no_match(CatalogQuery("bookshelf", "Browsing: Crime/Mystery"))
    assert "renamed" in hint and '"category: crime, thrillers and mystery"' in hint


def test_the_newest_books_have_no_subjects_or_shelves(catalog: Catalog) -> None:
    sea_hawk = catalog.get(76921)
    assert (sea_hawk.subjects, sea_hawk.locc, sea_hawk.bookshelves) == ((), (), ())
    assert catalog.get(76934).bookshelves == () and catalog.get(76934).subjects == ("American poetry -- 19th century",)
    assert pick(catalog, "title", "Sea-Hawk") == pick(catalog, "author", "Rafael Sabatini") == (76921,)
    assert pick(catalog, "author", "Wyeth [Illustrator]") == (76921,)
    assert 76921 not in pick(catalog, "bookshelf", "Novels") and pick(catalog, "subject", "Sea-Hawk") == ()


def test_typographic_apostrophes_quotes_and_dashes_fold(catalog: Catalog) -> None:
    assert catalog.get(21).title == "Aesop\u2019s Fables"
    assert pick(catalog, "title", "Aesop's Fables") == pick(catalog, "title", "AESOP\u2019S") == (21,)
    assert pick(catalog, "title", "Aesop\u2018s") == pick(catalog, "title", "aesop\u02bcs") == (21,)
    assert pick(catalog, "title", "Beethoven's Letters 1790-1826") == (13272,)  # ’ and an en dash
    for dash in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212":
        assert pick(catalog, "title", f"1790{dash}1826") == (13272,), hex(ord(dash))
    assert pick(catalog, "title", '"Out of the East"') == pick(catalog, "title", "\u201cOut of the East\u201d") == (55802,)
    assert pick(catalog, "title", '"Captains Courageous"') == (2186,)  # ASCII quotes in the file
    assert pick(catalog, "title", "\u201cCaptains Courageous\u201d") == (2186,)
    assert pick(catalog, "subject", "Aesop\u2019s fables") == (21,)  # the subject has an ASCII '
    assert fold("L\u2019\u00e9t\u00e9 \u2014 \u00ab Moli\u00e8re \u00bb") == "l'ete - \" moliere \""


@pytest.mark.parametrize(
    "query",
    ["Dickens", "dickens, charles", "Charles Dickens", "CHARLES DICKENS", "Dickens, Charles, 1812-1870",
     "Dickens, Charles [Author]"],
)
def test_author_name_forms(catalog: Catalog, query: str) -> None:
    assert pick(catalog, "author", query) == DICKENS


def test_author_words_are_whole_and_dates_must_agree(catalog: Catalog) -> None:
    assert pick(catalog, "author", "Dicken") == ()
    assert pick(catalog, "author", "Dickens, Charles, 1837-1896") == ()  # his son
    for query in ("H. G. Wells", "Wells, H. G.", "Herbert George Wells", "wells"):
        assert pick(catalog, "author", query) == WELLS
    assert pick(catalog, "author", "Edward Bulwer-Lytton") == (1951,)


def test_author_accents_and_organisations(catalog: Catalog) -> None:
    assert pick(catalog, "author", "Molière") == pick(catalog, "author", "moliere") == (2536,)
    assert pick(catalog, "author", "Jóhann Sigurjónsson") == pick(catalog, "author", "Johann Sigurjonsson") == (21937,)
    assert pick(catalog, "author", "Gabriel") == (24675,)
    assert pick(catalog, "author", "Charlotte Bronte") == (1260,)
    assert pick(catalog, "author", "Central Intelligence Agency") == (35830,)
    assert pick(catalog, "author", "United States. Central Intelligence Agency") == (35830,)


def test_several_authors_are_matched_one_at_a_time(catalog: Catalog) -> None:
    assert pick(catalog, "author", "Madison") == pick(catalog, "author", "John Jay") == (1404,)
    assert pick(catalog, "author", "Alexander Madison") == ()  # two different people
    assert pick(catalog, "author", "Elsie Benedict") == pick(catalog, "author", "Ralph Paine Benedict") == (30601,)
    assert pick(catalog, "author", "Ralph Elsie") == ()


def test_roles_count_only_when_named(catalog: Catalog) -> None:
    assert pick(catalog, "author", "Rackham") == ()
    assert pick(catalog, "author", "Rackham, Arthur [Illustrator]") == (24022, 29420)
    assert pick(catalog, "author", "arthur rackham [illustrator]") == (24022, 29420)
    assert pick(catalog, "author", "Hapgood") == ()
    assert pick(catalog, "author", "Hapgood [Translator]") == (135, 2610)
    assert pick(catalog, "author", "Cruikshank [Illustrator]") == (730,)
    assert pick(catalog, "author", "Nohl [Editor]") == pick(catalog, "author", "Lady Wallace [Translator]") == (13272,)
    assert pick(catalog, "author", "Hall, J. Lesslie [Translator]") == (16328,)
    assert pick(catalog, "author", "Dickens [Illustrator]") == ()
    hint = catalog.explain_no_match(CatalogQuery("author", "Arthur Rackham"))
    assert '[Illustrator]' in hint and 'author: "Arthur Rackham [Illustrator]"' in hint


def test_roles_with_commas_and_unknown_roles(catalog: Catalog) -> None:
    rundell = catalog.get(23650).creators[1]
    assert (rundell.name, rundell.dates, rundell.role) == (
        "Rundell, Maria Eliza Ketelby", "1745-1828", "Author of introduction, etc.")
    assert pick(catalog, "author", "Rundell") == ()  # not an author proper
    assert pick(catalog, "author", "Maria Rundell [Author of introduction, etc.]") == (23650,)
    assert pick(catalog, "author", "Rundell [author of introduction, etc.]") == (23650,)
    assert pick(catalog, "author", "Rundell [Author of introduction]") == ()  # the role as written
    assert pick(catalog, "author", "Andrew Lang") == ()
    assert pick(catalog, "author", "Andrew Lang [Unknown role]") == (44280,)
    hint = catalog.explain_no_match(CatalogQuery("author", "Andrew Lang"))
    assert "[Unknown role]" in hint and 'author: "Andrew Lang [Unknown role]"' in hint


def test_author_dates_in_every_form(catalog: Catalog) -> None:
    forms = {
        21: ("Aesop", "621? BCE-565? BCE"), 6130: ("Homer", "751? BCE-651? BCE"),
        11417: ("Marie, de France", "active 12th century"), 23650: ("Jarrin, W. A.", "active 1799-1828"),
        972: ("Bierce, Ambrose", "1842-1914?"), 14263: ("Lane, Elinor Macartney", "-1909"),
    }
    for book_id, (name, dates) in forms.items():
        first = catalog.get(book_id).creators[0]
        assert (first.name, first.dates) == (name, dates), book_id
        assert pick(catalog, "author", name) == (book_id,), name  # dates ignored when not asked
        assert pick(catalog, "author", f"{name}, {dates}") == (book_id,), dates  # equal when asked
    assert pick(catalog, "author", "Aesop, 621? bce - 565? bce") == (21,)  # case and spaces
    assert pick(catalog, "author", "Aesop, 620? BCE-565? BCE") == ()
    assert pick(catalog, "author", "Jarrin, 1799-1828") == ()  # active dates are not life dates
    assert pick(catalog, "author", "Marie de France") == (11417,)
    moore, gleeson = catalog.get(76934).creators[2:]
    assert (moore.dates, moore.role, gleeson.dates, gleeson.role) == ("1869-", "Illustrator", "-1919", "Editor")
    assert pick(catalog, "author", "Moore, John, 1869- [Illustrator]") == (76934,)
    assert pick(catalog, "author", "Gleeson, -1919 [Editor]") == (76934,)
    assert pick(catalog, "author", "Homer, 1869-") == ()


def test_organisations_that_end_in_a_year(catalog: Catalog) -> None:
    committee = catalog.get(48003).creators[0]
    assert (committee.name, committee.dates) == ("United States. Committee on Public Information", "1917-1919")
    for query in ("Committee on Public Information", "United States. Committee on Public Information",
                  "Committee on Public Information, 1917-1919"):
        assert pick(catalog, "author", query) == (48003,), query
    assert pick(catalog, "author", "Committee on Public Information, 1917") == ()
    conference = catalog.get(64307).creators[0]
    assert (conference.name, conference.dates) == ("Paris Peace Conference (1919-1920)", "")
    for query in ("Paris Peace Conference", "Paris Peace Conference (1919-1920)", "Peace Conference 1919"):
        assert pick(catalog, "author", query) == (64307,), query
    assert pick(catalog, "author", "Paris Peace Conference, 1919-1920") == ()  # a year of the name, not dates


@pytest.mark.parametrize(
    ("text", "name", "dates", "role"),
    [
        ("Aesop, 621? BCE-565? BCE", "Aesop", "621? BCE-565? BCE", ""),
        ("Smith, John, active 1799-1828", "Smith, John", "active 1799-1828", ""),
        ("Smith, John, fl. 1650", "Smith, John", "fl. 1650", ""),
        ("Smith, John, 1812\u20131870", "Smith, John", "1812\u20131870", ""),  # an en dash
        ("Great Britain. Army. Regiment of Foot, 42nd", "Great Britain. Army. Regiment of Foot, 42nd", "", ""),
        ("United States. Congress (63rd, 2nd session : 1913-1914)",
         "United States. Congress (63rd, 2nd session : 1913-1914)", "", ""),
        ("Doe, Jane, 1900-1980 [Author of introduction, etc.]", "Doe, Jane", "1900-1980", "Author of introduction, etc."),
        ("[Unknown role]", "", "", "Unknown role"),
        ("Doe, Jane [Editor] [Translator]", "Doe, Jane [Editor]", "", "Translator"),
        ("Doe, Jane, [", "Doe, Jane, [", "", ""),
        (",,, 1900", "", "1900", ""),
        ("", "", "", ""),
    ],
)
def test_creators_never_crash_and_keep_names_whole(text: str, name: str, dates: str, role: str) -> None:
    creator = parse_creator(text)
    assert (creator.name, creator.dates, creator.role) == (name, dates, role)
    assert all(w and " " not in w for w in creator.words)


def test_language_filter(catalog: Catalog) -> None:
    assert pick(catalog, "author", "Victor Hugo") == (135, 2610, 6838)
    assert pick(catalog, "author", "Victor Hugo", "fr") == (6838,)
    assert pick(catalog, "author", "Victor Hugo", "en") == (135, 2610)
    assert pick(catalog, "title", "Two Latin Plays", "la") == pick(catalog, "title", "Two Latin Plays", "en") == (31894,)
    assert pick(catalog, "title", "Two Latin Plays", "de") == ()
    hint = catalog.explain_no_match(CatalogQuery("title", "Two Latin Plays", "de"))
    assert "in en, la but not in de" in hint


def test_ids_ascending_whatever_the_file_order_and_limit_takes_the_lowest(catalog: Catalog) -> None:
    header, *rows = FIXTURE.read_text(encoding="utf-8").split("\n")
    records: list[str] = []
    for row in rows:  # re-join the rows whose title spans lines, then reverse the order
        if records and not row.split(",", 1)[0].isdigit():
            records[-1] += "\n" + row
        elif row:
            records.append(row)
    reversed_catalog = parse_catalog("\n".join([header, *reversed(records)]) + "\n", "reversed.csv")
    for query in ("Dickens", "Wells", "Victor Hugo"):
        assert pick(reversed_catalog, "author", query) == pick(catalog, "author", query)
    assert pick(catalog, "author", "Dickens", limit=3) == (46, 98, 730)
    assert pick(catalog, "author", "Dickens", "en", limit=100) == DICKENS
    assert catalog.matches(CatalogQuery("author", "Dickens", limit=2)) == DICKENS  # before limit


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("colour", "red"), "unknown selector"),
        (("title", "  "), "is empty"),
        (("author", "1812-1870"), "holds no name"),
        (("author", "[Illustrator]"), "holds no name"),
        (("title", "x", "EN"), "lower-case 2-3 letter code"),
        (("title", "x", "english"), "lower-case 2-3 letter code"),
        (("title", "x", None, 0), "positive whole number"),
    ],
)
def test_bad_queries_are_refused(args: tuple, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        CatalogQuery(*args)


def test_describe_reads_like_the_book_list() -> None:
    assert CatalogQuery("author", 'Dickens, "Boz"', "en", 5).describe() == 'author: "Dickens, \\"Boz\\"", language: en, limit: 5'
    assert CatalogQuery("bookshelf", "Science Fiction").describe() == 'bookshelf: "Science Fiction"'
