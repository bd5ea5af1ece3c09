"""The web UI, end to end: `dagster dev`, a tiny run through GraphQL, a real browser, automation.

What a user does on day one, on real Gutenberg books from a local mirror: start `dagster dev`,
materialize the five assets (here through the GraphQL API the UI's own "Materialize" uses), look
at the asset graph and at trained_model's loss curve in Chromium, then add a book to the list and
watch the pipeline re-run by itself under the daemon `dagster dev` starts. Steps run under the
multiprocess executor (spawned processes), as they do for a user.

Screenshots go to $LLM_ASSETS_SCREENSHOTS (or the test's temporary folder); their paths are printed.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from llm_assets.books.selection import book_list_fingerprint
from llm_assets.books.corpus import read_corpus_index, resolve_corpus
from llm_assets.instance import DAGSTER_YAML
from llm_assets.orchestration.automation import FINGERPRINT_TAG, PIPELINE_JOB, RUN_CONFIG_FILE
from llm_assets_tests.e2e.conftest import DagsterDev
from llm_assets_tests.gutenberg_server import GutenbergMirror

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

FIVE_ASSETS = ("raw_books", "corpus", "tokenizer", "tokenized_dataset", "trained_model")
# Three of the smallest shared books (Latin plays, Moliere, Wilde), then one more added by "the user".
FIRST_BOOKS = (31894, 2536, 844)
ADDED_BOOK = 44157
# 60 steps: enough for trained_model's model_learned check to pass (eval loss below the unigram
# entropy: 5.60 vs 5.79 nats on these books); at 30 steps it fails (5.86) and the UI shows it red.
# logging_steps 5 gives the loss curve more than three points. One DataLoader worker: batches are
# loaded by a worker process inside the step process that Dagster's multiprocess executor spawned.
TINY_RUN_CONFIG = {
    "ops": {
        "tokenizer": {"config": {"vocab_size": 1000}},
        "trained_model": {
            "config": {"preset": "tiny", "max_steps": 60, "save_steps": 30, "logging_steps": 5,
                       "dataloader_workers": 1}
        },
    }
}
# The first run trains longer, so the browser can watch the live loss chart grow mid-run.
LIVE_RUN_CONFIG = {
    "ops": {
        "tokenizer": {"config": {"vocab_size": 1000}},
        "trained_model": {"config": {"preset": "tiny", "max_steps": 300, "save_steps": 150, "logging_steps": 5}},
    }
}
LIVE_POINTS = 4  # chart points to wait for before the mid-run screenshot
FIRST_RUN_TIMEOUT_S = 420.0
AUTOMATIC_RUN_TIMEOUT_S = 300.0  # the sensor ticks every 30 s, then the run itself
UI_TIMEOUT_MS = 60_000

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on PythonError { message stack }
    ... on Error { message }
  }
}"""

RUN_STATUS = """
query Status($runId: ID!) {
  runOrError(runId: $runId) { __typename ... on Run { status } ... on Error { message } }
}"""

RUN_FAILURES = """
query Failures($runId: ID!) {
  logsForRun(runId: $runId) {
    ... on EventConnection {
      events {
        __typename
        ... on MessageEvent { message stepKey }
        ... on ErrorEvent { error { message stack } }
      }
    }
  }
}"""

RUNS_TAGGED = """
query Tagged($key: String!, $value: String!) {
  runsOrError(filter: {tags: [{key: $key, value: $value}]}) {
    ... on Runs { results { runId status tags { key value } } }
  }
}"""

DONE = {"SUCCESS", "FAILURE", "CANCELED"}


def _book_list(ids: tuple[int, ...]) -> str:
    return "# books for the web UI test\nbooks:\n" + "".join(f"  - {i}\n" for i in ids)


def _failure_report(server: DagsterDev, run_id: str) -> str:
    events = server.graphql(RUN_FAILURES, {"runId": run_id})["logsForRun"].get("events", [])
    lines = []
    for event in events:
        error = event.get("error")
        if error or event["__typename"] in ("ExecutionStepFailureEvent", "RunFailureEvent"):
            lines.append(f"[{event.get('stepKey')}] {event.get('message')}")
            if error:
                lines.append(error["message"] + "".join(error["stack"][-6:]))
    return "\n".join(lines) or "(no failure events)"


def _wait_for_run(server: DagsterDev, run_id: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    status = "?"
    while time.monotonic() < deadline:
        status = server.graphql(RUN_STATUS, {"runId": run_id})["runOrError"].get("status", "?")
        if status in DONE:
            break
        time.sleep(2.0)
    if status != "SUCCESS":
        pytest.fail(
            f"run {run_id} ended {status} (waited up to {timeout:.0f} s):\n"
            f"{_failure_report(server, run_id)}\n--- dagster dev log ---\n{server.log_tail(3000)}"
        )


def _launch(server: DagsterDev, run_config: dict[str, Any]) -> str:
    params = {
        "selector": {
            "repositoryLocationName": server.location_name(),
            "repositoryName": "__repository__",
            "jobName": PIPELINE_JOB,
        },
        "runConfigData": run_config,
    }
    result = server.graphql(LAUNCH_RUN, {"params": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", f"launchRun answered {json.dumps(result)[:3000]}"
    return result["run"]["runId"]


def _wait_for_tagged_run(server: DagsterDev, fingerprint: str, timeout: float) -> str:
    """The run automation launched for this book list; fails if none starts in time."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        runs = server.graphql(RUNS_TAGGED, {"key": FINGERPRINT_TAG, "value": fingerprint})
        results = runs["runsOrError"].get("results", [])
        if results:
            assert len(results) == 1, f"the book-list change launched {len(results)} runs"
            return results[0]["runId"]
        time.sleep(3.0)
    pytest.fail(
        f"no run tagged {FINGERPRINT_TAG}={fingerprint[:12]} within {timeout:.0f} s of editing the "
        f"book list\n--- dagster dev log ---\n{server.log_tail(4000)}"
    )


def _check_results(instance: dg.DagsterInstance, run_id: str) -> dict[str, bool]:
    """check name -> passed, for every asset check the run evaluated."""
    records = instance.get_records_for_run(
        run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION, limit=100
    ).records
    return {
        data.check_name: data.passed
        for data in (r.event_log_entry.dagster_event.event_specific_data for r in records)
    }


def _dismiss_community_dialog(page) -> bool:
    """A fresh instance greets the first visitor with "Join the Dagster community": skip it."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    skip = page.get_by_role("dialog").get_by_role("button", name="Skip")
    try:
        skip.wait_for(state="visible", timeout=15_000)
    except PlaywrightTimeout:  # not shown: this instance's visitor has already answered it
        return False
    skip.click()
    page.get_by_text("Join the Dagster community").wait_for(state="hidden", timeout=10_000)
    return True


def _shot(page, folder: Path, name: str, shots: list[Path], full_page: bool = False) -> None:
    path = folder / name
    page.screenshot(path=str(path), full_page=full_page)
    shots.append(path)
    print(f"screenshot: {path}")


def _open_plots(page, server: DagsterDev, first_visit: bool = False) -> None:
    """trained_model's page, its metadata shown as plots (numeric metadata over events)."""
    page.goto(f"{server.url}/assets/trained_model")
    if first_visit:
        _dismiss_community_dialog(page)
    page.get_by_role("button", name="Plots").click()


def _watch_the_live_chart(server: DagsterDev, home: Path, run_id: str, chromium: str, folder: Path,
                          shots: list[Path]) -> None:
    """Mid-run: once training has reported a few chart points, the asset page plots them."""
    from playwright.sync_api import expect, sync_playwright

    instance = dg.DagsterInstance.from_config(str(home))
    try:
        deadline = time.monotonic() + FIRST_RUN_TIMEOUT_S
        while time.monotonic() < deadline:
            points = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION).records
            if len(points) >= LIVE_POINTS or instance.get_run_by_id(run_id).is_finished:
                break
            time.sleep(0.5)
        assert len(points) >= LIVE_POINTS, f"no live chart points while training ({len(points)})"
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1400})
                page.set_default_timeout(UI_TIMEOUT_MS)
                _open_plots(page, server, first_visit=True)
                for key in ("train_loss", "tokens_per_second"):
                    expect(page.get_by_text(key, exact=True).first).to_be_visible()
                page.wait_for_timeout(1500)
                _shot(page, folder, "00-live-chart-mid-run.png", shots, full_page=True)
            finally:
                browser.close()
        run = instance.get_run_by_id(run_id)
        assert not run.is_finished, "the run ended before the mid-run screenshot: train longer"
        print(f"live chart: {len(points)}+ points, screenshot taken while the run was {run.status.value}")
    finally:
        instance.dispose()


def _check_ui(server: DagsterDev, chromium: str, folder: Path, shots: list[Path]) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)

            # The asset graph of group "llm": every asset there, each marked materialized.
            page.goto(f"{server.url}/asset-groups/llm")
            dismissed = _dismiss_community_dialog(page)
            print(f'"Join the Dagster community" dialog shown and skipped: {dismissed}')
            for name in FIVE_ASSETS:
                entry = page.locator("button", has=page.locator(f'[title="{name}"]')).first
                expect(entry.get_by_role("img", name="run_success")).to_be_visible()
                expect(page.get_by_text(name, exact=True).first).to_be_visible()
            _shot(page, folder, "01-asset-graph.png", shots)

            # The catalog says it in words too: five assets, five times "Materialized".
            page.goto(f"{server.url}/assets")
            for name in FIVE_ASSETS:
                expect(page.locator(f'a[href="/assets/{name}"]').first).to_be_visible()
            expect(page.get_by_text("Materialized", exact=True)).to_have_count(len(FIVE_ASSETS))
            _shot(page, folder, "02-catalog.png", shots)

            # trained_model's page: its metadata, and the loss curve behind "[Show Markdown]".
            page.goto(f"{server.url}/assets/trained_model")
            row = page.locator("tr", has=page.get_by_text("loss_curve", exact=True))
            expect(row).to_be_visible()
            for key in ("tokens_per_second", "eval_loss", "perplexity", "device"):
                expect(page.locator("tr", has=page.get_by_text(key, exact=True))).to_be_visible()
            row.scroll_into_view_if_needed()
            _shot(page, folder, "03-trained-model.png", shots)
            row.get_by_text("Show Markdown").click()
            curve = page.get_by_role("dialog").locator('img[src^="data:image/png"]')
            expect(curve).to_be_visible()
            width, height = curve.evaluate("img => [img.naturalWidth, img.naturalHeight]")
            assert width >= 200 and height >= 100, f"the loss curve is only {width}x{height} pixels"
            page.wait_for_timeout(1000)  # the dialog fades in: let the screenshot show it settled
            _shot(page, folder, "04-loss-curve.png", shots)

            # The finished run's charts: the live points, continued by the final metadata.
            _open_plots(page, server)
            expect(page.get_by_text("eval_loss", exact=True).first).to_be_visible()
            page.wait_for_timeout(1500)
            _shot(page, folder, "04b-charts-after-the-run.png", shots, full_page=True)
        finally:
            browser.close()


def _screenshot_runs(server: DagsterDev, chromium: str, folder: Path, shots: list[Path]) -> None:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            page.set_default_timeout(UI_TIMEOUT_MS)
            page.goto(f"{server.url}/runs")
            _dismiss_community_dialog(page)
            expect(page.get_by_text("book_list_sensor").first).to_be_visible()
            _shot(page, folder, "05-runs-after-book-added.png", shots)
        finally:
            browser.close()


def test_webui_shows_the_pipeline_and_automation_reruns_it(
    tmp_path: Path,
    shared_gutenberg: Path,
    chromium_executable: str,
    screenshot_dir: Path,
    start_dagster_dev,
) -> None:
    test_started = time.monotonic()
    home, data_dir, checkpoints, cwd = (tmp_path / d for d in ("home", "data", "checkpoints", "cwd"))
    for folder in (home, data_dir, checkpoints, cwd):
        folder.mkdir()
    (home / "dagster.yaml").write_text(DAGSTER_YAML, encoding="utf-8")
    book_list = data_dir / "books.yaml"
    book_list.write_text(_book_list(FIRST_BOOKS), encoding="utf-8")
    (data_dir / RUN_CONFIG_FILE).write_text(yaml.safe_dump(TINY_RUN_CONFIG), encoding="utf-8")

    with GutenbergMirror(root=shared_gutenberg / "mirror") as mirror:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("LLM_ASSETS_", "DAGSTER_"))}
        env.update(
            DAGSTER_HOME=str(home),
            LLM_ASSETS_DATA_DIR=str(data_dir),
            LLM_ASSETS_CHECKPOINT_DIR=str(checkpoints),
            GUTENBERG_MIRROR=mirror.url,
            LLM_DEVICE="cpu",
            # One thread per step: on a shared 2-core machine two OpenMP threads stall on each other's
            # barriers whenever a neighbour is busy (see training/conftest.py).
            OMP_NUM_THREADS="1",
        )
        started = time.monotonic()
        server = start_dagster_dev(cwd, env, tmp_path / "dagster-dev.log")
        print(f"dagster dev ready at {server.url} after {time.monotonic() - started:.0f} s")

        # 1. A tiny run of all five assets, launched as the UI launches it; its loss chart grows live.
        started = time.monotonic()
        shots: list[Path] = []
        run_id = _launch(server, LIVE_RUN_CONFIG)
        _watch_the_live_chart(server, home, run_id, chromium_executable, screenshot_dir, shots)
        _wait_for_run(server, run_id, FIRST_RUN_TIMEOUT_S)
        print(f"first run {run_id} succeeded in {time.monotonic() - started:.0f} s")
        assert (checkpoints / "latest" / "config.json").is_file()

        # 2. What a user sees.
        _check_ui(server, chromium_executable, screenshot_dir, shots)

        # 3. The user adds a book; automation notices and re-runs with data/run_config.yaml.
        book_list.write_text(_book_list((*FIRST_BOOKS, ADDED_BOOK)), encoding="utf-8")
        started = time.monotonic()
        auto_run_id = _wait_for_tagged_run(server, book_list_fingerprint(book_list), AUTOMATIC_RUN_TIMEOUT_S)
        print(f"automation launched run {auto_run_id} after {time.monotonic() - started:.0f} s")
        _wait_for_run(server, auto_run_id, AUTOMATIC_RUN_TIMEOUT_S)
        print(f"automatic run {auto_run_id} succeeded {time.monotonic() - started:.0f} s after the edit")

        books = [book.id for book in read_corpus_index(resolve_corpus(data_dir / "all_books.txt"))]
        assert books == [*FIRST_BOOKS, ADDED_BOOK], books
        # Only the new book was downloaded again; the others came from the cache.
        assert {book_id: mirror.count(book_id) for book_id in FIRST_BOOKS} == dict.fromkeys(FIRST_BOOKS, 1)
        assert mirror.count(ADDED_BOOK) == 1

        instance = dg.DagsterInstance.from_config(str(home))
        try:
            event = instance.get_latest_materialization_event(dg.AssetKey("trained_model"))
            assert event is not None and event.run_id == auto_run_id
            # The automatic run trained what the user chose, not the default GPT-2 small.
            assert event.asset_materialization.metadata["preset"].value == "tiny"
            assert event.asset_materialization.metadata["global_step"].value == 60
            checks = _check_results(instance, auto_run_id)
            assert len(checks) == 6 and all(checks.values()), f"checks of the automatic run: {checks}"
        finally:
            instance.dispose()

        _screenshot_runs(server, chromium_executable, screenshot_dir, shots)
        print("screenshots:\n" + "\n".join(str(s) for s in shots))
    print(f"whole test: {time.monotonic() - test_started:.0f} s")
