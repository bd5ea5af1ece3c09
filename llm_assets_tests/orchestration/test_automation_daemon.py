"""The real daemon: a change made while run_config.yaml has a typo is launched once the file is fixed.

`dagster-daemon run -m llm_assets` in a project folder made by `llm-assets init`, with the project's
own instance, exactly as `dagster dev` runs it. The instance queues runs but starts none
(``max_concurrent_runs: 0``): what is checked is what the sensor asks for and which runs Dagster
creates, not the training. About 90 s: the sensor ticks every 30 s.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import dagster as dg
import pytest
import yaml

from llm_assets.books.selection import book_list_fingerprint
from llm_assets.instance import DAGSTER_YAML
from llm_assets.orchestration.automation import CHANGE_TAG, FINGERPRINT_TAG, PIPELINE_JOB, RUN_CONFIG_FILE
from llm_assets_tests.gutenberg_server import GutenbergMirror, make_books
from llm_assets_tests.orchestration.automation_harness import USER_RUN_CONFIG
from llm_assets_tests.orchestration.projects import CliProject, finish

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

# Runs are created and queued, never started.
QUEUE_ONLY = DAGSTER_YAML.replace("concurrency:\n", "concurrency:\n  runs:\n    max_concurrent_runs: 0\n", 1)
TICK_TIMEOUT_S = 150.0  # the code location loads, then the sensor ticks every 30 s
T = TypeVar("T")


@pytest.fixture
def daemon_project(tmp_path: Path, gutenberg_mirror: GutenbergMirror) -> CliProject:
    for book in make_books((101, 102, 103), paragraphs=4).values():
        gutenberg_mirror.add_book(book.book_id, book.raw)
    return CliProject.create(tmp_path / "project", gutenberg_mirror.url, (101, 102), dagster_yaml=QUEUE_ONLY)


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[[CliProject], Path]]:
    started: list[subprocess.Popen[bytes]] = []

    def start(project: CliProject) -> Path:
        log = tmp_path / "daemon.log"
        env = {**project.env(), "DAGSTER_HOME": str(project.root / ".dagster_home")}
        with open(log, "wb") as out:
            started.append(subprocess.Popen([sys.executable, "-m", "dagster._daemon", "run", "-m", "llm_assets"],
                                            cwd=project.root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                            start_new_session=True))
        return log

    yield start
    for process in started:  # the daemon and the code server it started, firmly
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(process.pid, sig)
                process.wait(timeout=10)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue


def _sensor_skips(instance: dg.DagsterInstance) -> list[str]:
    """The skip reasons of book_list_sensor's ticks, oldest first."""
    states = [s for s in instance.all_instigator_state() if s.instigator_name == "book_list_sensor"]
    ticks = [t for s in states for t in instance.get_ticks(s.instigator_origin_id, s.selector_id, limit=20)]
    return [t.skip_reason or "" for t in sorted(ticks, key=lambda t: t.timestamp)]


def _wait_for(what: str, probe: Callable[[], T | None], log: Path) -> T:
    deadline = time.monotonic() + TICK_TIMEOUT_S
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(2.0)
    pytest.fail(f"no {what} within {TICK_TIMEOUT_S:.0f} s\n--- daemon log ---\n"
                f"{log.read_text(encoding='utf-8', errors='replace')[-4000:]}")


def test_the_daemon_skips_a_typo_naming_file_and_key_then_launches_the_change_once_fixed(
    daemon_project: CliProject, gutenberg_mirror: GutenbergMirror, start_daemon
) -> None:
    project = daemon_project
    instance = project.instance()
    finish(project.materialize("raw_books"))  # the user's first run, through the CLI as a user does
    run_config_file = project.data / RUN_CONFIG_FILE
    run_config_file.write_text("ops:\n  tokenizer:\n    config:\n      vocab_sise: 1000\n", encoding="utf-8")
    (project.data / "books.yaml").write_text("books:\n  - 101\n  - 102\n  - 103\n", encoding="utf-8")
    fingerprint = book_list_fingerprint(project.data / "books.yaml")
    log = start_daemon(project)

    def typo_reported() -> str | None:
        return next((s for s in _sensor_skips(instance) if "vocab_sise" in s), None)

    skip = _wait_for("tick naming the typo", typo_reported, log)
    print(f"tick with the typo: {skip}")
    assert "run_config.yaml" in skip and "`ops.tokenizer.config.vocab_sise`" in skip and "waits" in skip
    assert list(instance.get_runs(filters=dg.RunsFilter(job_name=PIPELINE_JOB))) == []

    run_config_file.write_text(yaml.safe_dump(USER_RUN_CONFIG), encoding="utf-8")  # the fix; the list is untouched

    def launched() -> list[dg.DagsterRun]:
        return list(instance.get_runs(filters=dg.RunsFilter(tags={FINGERPRINT_TAG: fingerprint})))

    (run,) = _wait_for("run for the change", launched, log)
    assert run.job_name == PIPELINE_JOB and run.run_config == USER_RUN_CONFIG and run.tags[CHANGE_TAG] == "1"

    def said_launched() -> str | None:
        return next((s for s in _sensor_skips(instance) if "already launched" in s), None)

    skip = _wait_for("tick saying the change was launched", said_launched, log)
    print(f"tick after the run: {skip}")
    assert run.run_id[:8] in skip
    (still,) = launched()  # one run for the change, waiting in Dagster's queue
    assert still.run_id == run.run_id and still.status == dg.DagsterRunStatus.QUEUED
    instance.dispose()
