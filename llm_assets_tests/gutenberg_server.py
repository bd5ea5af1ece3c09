"""A local Project Gutenberg mirror that misbehaves on demand, and a generator of Gutenberg books.

Tests across the project import this: the books stage's unit tests, the Dagster layer's tests and
the end-to-end pipeline test all need "Gutenberg as it is" (odd headers, encodings, a server that
sometimes fails) without the network.

    with GutenbergMirror(root=shared / "mirror") as mirror:      # serve a folder in mirror layout
        mirror.add_book(1, make_book(1, style="wrapped").raw)    # and/or generated books
        mirror.fail(1, status=503, times=2)                      # then faults, per path
        client = GutenbergClient(mirror.url, backoff_seconds=0.01, timeout=0.5)
        ...
        assert mirror.count(1) == 3

Faults are queued per path and each is used for ``times`` requests (``None``: for good), in the
order added. The request log (``mirror.requests``) lets tests count requests and check headers.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

if TYPE_CHECKING:
    from llm_assets.books.gutenberg import GutenbergClient

# --- the mirror --------------------------------------------------------------------------------


def fast_client(mirror: GutenbergMirror, **kwargs) -> GutenbergClient:
    """A client for a test mirror: short timeouts and back-off, so faults cost milliseconds."""
    from llm_assets.books.gutenberg import GutenbergClient

    options = {"timeout": 0.5, "max_attempts": 4, "backoff_seconds": 0.01, **kwargs}
    return GutenbergClient(mirror.url, **options)


def book_path(book_id: int) -> str:
    """The mirror layout: ``/cache/epub/<id>/pg<id>.txt``."""
    return f"/cache/epub/{book_id}/pg{book_id}.txt"


CATALOG_PATH = "/cache/epub/feeds/pg_catalog.csv"  # Gutenberg's catalog, as CSV


HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>Project Gutenberg</title></head>\n"
    b"<body><p>Are you a robot? Please verify.</p></body></html>\n"
)


@dataclass
class Fault:
    """One misbehaviour. ``kind``: status | truncate | html | slow | empty | reset."""

    kind: str
    status: int = 503
    retry_after: str | None = None  # the Retry-After header, verbatim
    delay: float = 0.0  # slow: seconds before the response starts
    keep: float = 0.5  # truncate: fraction of the body sent before the connection closes
    times: int | None = 1  # requests this fault answers; None: every request from now on


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    headers: dict[str, str]
    time: float  # time.monotonic() when the request arrived


@dataclass
class _State:
    root: Path | None
    files: dict[str, tuple[bytes, str]] = field(default_factory=dict)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    requests: list[LoggedRequest] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeGutenberg/1.0"
    state: _State  # set on the subclass made per server

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the base class's name
        pass  # keep test output clean; the request log records what matters

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = unquote(urlsplit(self.path).path)
        with self.state.lock:
            self.state.requests.append(
                LoggedRequest("GET", path, dict(self.headers.items()), time.monotonic())
            )
            fault = self._take_fault(path)
        try:
            self._respond(path, fault)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a timeout test): nothing to do

    def _take_fault(self, path: str) -> Fault | None:
        queue = self.state.faults.get(path)
        if not queue:
            return None
        fault = queue[0]
        if fault.times is not None:
            fault.times -= 1
            if fault.times <= 0:
                queue.pop(0)
        return fault

    def _lookup(self, path: str) -> tuple[bytes, str] | None:
        with self.state.lock:
            found = self.state.files.get(path)
        if found is not None:
            return found
        root = self.state.root
        if root is None:
            return None
        target = (root / path.lstrip("/")).resolve()
        if not target.is_relative_to(root.resolve()) or not target.is_file():
            return None
        return target.read_bytes(), "text/plain; charset=utf-8"

    def _send(self, status: int, body: bytes, content_type: str, extra: dict[str, str] | None = None,
              length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()

    def _respond(self, path: str, fault: Fault | None) -> None:
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
            fault = None
        if fault is not None and fault.kind == "reset":
            self.close_connection = True
            return  # close without a response: a connection error for the client
        if fault is not None and fault.kind == "status":
            extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
            self._send(fault.status, f"HTTP {fault.status}\n".encode(), "text/plain", extra)
            return
        if fault is not None and fault.kind == "html":
            self._send(200, HTML_PAGE, "text/html; charset=utf-8")
            return
        if fault is not None and fault.kind == "empty":
            self._send(200, b"", "text/plain; charset=utf-8")
            return
        found = self._lookup(path)
        if found is None:
            self._send(404, b"Not Found\n", "text/plain")
            return
        body, content_type = found
        if fault is not None and fault.kind == "truncate":
            self.close_connection = True
            self._send(200, body[: int(len(body) * fault.keep)], content_type, length=len(body))
            return
        self._send(200, body, content_type)


class GutenbergMirror:
    """A ThreadingHTTPServer on 127.0.0.1 (port chosen by the OS) in a background thread."""

    def __init__(self, root: Path | None = None) -> None:
        self._state = _State(root=Path(root) if root is not None else None)
        handler = type("Handler", (_Handler,), {"state": self._state})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # lifecycle
    def start(self) -> GutenbergMirror:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> GutenbergMirror:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    # content
    def add_book(self, book_id: int, raw: bytes) -> str:
        """Serve ``raw`` at the book's mirror path; returns the path."""
        return self.add_file(book_path(book_id), raw)

    def add_file(self, path: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> str:
        with self._state.lock:
            self._state.files[path] = (body, content_type)
        return path

    def add_catalog(self, body: bytes) -> str:
        """Serve ``body`` as ``pg_catalog.csv`` (text/csv, as gutenberg.org sends it)."""
        return self.add_file(CATALOG_PATH, body, "text/csv; charset=utf-8")

    def remove_book(self, book_id: int) -> None:
        with self._state.lock:
            self._state.files.pop(book_path(book_id), None)

    # faults
    def add_fault(self, target: int | str, fault: Fault) -> None:
        path = book_path(target) if isinstance(target, int) else target
        with self._state.lock:
            self._state.faults.setdefault(path, []).append(fault)

    def fail(self, target: int | str, status: int = 503, times: int | None = 1,
             retry_after: str | None = None) -> None:
        self.add_fault(target, Fault("status", status=status, times=times, retry_after=retry_after))

    def truncate(self, target: int | str, times: int | None = 1, keep: float = 0.5) -> None:
        self.add_fault(target, Fault("truncate", keep=keep, times=times))

    def serve_html(self, target: int | str, times: int | None = None) -> None:
        self.add_fault(target, Fault("html", times=times))

    def serve_empty(self, target: int | str, times: int | None = None) -> None:
        self.add_fault(target, Fault("empty", times=times))

    def slow(self, target: int | str, delay: float, times: int | None = 1) -> None:
        self.add_fault(target, Fault("slow", delay=delay, times=times))

    def reset(self, target: int | str, times: int | None = 1) -> None:
        self.add_fault(target, Fault("reset", times=times))

    def clear_faults(self) -> None:
        with self._state.lock:
            self._state.faults.clear()

    # the request log
    @property
    def requests(self) -> list[LoggedRequest]:
        with self._state.lock:
            return list(self._state.requests)

    def count(self, target: int | str | None = None) -> int:
        """Requests so far, in all or for one book id / path."""
        if target is None:
            return len(self.requests)
        path = book_path(target) if isinstance(target, int) else target
        return sum(1 for r in self.requests if r.path == path)

    def clear_log(self) -> None:
        with self._state.lock:
            self._state.requests.clear()


# --- the book generator ------------------------------------------------------------------------

STYLES = ("modern", "modern_col0", "this", "nospace", "wrapped", "comma", "smallprint", "none")

_WORDS = {
    "en": "the of and to a in that he was it his her with as had for she not but at on be "
    "him they you which by all from this were so said one have there would when been what "
    "fog river house morning letter silence garden window traveller promise evening".split(),
    "fr": "le la les de des et un une il elle était dans que qui pour pas sur au avec père "
    "mère château forêt rivière fenêtre été déjà très où garçon âme noël français".split(),
    "nl": "de het een en van in is dat op te zijn met voor niet aan er maar hij zij was "
    "huis water brug molen kerk zee dijk straat oogst twee één geëerd ruïne".split(),
    "la": "et in est non ad cum quod sed ut qui quae per ex de nōn tē rēx puella "
    "agricola rosa via terra aqua silva bellum pāx hōra fīlius".split(),
    "is": "og að er í á sem það með hann hún var til en um ekki fjall dalur þú þeir "
    "ég við bær hraun kona maður sól".split(),
}


@dataclass(frozen=True)
class GeneratedBook:
    """A generated Gutenberg file and the body a perfect cleaner would return."""

    book_id: int
    style: str
    raw: bytes
    body: str  # LF line endings, no surrounding blank lines
    body_first_line: int  # 1-based, in the decoded file
    body_last_line: int

    @property
    def body_lines(self) -> list[str]:
        return self.body.split("\n")


def make_body(seed: int, language: str = "en", paragraphs: int = 12) -> str:
    """Chapters of pseudo-random prose, wrapped at 70 columns, with the features real bodies have
    (centred headings, a ``*  *  *`` break, an illustration tag, "THE END")."""
    rng = random.Random(seed)
    words = _WORDS[language]
    out: list[str] = []
    for p in range(paragraphs):
        if p % 4 == 0:
            out += [f"CHAPTER {p // 4 + 1}.", ""]
        if p == 5:
            out += ["                    *       *       *       *       *", ""]
        if p == 7:
            out += ["[Illustration: _" + " ".join(rng.choices(words, k=4)) + "_]", ""]
        sentence = " ".join(rng.choices(words, k=rng.randint(25, 90)))
        line = ""
        for word in sentence.split():
            if len(line) + len(word) + 1 > 70:
                out.append(line)
                line = word
            else:
                line = f"{line} {word}" if line else word.capitalize()
        out += [line + ".", ""]
    out.append("THE END")
    return "\n".join(out)


_LICENCE = """Updated editions will replace the previous one--the old editions
will be renamed.

Creating the works from public domain print editions means that no
one owns a United States copyright in these works, so the Foundation
(and you!) can copy and distribute it in the United States without
permission and without paying copyright royalties.  Special rules,
set forth in the General Terms of Use part of this license, apply to
copying and distributing Project Gutenberg-tm electronic works to
protect the PROJECT GUTENBERG-tm concept and trademark.

*** START: FULL LICENSE ***

THE FULL PROJECT GUTENBERG LICENSE
PLEASE READ THIS BEFORE YOU DISTRIBUTE OR USE THIS WORK

Section 1.  General Terms of Use and Redistributing Project Gutenberg-tm
electronic works

Most people start at our Web site which has the main PG search facility:

     http://www.gutenberg.org

This Web site includes information about Project Gutenberg-tm,
including how to make donations to the Project Gutenberg Literary
Archive Foundation, how to help produce our new eBooks, and how to
subscribe to our email newsletter to hear about new eBooks.
"""

_SMALL_PRINT = """***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***
Why is this "Small Print!" statement here?  You know: lawyers.
They tell us you might sue us if there is something wrong with
your copy of this etext, even if you got it for free from
someone other than us, and even if what's wrong is not our
fault.

INDEMNITY
You will indemnify and hold the Project, its directors,
officers, members and agents harmless from all liability, cost
and expense, including legal fees.

*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*"""


def _header_footer(style: str, book_id: int, title: str, author: str, language: str) -> tuple[str, str]:
    """(everything before the body, everything after it) for one header style."""
    upper = title.upper()
    lang = {"en": "English", "fr": "French", "nl": "Dutch", "la": "Latin", "is": "Icelandic"}[language]
    if style in ("modern", "modern_col0"):
        indent = "            " if style == "modern" else ""
        pad = "        \n" if style == "modern" else ""
        head = (
            f"The Project Gutenberg eBook of {title}\n    \n"
            "This ebook is for the use of anyone anywhere in the United States and\n"
            "most other parts of the world at no cost and with almost no restrictions\n"
            "whatsoever. You may copy it, give it away or re-use it under the terms\n"
            "of the Project Gutenberg License included with this ebook or online\n"
            "at www.gutenberg.org.\n\n"
            f"Title: {title}\n\n\nAuthor: {author}\n\n"
            f"Release date: March 1, 2001 [eBook #{book_id}]\n"
            "                Most recently updated: December 6, 2023\n\n"
            f"Language: {lang}\n\nCredits: Produced by A. Volunteer\n\n\n"
            f"*** START OF THE PROJECT GUTENBERG EBOOK {upper} ***\n\n\n\n"
            "Produced by A. Volunteer\n\n\n\n"
        )
        foot = (
            f"\n\n\n\n\n{pad}{indent}*** END OF THE PROJECT GUTENBERG EBOOK {upper} ***\n{pad}\n    \n\n"
            + _LICENCE
        )
        return head, foot
    if style == "this":
        head = (
            f"Project Gutenberg's {title}, by {author}\n\n"
            "This eBook is for the use of anyone anywhere at no cost and with\n"
            "almost no restrictions whatsoever.  You may copy it, give it away or\n"
            "re-use it under the terms of the Project Gutenberg License included\n"
            "with this eBook or online at www.gutenberg.net\n\n\n"
            f"Title: {title}\n\nAuthor: {author}\n\n"
            f"Release Date: May 5, 2008 [EBook #{book_id}]\n\nLanguage: {lang}\n\n"
            "Character set encoding: ISO-8859-1\n\n"
            f"*** START OF THIS PROJECT GUTENBERG EBOOK {upper} ***\n\n\n\n\n"
            "Produced by Branko Collin and the Online Distributed\n"
            "Proofreading Team at http://www.pgdp.net\n\n\n\n\n\n"
        )
        foot = (
            "\n\n\n\n\n\n"
            f"End of the Project Gutenberg EBook of {title}, by\n{author}\n\n"
            f"*** END OF THIS PROJECT GUTENBERG EBOOK {upper} ***\n\n"
            f"***** This file should be named {book_id}-8.txt or {book_id}-8.zip *****\n"
            "This and all associated files of various formats will be found in:\n"
            f"        http://www.gutenberg.org/{book_id}/\n\n" + _LICENCE
        )
        return head, foot
    if style in ("nospace", "wrapped"):
        marker_title = upper if style == "nospace" else f"{upper} AND THE LONG\nSUBTITLE"
        head = (
            f"The Project Gutenberg EBook of {title}, by {author}\n\n"
            "This eBook is for the use of anyone anywhere at no cost and with\n"
            "almost no restrictions whatsoever.\n\n"
            f"Title: {title}\n\nAuthor: {author}\n\n"
            f"Release Date: February 6, 2005 [EBook #{book_id}]\n\n"
            f"Language: {lang}\n\n\n"
            f"***START OF THE PROJECT GUTENBERG EBOOK {marker_title}***\n\n\n"
            "E-text prepared by Emmy and Ben Beasley, and the Project\n"
            "Gutenberg Online Distributed Proofreading Team\n\n\n\n"
            "Note: Project Gutenberg also has an HTML version of this\n"
            "      file which includes the original illustrations.\n"
            f"      See {book_id}-h.htm or {book_id}-h.zip:\n"
            f"      (http://www.gutenberg.net/dirs/{book_id}/{book_id}-h/{book_id}-h.htm)\n\n\n\n\n"
        )
        foot = (
            "\n\n\n\n"
            f"***END OF THE PROJECT GUTENBERG EBOOK {marker_title}***\n\n\n"
            f"******* This file should be named {book_id}.txt or {book_id}.zip *******\n\n"
            + _LICENCE
        )
        return head, foot
    if style == "comma":
        head = (
            f"The Project Gutenberg EBook of {title}, by {author}\n\n"
            "This eBook is for the use of anyone anywhere at no cost and with\n"
            "almost no restrictions whatsoever.  See the legal small print.\n\n"
            f"Title: {title}\n\nAuthor: {author}\n\nEdition: 12\n\n"
            "Character set encoding: ASCII\n\n"
            f"*** START OF THE PROJECT GUTENBERG EBOOK, {upper} ***\n\n\n\n\n"
        )
        foot = (
            "\n\n\n\n\n"
            f"*** END OF THE PROJECT GUTENBERG EBOOK, {upper} ***\n\n"
            f"This file should be named book{book_id}.txt\n\n"
            + _SMALL_PRINT.replace("ETEXTS", "EBOOKS")
            + "\n"
        )
        return head, foot
    if style == "smallprint":
        head = (
            f"The Project Gutenberg Etext of {title} by {author}\n"
            "#3 in our series\n\n\n"
            "Copyright laws are changing all over the world, be sure to check\n"
            "the copyright laws for your country before posting these files!!\n\n"
            "**Welcome To The World of Free Plain Vanilla Electronic Texts**\n\n"
            f"{upper}\n\nJuly, 1997  [Etext #{book_id}]\n\n\n"
            "We need your donations more than ever!\n\n\n"
            + _SMALL_PRINT
            + "\n\n\n\n"
            "This etext was prepared by A. Volunteer from the 1903\n"
            "edition, email volunteer@example.org\n\n\n\n"
        )
        foot = f"\n\n\n\n\nEnd of The Project Gutenberg Etext of {title} by {author}\n\n"
        return head, foot
    if style == "none":
        return "", "\n"
    raise ValueError(f"unknown style {style!r}; choose one of {', '.join(STYLES)}")


def make_book(
    book_id: int,
    style: str = "modern",
    *,
    language: str = "en",
    encoding: str = "utf-8-sig",
    newline: str = "\r\n",
    paragraphs: int = 12,
    title: str | None = None,
    author: str = "Ann Author",
    body: str | None = None,
) -> GeneratedBook:
    """A Gutenberg-style file for ``book_id`` in one of :data:`STYLES`.

    ``encoding`` is any Python codec (``utf-8``, ``utf-8-sig`` for a BOM, ``latin-1``); the body's
    language must be encodable in it (Latin macrons are not Latin-1).
    """
    title = title or f"The Tale of Book {book_id}"
    body = body if body is not None else make_body(book_id, language, paragraphs)
    head, foot = _header_footer(style, book_id, title, author, language)
    text = head + body + "\n" + foot
    first = head.count("\n") + 1
    last = first + body.count("\n")
    raw = text.replace("\n", newline).encode(encoding)
    return GeneratedBook(book_id, style, raw, body, first, last)


def make_books(ids: Sequence[int], **kwargs) -> dict[int, GeneratedBook]:
    """One generated book per id, cycling through the marked styles (all but "none") for variety."""
    style = kwargs.pop("style", None)
    marked = [s for s in STYLES if s != "none"]
    return {
        book_id: make_book(book_id, style or marked[i % len(marked)], **kwargs)
        for i, book_id in enumerate(ids)
    }


def write_raw_selection(raw_dir: Path, books: Sequence[tuple[int, bytes]]) -> None:
    """Raw files and the books.json that raw_books would have left, without a download."""
    raw_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for book_id, raw in books:
        (raw_dir / f"{book_id}.txt").write_bytes(raw)
        entries.append({"id": book_id, "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest(), "url": "x"})
    (raw_dir / "books.json").write_text(json.dumps({"books": entries, "skipped": []}))
