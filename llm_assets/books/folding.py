"""How catalog text is compared: folding, bookshelf names, and creators (``Lastname, Firstname, dates [Role]``).

A reader types ``Aesop's Fables``, ``Moliere`` or ``Novels``; the catalog says ``Aesop’s Fables``,
``Molière`` and ``Category: Novels`` (``Browsing: Novels`` in files from before mid-2025). These
functions turn both sides into the same comparable form, so the selection rules in
:mod:`llm_assets.books.catalog` can be plain substring and word tests.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property

# Typographic quotes, apostrophes and dashes -> their ASCII form (the keyboard's). Applied before
# NFKD, which would otherwise leave most of them as they are (or turn the acute accent into a space).
_TYPOGRAPHY = str.maketrans(
    {
        **dict.fromkeys("\u2018\u2019\u201a\u201b\u2032\u02bc\u00b4\u2039\u203a", "'"),
        **dict.fromkeys("\u201c\u201d\u201e\u201f\u2033\u00ab\u00bb", '"'),
        **dict.fromkeys("\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d", "-"),
    }
)
# The automated shelves' prefix: "Browsing: " until mid-2025, "Category: " since. Both read as one.
SHELF_PREFIXES = ("browsing:", "category:")
SHELF_PREFIX = "category: "
_ROLE = re.compile(r"\[([^\[\]]*)\]\s*$")
_WORD = re.compile(r"\w+")
_DATE_TOKEN = re.compile(r"[^\s\-]+")
# Words a life-dates part may hold besides numbers: "621? BCE-565? BCE", "active 1799-1828",
# "fl. 1650", "ca. 1400-1471", "approximately 1340-1400", "active 12th century".
_DATE_WORDS = frozenset(
    {"bce", "bc", "ce", "ad", "active", "fl", "ca", "approximately", "century", "cent", "or", "b", "d"}
)
_ORDINAL = re.compile(r"\d+(st|nd|rd|th)")


def fold(text: str) -> str:
    """Case, accents, typographic quotes and dashes, and whitespace removed from the comparison.

    Folding happens on both sides (catalog and query), so ``Aesop's`` finds ``Aesop’s``,
    ``1790-1826`` finds ``1790–1826`` and ``moliere`` finds ``Molière``. Letters with no accent to
    drop (``þ``, ``ø``) stay as they are. The result never holds a newline or a tab.
    """
    if not text.isascii():
        decomposed = unicodedata.normalize("NFKD", text.translate(_TYPOGRAPHY))
        text = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(text.casefold().split())


def shelf_key(shelf: str) -> str:
    """A bookshelf folded, with ``Browsing:`` and ``Category:`` read as the same prefix.

    Project Gutenberg renamed its automated shelves from ``Browsing: X`` to ``Category: X`` in
    2025; a book list written against one file keeps working against the other.
    """
    folded = fold(shelf)
    for prefix in SHELF_PREFIXES:
        if folded.startswith(prefix):
            return SHELF_PREFIX + folded[len(prefix):].lstrip()
    return folded


def is_dates(part: str) -> bool:
    """Whether one comma-separated part of a creator is its dates (``1812-1870``, ``-1878``,
    ``1869-``, ``1842-1914?``, ``621? BCE-565? BCE``, ``active 1799-1828``), not a name.

    Only numbers and the few words dates use qualify, so ``Regiment of Foot, 42nd`` or
    ``Congress (63rd, 2nd session : 1913-1914)`` keep every word in the name.
    """
    if not any(ch.isdigit() for ch in part):
        return False
    tokens = [t.rstrip("?.") for t in _DATE_TOKEN.findall(fold(part))]
    century = "century" in tokens or "cent" in tokens
    return all(t.isdigit() or t in _DATE_WORDS or (century and _ORDINAL.fullmatch(t)) for t in tokens)


def dates_key(dates: str) -> str:
    """Dates as compared: folded, whitespace removed (``1812 - 1870`` equals ``1812-1870``)."""
    return "".join(fold(dates).split())


def role_key(role: str) -> str:
    """A role as compared: folded; ``Author`` is the same as no role (the author proper)."""
    folded = fold(role)
    return "" if folded == "author" else folded


@dataclass(frozen=True)
class Creator:
    """One entry of the ``Authors`` column: ``Lastname, Firstname, dates [Role]``."""

    name: str  # "Dickens, Charles": without dates and role
    dates: str  # "1812-1870", "-1878", "621? BCE-565? BCE", "active 1799-1828"; "" when not given
    role: str  # "Illustrator", "Author of introduction, etc.", "Unknown role"; "" for the author proper
    raw: str

    @property
    def is_author(self) -> bool:
        return not self.role

    @cached_property
    def words(self) -> frozenset[str]:
        """The name's words, folded (letters and digits; punctuation and brackets separate them)."""
        return frozenset(_WORD.findall(fold(self.name)))


def parse_creator(text: str) -> Creator:
    """Read one creator (or an author query, which is written the same way).

    A trailing ``[Role]`` is the role; a trailing comma part that :func:`is_dates` is the dates;
    the rest is the name. Any text gives a Creator: a malformed entry is read as a name.
    """
    raw = " ".join(text.split())
    rest, role = raw, ""
    found = _ROLE.search(raw) if raw.endswith("]") else None
    if found:
        rest, role = raw[: found.start()].strip(), found.group(1).strip()
    parts = [part.strip() for part in rest.split(",")]
    dates = ""
    if len(parts) > 1 and is_dates(parts[-1]):
        dates = parts.pop()
    return Creator(name=", ".join(p for p in parts if p), dates=dates, role=role, raw=raw)


def parse_creators(field: str) -> tuple[Creator, ...]:
    """Every creator of an ``Authors`` field (``; ``-joined)."""
    return tuple(parse_creator(item) for item in split_list(field))


def split_list(field: str) -> tuple[str, ...]:
    """A ``; ``-joined catalog field as its items, empty items dropped."""
    return tuple(filter(None, map(str.strip, field.split("; ")))) if field else ()
