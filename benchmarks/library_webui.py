"""How long the web UI's page of an asset takes to show its latest materialization's metadata.

Starts ``dagster dev`` on a project's history (as the README's *The web UI* does), opens
``/assets/<asset>`` in headless Chromium (Playwright) and times, from the navigation's start, until
a metadata key of the latest materialization is visible: once on a fresh browser (the app's
scripts loaded too), then on reloads; and the same for the asset's event history
(``?view=events``). Skipped with a message when no Chromium is installed (``apt-get install
chromium``, or ``CHROMIUM=/path/to/chrome``).
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from llm_assets_tests.e2e.conftest import DagsterDev  # noqa: E402

KEY = "book_list_fingerprint"  # one of raw_books' metadata keys
RELOADS = 3
TIMEOUT_MS = 60_000


def chromium() -> str | None:
    for candidate in (os.environ.get("CHROMIUM"), shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _shown(page, url: str, key: str, queries: list[tuple[str, float, int]] | None = None) -> float:
    """Seconds from navigating to ``url`` until ``key`` is visible on the page; ``queries`` gets each
    GraphQL query answered meanwhile: (operation, seconds from request to response end, bytes)."""

    def answered(request) -> None:
        if queries is not None and "/graphql" in request.url and request.method == "POST":
            timing = request.timing
            response = request.response()
            try:
                size = len(response.body()) if response is not None else 0
            except Exception:  # noqa: BLE001 - navigated away before the body was read: use the header
                size = int(response.headers.get("content-length", 0)) if response is not None else 0
            queries.append(((request.post_data_json or {}).get("operationName", "?"),
                            (timing["responseEnd"] - timing["requestStart"]) / 1000, size))

    page.on("requestfinished", answered)
    try:
        began = time.perf_counter()
        page.goto(url, wait_until="commit")
        page.get_by_text(key, exact=True).first.wait_for(state="visible", timeout=TIMEOUT_MS)
        return time.perf_counter() - began
    finally:
        page.remove_listener("requestfinished", answered)


def time_asset_page(project: Path, env: dict[str, str], asset: str, log: Path, key: str = KEY) -> dict[str, float]:
    """Print and return the page's times in seconds: ``first`` (fresh browser) and ``reload`` (median)."""
    browser_path = chromium()
    if browser_path is None:
        print("\nweb UI: skipped, no Chromium (apt-get install chromium, or set CHROMIUM)")
        return {}
    from playwright.sync_api import sync_playwright

    server = DagsterDev(project, env, log)
    times: dict[str, float] = {}
    queries: list[tuple[str, float, int]] = []
    try:
        server.wait_ready()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
            try:
                for view, suffix in (("overview", ""), ("events", "?view=events")):
                    page = browser.new_context().new_page()
                    url = f"{server.url}/assets/{asset}{suffix}"
                    times[f"{view} first"] = _shown(page, url, key)
                    times[f"{view} reload"] = statistics.median(_shown(page, url, key, queries) for _ in range(RELOADS))
                    page.context.close()
            finally:
                browser.close()
    finally:
        server.stop()
    print(f"\nweb UI, /assets/{asset} until its metadata shows (headless Chromium, dagster dev on this history): "
          + ", ".join(f"{name} {seconds:.2f} s" for name, seconds in times.items())
          + f" (reload: median of {RELOADS}; first: a fresh browser, the UI's scripts loaded too)")
    slowest = sorted(queries, key=lambda q: -q[1])[:3]
    largest = max(queries, key=lambda q: q[2], default=("-", 0.0, 0))
    print(f"  GraphQL on reloads: {len(queries)} queries, {sum(q[2] for q in queries) / 1000 / (2 * RELOADS):.0f} KB "
          f"a page; slowest " + ", ".join(f"{name} {sec:.2f} s" for name, sec, _ in slowest)
          + f"; largest {largest[0]} {largest[2] / 1000:.0f} KB")
    return times
