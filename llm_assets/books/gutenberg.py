"""The HTTP client for Project Gutenberg or a mirror: polite, retrying, and checking what it gets.

Gutenberg is a volunteer-run site: its robot policy asks for at least two seconds between requests
and a client that says who it is. Mirrors and test servers need no such pause. A response is
checked before it is trusted: a truncated body, an HTML error page or an empty file is never taken
for a book. Caching what was fetched is ``downloads.py``'s job.
"""

from __future__ import annotations

import email.utils
import importlib.metadata
import logging
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from urllib.parse import urlparse

import requests
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

log = logging.getLogger(__name__)

GUTENBERG_ORG = "https://www.gutenberg.org"
GUTENBERG_MIN_INTERVAL = 2.0  # seconds between requests to gutenberg.org (its robot policy)
MAX_RETRY_AFTER = 120.0  # never sleep longer than this on a server's Retry-After
_CHUNK = 1 << 16


def _user_agent() -> str:
    try:
        version = importlib.metadata.version("llm-assets")
    except importlib.metadata.PackageNotFoundError:  # running from a source tree
        version = "dev"
    return f"llm-assets/{version} (Project Gutenberg corpus downloader; python-requests)"


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


def check_book_id(book_id: int) -> int:
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
        self.user_agent = user_agent or _user_agent()
        self.requests_made = 0
        self._session = requests.Session()
        self._session.headers["User-Agent"] = self.user_agent
        self._lock = threading.Lock()
        self._last_request: float | None = None

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> GutenbergClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def urls_for(self, book_id: int) -> list[str]:
        """The mirror layout URL first; gutenberg.org also serves older files elsewhere."""
        check_book_id(book_id)
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
