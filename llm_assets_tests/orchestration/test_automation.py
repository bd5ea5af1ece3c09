"""Book-list automation: the sensor and the schedule launch the pipeline exactly when the ids change.

Driven in process the way the daemon drives them (``evaluate_tick`` on a real test instance), with a
real ``raw_books`` materialization against a local mirror, so the fingerprint they compare with is
the one the asset really records. Every behaviour is checked for both the sensor and the schedule:
they must give the same answers, or the hourly re-check would launch what the sensor refused.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.storage.defs_state.base import set_defs_state_storage

from llm_assets.books.selection import book_list_fingerprint
from llm_assets.definitions import defs
from llm_assets.orchestration.assets import raw_books
from llm_assets.orchestration.automation import (
    CHANGE_TAG,
    FINGERPRINT_TAG,
    PIPELINE_JOB,
    RUN_CONFIG_FILE,
    WHY_TAG,
    book_list_schedule,
    book_list_sensor,
    llm_pipeline,
    rerun_if_book_list_changed,
)
from llm_assets.orchestration.resources import GutenbergResource, PathsResource
from llm_assets_tests.gutenberg_server import GutenbergMirror, make_books

FIVE_ASSETS = {"raw_books", "corpus", "tokenizer", "tokenized_dataset", "trained_model"}
MIRRORED = (101, 102, 103)  # what the mirror serves; the list starts with the first two
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
    def paths(self) -> PathsResource:
        return PathsResource(data_dir=str(self.data_dir), checkpoint_dir=str(self.data_dir.parent / "ckpt"))

    @property
    def gutenberg(self) -> GutenbergResource:
        return GutenbergResource(mirror=self.mirror.url, backoff_seconds=0.01)

    def write_book_list(self, text: str) -> None:
        self.book_list.write_text(text, encoding="utf-8")

    def materialize_raw_books(self, instance: dg.DagsterInstance) -> None:
        # A schedule tick can leave Dagster's definitions-state storage pointing at an instance it
        # made and dropped (see conftest); materializing does not need that storage.
        with set_defs_state_storage(None):
            self._materialize_raw_books(instance)

    def _materialize_raw_books(self, instance: dg.DagsterInstance) -> None:
        result = dg.materialize(
            [raw_books],
            instance=instance,
            resources={"paths": self.paths, "gutenberg": self.gutenberg},
        )
        assert result.success


@pytest.fixture
def project(tmp_path: Path, gutenberg_mirror: GutenbergMirror) -> Project:
    for book in make_books(MIRRORED, paragraphs=4).values():
        gutenberg_mirror.add_book(book.book_id, book.raw)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / RUN_CONFIG_FILE).write_text(
        "# my pipeline settings\n" + yaml.safe_dump(USER_RUN_CONFIG), encoding="utf-8"
    )
    project = Project(data_dir, gutenberg_mirror)
    project.write_book_list("books:\n  - 101  # first\n  - 102  # second\n")
    return project


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture(params=["sensor", "schedule"])
def evaluate(request: pytest.FixtureRequest, project: Project, instance: dg.DagsterInstance):
    """One tick of the sensor or of the schedule: (run requests, skip message)."""

    def tick() -> tuple[list[dg.RunRequest], str | None]:
        resources = {"paths": project.paths, "gutenberg": project.gutenberg}
        if request.param == "sensor":
            context = dg.build_sensor_context(instance=instance, resources=resources)
            data = book_list_sensor.evaluate_tick(context)
        else:
            context = dg.build_schedule_context(
                instance=instance,
                resources=resources,
                scheduled_execution_time=dt.datetime.now(dt.timezone.utc),
            )
            data = book_list_schedule.evaluate_tick(context)
        return list(data.run_requests or []), data.skip_message

    return tick


def test_the_job_is_the_five_assets_and_automation_is_on_by_default() -> None:
    job = defs.resolve_job_def(PIPELINE_JOB)
    selected = {key.to_user_string() for key in job.asset_layer.executable_asset_keys}
    assert selected == FIVE_ASSETS
    assert book_list_sensor.job_name == PIPELINE_JOB
    assert book_list_schedule.job_name == PIPELINE_JOB
    # On out of the box under `dagster dev`: nobody has to find and flip a switch in the UI.
    assert book_list_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert book_list_schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert defs.resolve_sensor_def(book_list_sensor.name) is not None
    assert defs.resolve_schedule_def(book_list_schedule.name) is not None
    assert llm_pipeline.name == PIPELINE_JOB


def test_nothing_is_launched_before_the_first_materialization(evaluate) -> None:
    requests, skip = evaluate()
    assert requests == []
    assert skip is not None and "not been materialized" in skip


def test_an_unchanged_list_launches_nothing(evaluate, project: Project, instance) -> None:
    project.materialize_raw_books(instance)
    requests, skip = evaluate()
    assert requests == []
    assert skip is not None and "unchanged" in skip


def test_editing_comments_and_layout_only_launches_nothing(evaluate, project: Project, instance) -> None:
    project.materialize_raw_books(instance)
    project.write_book_list(
        "# My reading list, reformatted.\nbooks:\n  - id: 101\n    title: The first one\n\n  - 102   # still second\n"
    )
    requests, skip = evaluate()
    assert requests == []
    assert "unchanged" in (skip or "")


@pytest.mark.parametrize(
    "new_list",
    [
        pytest.param("books:\n  - 101\n  - 102\n  - 103  # added\n", id="book-added"),
        pytest.param("books:\n  - 101\n", id="book-removed"),
        pytest.param("books:\n  - 102\n  - 101\n", id="order-changed"),
    ],
)
def test_a_changed_list_launches_one_run_with_the_users_config(
    evaluate, project: Project, instance, new_list: str
) -> None:
    project.materialize_raw_books(instance)
    project.write_book_list(new_list)

    requests, _ = evaluate()

    assert len(requests) == 1
    request = requests[0]
    assert request.job_name in (None, PIPELINE_JOB)  # None: the sensor's/schedule's own job
    # The user's run_config.yaml, exactly, not the SPEC defaults (which would train GPT-2 small).
    assert request.run_config == USER_RUN_CONFIG
    assert dg.validate_run_config(defs.resolve_job_def(PIPELINE_JOB), request.run_config)
    fingerprint = book_list_fingerprint(project.book_list)
    assert request.tags[FINGERPRINT_TAG] == fingerprint
    assert request.run_key == f"change-{request.tags[CHANGE_TAG]}-{fingerprint[:16]}"


def test_without_a_run_config_file_the_run_takes_the_defaults(evaluate, project: Project, instance) -> None:
    (project.data_dir / RUN_CONFIG_FILE).unlink()
    project.materialize_raw_books(instance)
    project.write_book_list("books:\n  - 101\n  - 102\n  - 103\n")
    requests, _ = evaluate()
    assert len(requests) == 1 and requests[0].run_config == {}


def test_a_launched_change_is_not_launched_again(evaluate, project: Project, instance) -> None:
    project.materialize_raw_books(instance)
    evaluate()  # the daemon's first look at the list as materialized
    project.write_book_list("books:\n  - 101\n  - 102\n  - 103\n")
    (request,), _ = evaluate()
    requests, skip = evaluate()  # the run is queued, not yet materializing raw_books
    assert requests == []
    assert f"change {request.tags[CHANGE_TAG]}" in (skip or "") and "already launched" in (skip or "")


def test_once_the_rerun_has_fetched_the_new_list_all_is_quiet_again(
    evaluate, project: Project, instance
) -> None:
    project.materialize_raw_books(instance)
    project.write_book_list("books:\n  - 101\n  - 102\n  - 103\n")
    assert len(evaluate()[0]) == 1

    project.materialize_raw_books(instance)  # the re-run's raw_books step records the new list

    requests, skip = evaluate()
    assert requests == []
    assert "unchanged" in (skip or "")
    assert project.mirror.count(103) == 1  # the new book was fetched, once


def test_an_unusable_book_list_skips_and_says_why(evaluate, project: Project, instance) -> None:
    project.materialize_raw_books(instance)
    project.write_book_list("books:\n  - 101\n  - ../etc/passwd\n")
    requests, skip = evaluate()
    assert requests == []
    assert skip is not None and "books.yaml" in skip and "line 3" in skip


def test_a_broken_run_config_names_the_file(project: Project, instance) -> None:
    project.materialize_raw_books(instance)
    project.write_book_list("books:\n  - 101\n  - 102\n  - 103\n")
    (project.data_dir / RUN_CONFIG_FILE).write_text("ops: [unclosed\n", encoding="utf-8")
    with pytest.raises(ValueError, match=RUN_CONFIG_FILE):
        rerun_if_book_list_changed(instance, project.paths, "sensor")


def _tick(kind: str, project: Project, instance: dg.DagsterInstance) -> list[dg.RunRequest]:
    resources = {"paths": project.paths, "gutenberg": project.gutenberg}
    if kind == "sensor":
        data = book_list_sensor.evaluate_tick(dg.build_sensor_context(instance=instance, resources=resources))
    else:
        context = dg.build_schedule_context(instance=instance, resources=resources,
                                            scheduled_execution_time=dt.datetime.now(dt.timezone.utc))
        data = book_list_schedule.evaluate_tick(context)
    return list(data.run_requests or [])


def test_every_change_reruns_even_back_to_an_earlier_list(evaluate, project: Project, instance) -> None:
    """A -> B -> A -> B: four changes, each launched once; the last B is not mistaken for the first."""
    lists = {"A": "books:\n  - 101\n  - 102\n", "B": "books:\n  - 101\n  - 102\n  - 103\n"}
    project.materialize_raw_books(instance)  # A
    assert evaluate()[0] == []
    launched = []
    for name in ("B", "A", "B"):
        project.write_book_list(lists[name])
        requests, _ = evaluate()
        assert len(requests) == 1, f"the change to {name} launched {len(requests)} runs"
        launched.append(requests[0].run_key)
        assert evaluate()[0] == []  # the same change is not launched twice
        project.materialize_raw_books(instance)  # the run's raw_books records the list
        assert evaluate()[0] == []
    assert len(set(launched)) == 3  # three distinct run keys: the daemon deduplicates none of them


def test_the_sensor_and_the_schedule_launch_one_run_per_change(project: Project, instance) -> None:
    project.materialize_raw_books(instance)
    project.write_book_list("books:\n  - 101\n  - 102\n  - 103\n")
    first = _tick("schedule", project, instance) + _tick("sensor", project, instance)
    assert len(first) == 1 and first[0].tags[CHANGE_TAG] == "1"
    project.write_book_list("books:\n  - 101\n")
    second = _tick("sensor", project, instance) + _tick("schedule", project, instance)
    assert len(second) == 1 and second[0].tags[CHANGE_TAG] == "2"


def test_a_failed_automatic_run_is_not_retried_and_does_not_block_the_next_change(
    project: Project, instance
) -> None:
    project.materialize_raw_books(instance)
    project.write_book_list("books:\n  - 101\n  - 102\n  - 999\n")  # 999: not on the mirror
    (request,) = _tick("sensor", project, instance)
    failed = dg.materialize(  # the launched run, as far as it gets
        [raw_books], instance=instance, tags=request.tags, raise_on_error=False,
        resources={"paths": project.paths,
                   "gutenberg": GutenbergResource(mirror=project.mirror.url, backoff_seconds=0.01)},
    )
    assert not failed.success  # book 999 cannot be had
    assert _tick("sensor", project, instance) == [] and _tick("schedule", project, instance) == []
    project.write_book_list("books:\n  - 101\n  - 102\n  - 103\n")  # the user fixes the list
    (retry,) = _tick("schedule", project, instance)
    assert retry.tags[FINGERPRINT_TAG] == book_list_fingerprint(project.book_list)


# ---- book lists drawn from Gutenberg's catalog ----------------------------------------------------

CATALOG = Path(__file__).resolve().parents[1] / "books" / "fixtures" / "pg_catalog.csv"
DICKENS_TEXTS = (46, 98, 730, 766, 1023, 1400, 24022)  # the catalog fixture's Dickens rows of Type Text
PICKWICK = (  # a row the catalog gains later: a Dickens text with a lower id than Oliver Twist
    '580,Text,1996-07-01,The Pickwick Papers,en,"Dickens, Charles, 1812-1870",'
    '"Pickwick, Samuel (Fictitious character) -- Fiction; England -- Fiction",PR,Browsing: Fiction\n'
)
CATALOG_LIST = 'books:\n  - 101\n  - author: "Dickens, Charles"\n    limit: 2\n'


@pytest.fixture
def catalog_project(project: Project) -> Project:
    project.mirror.add_catalog(CATALOG.read_bytes())
    for book in make_books((580, *DICKENS_TEXTS), paragraphs=3).values():
        project.mirror.add_book(book.book_id, book.raw)
    project.write_book_list(CATALOG_LIST)
    return project


def _raw_books_metadata(instance: dg.DagsterInstance) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey("raw_books"))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def test_a_list_with_an_author_entry_resolves_offline_and_says_which_entry_chose_each_book(
    catalog_project: Project, instance
) -> None:
    catalog_project.materialize_raw_books(instance)
    meta = _raw_books_metadata(instance)
    assert meta["selected_ids"] == [101, 46, 98]  # list order; within the entry, ids ascending, cut to 2
    assert meta["catalog_books"] > 40
    table = meta["chosen_by"]
    assert '| 98 | A Tale of Two Cities | `author: "Dickens, Charles", limit: 2` | 3 |' in table
    assert "| 101 | - | `101` | 2 |" in table
    assert catalog_project.mirror.count("/cache/epub/feeds/pg_catalog.csv") == 1
    catalog_project.materialize_raw_books(instance)  # the cached catalog serves the next run
    assert catalog_project.mirror.count("/cache/epub/feeds/pg_catalog.csv") == 1


def test_editing_a_catalog_entry_reruns_the_pipeline_through_the_sensor(catalog_project: Project, instance) -> None:
    catalog_project.materialize_raw_books(instance)
    assert _tick("sensor", catalog_project, instance) == []
    catalog_project.write_book_list(CATALOG_LIST.replace("limit: 2", "limit: 3"))
    (request,) = _tick("sensor", catalog_project, instance)
    assert request.tags[WHY_TAG] == "books 1 added (730)"


def test_a_catalog_download_that_changes_the_books_reruns_the_pipeline_and_says_why(
    catalog_project: Project, instance
) -> None:
    catalog_project.write_book_list(CATALOG_LIST.replace("limit: 2", "limit: 3"))  # 46, 98, 730
    catalog_project.materialize_raw_books(instance)
    catalog_project.mirror.add_catalog(CATALOG.read_bytes() + PICKWICK.encode())  # Gutenberg adds a book
    assert _tick("sensor", catalog_project, instance) == []  # the sensor reads only the cached catalog
    config = {**USER_RUN_CONFIG, "ops": {**USER_RUN_CONFIG["ops"],
                                         "raw_books": {"config": {"catalog_max_age_days": 0}}}}
    (catalog_project.data_dir / RUN_CONFIG_FILE).write_text(yaml.safe_dump(config), encoding="utf-8")
    (request,) = _tick("schedule", catalog_project, instance)  # hourly: an expired catalog is fetched
    assert request.tags[WHY_TAG].startswith("books 1 added (580); 1 removed (730), after the catalog was downloaded")
    assert _tick("sensor", catalog_project, instance) == []  # one run for the change
