"""A project and ticks driven the way Dagster's daemon drives them, for the automation tests.

``Ticks`` evaluates the real sensor and schedule on a real test instance, keeps the sensor's cursor
between ticks as the daemon does, and creates the run of each request in the instance with the tags
the daemon gives it (``dagster/run_key``, ``dagster/sensor_name``), once per run key. Runs are created
(not started), not executed: whether a change counts as launched is decided by the runs Dagster holds.
``raw_books`` is materialized for real against a local mirror, so the fingerprint the sensor
compares with is the one the asset records. ``test_automation_daemon.py`` runs the real daemon.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.storage.defs_state.base import set_defs_state_storage

from llm_assets.definitions import defs
from llm_assets.orchestration.assets import raw_books
from llm_assets.orchestration.automation import (
    PIPELINE_JOB,
    RUN_CONFIG_FILE,
    RUN_KEY_TAG,
    SENSOR_NAME_TAG,
    book_list_schedule,
    book_list_sensor,
)
from llm_assets.orchestration.resources import GutenbergResource, PathsResource
from llm_assets_tests.gutenberg_server import GutenbergMirror, make_books

MIRRORED = (101, 102, 103)  # what the mirror serves; the list starts with the first two
LIST_A = "books:\n  - 101\n  - 102\n"
LIST_B = "books:\n  - 101\n  - 102\n  - 103\n"
# What a user would write to get a quick automatic run: the sensor must pass exactly this on.
USER_RUN_CONFIG = {
    "ops": {
        "tokenizer": {"config": {"vocab_size": 1000}},
        "trained_model": {"config": {"preset": "tiny", "max_steps": 30, "save_steps": 15}},
    }
}


@dataclass(frozen=True)
class Project:
    data_dir: Path
    mirror: GutenbergMirror

    @property
    def book_list(self) -> Path:
        return self.data_dir / "books.yaml"

    @property
    def run_config_file(self) -> Path:
        return self.data_dir / RUN_CONFIG_FILE

    @property
    def paths(self) -> PathsResource:
        return PathsResource(data_dir=str(self.data_dir), checkpoint_dir=str(self.data_dir.parent / "ckpt"))

    def gutenberg(self, **kwargs) -> GutenbergResource:
        return GutenbergResource(mirror=self.mirror.url, backoff_seconds=0.01, **kwargs)

    def resources(self) -> dict[str, object]:
        return {"paths": self.paths, "gutenberg": self.gutenberg()}

    def write_book_list(self, text: str) -> None:
        self.book_list.write_text(text, encoding="utf-8")

    def write_run_config(self, text: str) -> None:
        self.run_config_file.write_text(text, encoding="utf-8")

    def materialize_raw_books(self, instance: dg.DagsterInstance, tags: dict[str, str] | None = None,
                              raise_on_error: bool = True) -> dg.ExecuteInProcessResult:
        # A schedule tick can leave Dagster's definitions-state storage pointing at an instance it
        # made and dropped (see conftest); materializing does not need that storage.
        with set_defs_state_storage(None):
            return dg.materialize([raw_books], instance=instance, resources=self.resources(), tags=tags,
                                  raise_on_error=raise_on_error)


@dataclass
class Ticks:
    project: Project
    instance: dg.DagsterInstance
    cursor: str | None = None
    created: list[dg.DagsterRun] = field(default_factory=list)

    def sensor(self, create_runs: bool = True, keep_cursor: bool = True) -> tuple[list[dg.RunRequest], str | None]:
        """One sensor tick: (its run requests, its skip message).

        ``create_runs=False`` is a tick whose runs were never created: the daemon stopped after the
        evaluation, or failed to create the run. Dagster then keeps the previous cursor (a failed
        tick does not save its cursor): ``keep_cursor=False``. ``keep_cursor=True`` with it is the
        harsher case of a cursor saved without its run; the next tick must ask again either way.
        """
        context = dg.build_sensor_context(instance=self.instance, cursor=self.cursor,
                                          resources=self.project.resources(), definitions=defs)
        data = book_list_sensor.evaluate_tick(context)
        requests = list(data.run_requests or [])
        if keep_cursor:
            self.cursor = data.cursor
        if create_runs:
            for request in requests:
                self.create_run(request)
        return requests, data.skip_message

    def schedule(self) -> tuple[list[dg.RunRequest], str | None]:
        context = dg.build_schedule_context(
            instance=self.instance, resources=self.project.resources(), repository_def=defs.get_repository_def(),
            scheduled_execution_time=dt.datetime.now(dt.timezone.utc),
        )
        data = book_list_schedule.evaluate_tick(context)
        return list(data.run_requests or []), data.skip_message

    def create_run(self, request: dg.RunRequest) -> dg.DagsterRun | None:
        """What the daemon does with a request: create its run, unless one has this run key already."""
        tags = {RUN_KEY_TAG: request.run_key, SENSOR_NAME_TAG: book_list_sensor.name}
        if self.instance.get_runs(filters=dg.RunsFilter(tags=tags), limit=1):
            return None
        run = self.instance.create_run_for_job(
            defs.resolve_job_def(PIPELINE_JOB), run_config=request.run_config,
            tags={**request.tags, **tags},  # created, not yet submitted to the queue
        )
        self.created.append(run)
        return run

    def pipeline_runs(self) -> list[dg.DagsterRun]:
        return list(self.instance.get_runs(filters=dg.RunsFilter(job_name=PIPELINE_JOB)))


def make_project(tmp_path: Path, mirror: GutenbergMirror) -> Project:
    for book in make_books(MIRRORED, paragraphs=4).values():
        mirror.add_book(book.book_id, book.raw)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    project = Project(data_dir, mirror)
    project.write_run_config("# my pipeline settings\n" + yaml.safe_dump(USER_RUN_CONFIG))
    project.write_book_list("books:\n  - 101  # first\n  - 102  # second\n")
    return project


@pytest.fixture
def project(tmp_path: Path, gutenberg_mirror: GutenbergMirror) -> Project:
    return make_project(tmp_path, gutenberg_mirror)


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture
def ticks(project: Project, instance: dg.DagsterInstance) -> Ticks:
    return Ticks(project, instance)
