"""Download Project Gutenberg books politely, verifiably and only once.

Gutenberg is a volunteer-run site: its robot policy asks for at least two seconds between requests
and a client that says who it is. Mirrors and test servers need no such pause. Downloads are
checked before they are trusted (a truncated body, an HTML error page or an empty file is never
cached as a book), written atomically, and recorded by size and SHA-256 in ``index.json`` so an
unchanged book list costs no request at all.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from llm_assets import __version__
from llm_assets.books.cleaning import SELECTION_FILE, atomic_write

log = logging.getLogger(__name__)

GUTENBERG_ORG = "https://www.gutenberg.org"
USER_AGENT = f"llm-assets/{__version__} (Project Gutenberg corpus downloader; python-requests)"
INDEX_FILE = "index.json"
GUTENBERG_MIN_INTERVAL = 2.0  # seconds between requests to gutenberg.org (its robot policy)
MAX_RETRY_AFTER = 120.0  # never sleep longer than this on a server's Retry-After
_CHUNK = 1 << 16


class BookUnavailableError(RuntimeError):
    """A book could not be had from any URL tried; nothing was cached for it."""

    def __init__(self, book_id: int, urls_tried: Sequence[str], reason: str) -> None:
        self.book_id = book_id
        self.urls_tried = tuple(urls_tried)
        self.reason = reason
        super().__init__(
            f"Gutenberg book {book_id} is unavailable: {reason}. URLs tried: "
            f"{', '.join(self.urls_tried)}. Check the id at {GUTENBERG_ORG}/ebooks/{book_id}, "
            "remove it from the book list, or set skip_unavailable to skip such books."
        )


class NotABookError(BookUnavailableError):
    """Something came back, but it is not a plain-text book (HTML page, empty, absurdly large)."""


class FileUnavailableError(RuntimeError):
    """A file other than a book (the catalog) could not be had from the mirror."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"{url} is unavailable: {reason}. Check GUTENBERG_MIRROR and try again later.")


class _Transient(Exception):
    """Worth retrying: connection error, timeout, 5xx, 429, body cut short."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Missing(Exception):
    """Not worth retrying this URL (404, 410, other 4xx); another URL may still have the book."""


class _Invalid(Exception):
    """The response is not a book."""


@dataclass(frozen=True)
class DownloadedBook:
    book_id: int
    path: Path
    size: int
    sha256: str
    url: str
    fetched: bool  # False: served from the local cache, no request made


@dataclass(frozen=True)
class DownloadReport:
    books: tuple[DownloadedBook, ...]  # in list order, only the ones available
    skipped: tuple[tuple[int, str], ...]  # (book id, reason) when skip_unavailable=True
    requests: int  # HTTP requests made, retries included
    bytes_downloaded: int
    seconds: float


ProgressFn = Callable[[int, int, DownloadedBook], None]


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delay-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _check_book_id(book_id: int) -> int:
    if isinstance(book_id, bool) or not isinstance(book_id, int) or book_id <= 0:
        raise ValueError(f"Gutenberg book ids are positive integers, got {book_id!r}.")
    return book_id


def _looks_like_html(head: bytes) -> bool:
    start = head.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return start.startswith((b"<!doctype", b"<html", b"<head", b"<?xml")) or b"<html" in start[:512]


class GutenbergClient:
    """HTTP client for one Gutenberg mirror: retries, pacing, validation; no caching here."""

    def __init__(
        self,
        mirror: str = GUTENBERG_ORG,
        *,
        timeout: float = 30.0,
        max_attempts: int = 5,
        backoff_seconds: float = 1.0,
        min_interval: float | None = None,  # None: 2 s on gutenberg.org, 0 elsewhere
        max_bytes: int = 64 * 2**20,
        user_agent: str | None = None,
    ) -> None:
        parsed = urlparse(mirror)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(
                f"Gutenberg mirror {mirror!r} is not an http(s) URL: set GUTENBERG_MIRROR to a base "
                "URL such as https://www.gutenberg.org."
            )
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}.")
        self.mirror = mirror.rstrip("/")
        self.is_gutenberg_org = parsed.hostname == "gutenberg.org" or parsed.hostname.endswith(
            ".gutenberg.org"
        )
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self.min_interval = (
            (GUTENBERG_MIN_INTERVAL if self.is_gutenberg_org else 0.0)
            if min_interval is None
            else min_interval
        )
        self.max_bytes = max_bytes
        self.user_agent = user_agent or USER_AGENT
        self.requests_made = 0
        self._session = requests.Session()
        self._session.headers["User-Agent"] = self.user_agent
        self._lock = threading.Lock()
        self._last_request: float | None = None

    def close(self) -> None:
        self._session.close()

    def urls_for(self, book_id: int) -> list[str]:
        """The mirror layout URL first; gutenberg.org also serves older files elsewhere."""
        _check_book_id(book_id)
        urls = [f"{self.mirror}/cache/epub/{book_id}/pg{book_id}.txt"]
        if self.is_gutenberg_org:
            urls += [
                f"{self.mirror}/files/{book_id}/{book_id}-0.txt",
                f"{self.mirror}/ebooks/{book_id}.txt.utf-8",
            ]
        return urls

    def fetch(self, book_id: int) -> tuple[bytes, str]:
        """(body, url) of the first URL that yields a book; raises BookUnavailableError."""
        urls = self.urls_for(book_id)
        reasons: list[str] = []
        not_a_book = False
        for url in urls:
            try:
                return self._get_with_retries(url), url
            except _Missing as exc:
                reasons.append(f"{url}: {exc}")
            except _Invalid as exc:
                not_a_book = True
                reasons.append(f"{url}: not a book ({exc})")
            except _Transient as exc:
                reasons.append(f"{url}: {exc} (gave up after {self.max_attempts} attempts)")
        error = NotABookError if not_a_book else BookUnavailableError
        raise error(book_id, urls, "; ".join(reasons))

    def fetch_file(self, path: str, *, max_bytes: int | None = None) -> tuple[bytes, str]:
        """(body, url) of ``path`` under the mirror, e.g. the catalog at ``/cache/epub/feeds/...``.

        The same retries, pacing, User-Agent and checks as a book (no HTML page, no empty body),
        so every request to the mirror is as polite as the others; ``max_bytes`` overrides the
        client's limit for files known to be larger than any book. Raises FileUnavailableError.
        """
        url = f"{self.mirror}/{path.lstrip('/')}"
        try:
            return self._get_with_retries(url, max_bytes), url
        except _Missing as exc:
            raise FileUnavailableError(url, str(exc)) from None
        except _Invalid as exc:
            raise FileUnavailableError(url, f"not the file expected ({exc})") from None
        except _Transient as exc:
            raise FileUnavailableError(
                url, f"{exc} (gave up after {self.max_attempts} attempts)"
            ) from None

    def _get_with_retries(self, url: str, max_bytes: int | None = None) -> bytes:
        retrying = Retrying(
            stop=stop_after_attempt(self.max_attempts),
            wait=self._wait,
            retry=retry_if_exception_type(_Transient),
            before_sleep=lambda state: log.info(
                "retrying %s after attempt %d: %s",
                url,
                state.attempt_number,
                state.outcome.exception() if state.outcome else "",
            ),
            reraise=True,
        )
        return retrying(self._get_once, url, max_bytes)

    def _wait(self, state: RetryCallState) -> float:
        """Honour a server's Retry-After; otherwise back off exponentially."""
        exc = state.outcome.exception() if state.outcome else None
        if isinstance(exc, _Transient) and exc.retry_after is not None:
            return min(exc.retry_after, MAX_RETRY_AFTER)
        return wait_exponential(multiplier=self.backoff_seconds, max=60)(state)

    def _pace(self) -> None:
        """Keep min_interval between the starts of consecutive requests (retries included)."""
        with self._lock:
            if self._last_request is not None and self.min_interval > 0:
                delay = self._last_request + self.min_interval - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            self._last_request = time.monotonic()
            self.requests_made += 1

    def _get_once(self, url: str, max_bytes: int | None = None) -> bytes:
        limit = self.max_bytes if max_bytes is None else max_bytes
        self._pace()
        try:
            response = self._session.get(url, timeout=self.timeout, stream=True)
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from None
        with response:
            status = response.status_code
            if status == 429 or status >= 500:
                raise _Transient(
                    f"HTTP {status}", retry_after=parse_retry_after(response.headers.get("Retry-After"))
                )
            if status != 200:
                raise _Missing(f"HTTP {status}")
            declared = self._declared_length(response)
            if declared is not None and declared > limit:
                raise _Invalid(f"declares {declared} bytes, more than max_bytes={limit}")
            content_type = response.headers.get("Content-Type", "").lower()
            if "html" in content_type:
                raise _Invalid(f"an HTML page (Content-Type: {content_type})")
            body = self._read_body(response, limit)
        if declared is not None and len(body) != declared:
            raise _Transient(f"body cut short: {len(body)} of {declared} bytes")
        self._validate(body)
        return body

    @staticmethod
    def _declared_length(response: requests.Response) -> int | None:
        """Content-Length, when it describes the bytes we will read (not a compressed size)."""
        if response.headers.get("Content-Encoding", "identity").lower() not in ("", "identity"):
            return None
        try:
            return int(response.headers["Content-Length"])
        except (KeyError, ValueError):
            return None

    def _read_body(self, response: requests.Response, limit: int) -> bytes:
        chunks: list[bytes] = []
        total = 0
        try:
            for chunk in response.iter_content(_CHUNK):
                total += len(chunk)
                if total > limit:
                    raise _Invalid(f"larger than max_bytes={limit}")
                chunks.append(chunk)
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise _Transient(f"connection broke mid-body after {total} bytes: {exc}") from None
        return b"".join(chunks)

    @staticmethod
    def _validate(body: bytes) -> None:
        if not body.strip():
            raise _Invalid("empty body")
        head = body[:4096]
        if _looks_like_html(head):
            raise _Invalid("an HTML page")
        if b"\x00" in head and not head.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise _Invalid("binary data")


# --- the download cache ----------------------------------------------------------------------


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _load_index(raw_dir: Path) -> dict[str, dict]:
    path = raw_dir / INDEX_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        books = data["books"]
        if not isinstance(books, dict):
            raise TypeError("books is not a mapping")
        return books
    except FileNotFoundError:
        return {}
    except (ValueError, KeyError, TypeError) as exc:
        # The index only saves requests: a damaged one means re-verifying by re-downloading.
        log.warning("%s is unreadable (%s): cached books will be downloaded again", path, exc)
        return {}


def _save_index(raw_dir: Path, books: dict[str, dict]) -> None:
    data = {"version": 1, "books": dict(sorted(books.items(), key=lambda kv: int(kv[0])))}
    atomic_write(raw_dir / INDEX_FILE, lambda h: h.write(json.dumps(data, indent=1) + "\n"), "w")


def _cached(raw_dir: Path, book_id: int, entry: dict | None) -> DownloadedBook | None:
    """The cached book if the file on disk still has the recorded size and hash."""
    if not entry:
        return None
    path = raw_dir / f"{book_id}.txt"
    try:
        if path.stat().st_size != entry.get("size"):
            return None
        data = path.read_bytes()
    except OSError:
        return None
    if _sha256(data) != entry.get("sha256"):
        return None
    return DownloadedBook(book_id, path, len(data), entry["sha256"], entry.get("url", ""), False)


def download_books(
    book_ids: Sequence[int],
    raw_dir: Path,
    client: GutenbergClient,
    *,
    force_refresh: bool = False,
    skip_unavailable: bool = False,
    progress: ProgressFn | None = None,
) -> DownloadReport:
    """Make ``raw_dir`` hold every listed book, fetching only what the cache lacks.

    Each book is written and recorded as soon as it arrives, so a failure later in the list loses
    nothing. ``books.json`` (the selection the corpus is built from) is written only when the
    whole list is accounted for, so a failed run never leaves a partial selection behind.
    """
    began = time.perf_counter()
    requests_before = client.requests_made
    ids = [_check_book_id(book_id) for book_id in book_ids]
    raw_dir.mkdir(parents=True, exist_ok=True)
    index = _load_index(raw_dir)
    books: list[DownloadedBook] = []
    skipped: list[tuple[int, str]] = []
    failures: list[BookUnavailableError] = []
    downloaded = 0

    for n, book_id in enumerate(ids, start=1):
        book = None if force_refresh else _cached(raw_dir, book_id, index.get(str(book_id)))
        if book is None:
            try:
                body, url = client.fetch(book_id)
            except BookUnavailableError as exc:
                log.warning("%s", exc)
                if skip_unavailable:
                    skipped.append((book_id, str(exc)))
                else:
                    failures.append(exc)
                continue
            path = raw_dir / f"{book_id}.txt"
            atomic_write(path, lambda h, body=body: h.write(body))
            book = DownloadedBook(book_id, path, len(body), _sha256(body), url, True)
            index[str(book_id)] = {
                "size": book.size,
                "sha256": book.sha256,
                "url": url,
                "fetched_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            }
            _save_index(raw_dir, index)
            downloaded += book.size
        books.append(book)
        if progress is not None:
            progress(n, len(ids), book)

    if failures:
        first = failures[0]
        if len(failures) > 1:
            others = ", ".join(str(f.book_id) for f in failures[1:])
            first.args = (f"{first.args[0]} (also unavailable: {others})",)
        raise first

    selection = {
        "books": [
            {"id": b.book_id, "size": b.size, "sha256": b.sha256, "url": b.url} for b in books
        ],
        "skipped": [{"id": book_id, "reason": reason} for book_id, reason in skipped],
    }
    atomic_write(
        raw_dir / SELECTION_FILE, lambda h: h.write(json.dumps(selection, indent=1) + "\n"), "w"
    )
    return DownloadReport(
        books=tuple(books),
        skipped=tuple(skipped),
        requests=client.requests_made - requests_before,
        bytes_downloaded=downloaded,
        seconds=time.perf_counter() - began,
    )
