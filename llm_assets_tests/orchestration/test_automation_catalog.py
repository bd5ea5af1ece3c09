"""Book lists drawn from Gutenberg's catalog: the catalog is refreshed in runs, never in ticks.

The hourly schedule asks for a ``catalog_refresh`` run when the cached catalog is older than
``catalog_max_age_days``; the run downloads it (with retries), and when the new catalog changes the
list's books the sensor launches the pipeline once, saying why. Real ticks, a real instance, the
real job run in process against a local mirror (see ``automation_harness``).
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
import yaml

from llm_assets.orchestration.automation import CATALOG_JOB, WHY_TAG, catalog_refresh, gutenberg_catalog
from llm_assets_tests.gutenberg_server import make_books
from llm_assets_tests.orchestration.automation_harness import (  # noqa: F401 - fixtures
    USER_RUN_CONFIG,
    Project,
    Ticks,
    instance,
    project,
    ticks,
)

CATALOG = Path(__file__).resolve().parents[1] / "books" / "fixtures" / "pg_catalog.csv"
CATALOG_PATH = "/cache/epub/feeds/pg_catalog.csv"
DICKENS_TEXTS = (46, 98, 730, 766, 1023, 1400, 24022)  # the catalog fixture's Dickens rows of Type Text
PICKWICK = (  # a row the catalog gains later: a Dickens text with a lower id than Oliver Twist
    '580,Text,1996-07-01,The Pickwick Papers,en,"Dickens, Charles, 1812-1870",'
    '"Pickwick, Samuel (Fictitious character) -- Fiction; England -- Fiction",PR,Category: Novels\n'
)
CATALOG_LIST = 'books:\n  - 101\n  - author: "Dickens, Charles"\n    limit: 2\n'
EXPIRED = {**USER_RUN_CONFIG, "ops": {**USER_RUN_CONFIG["ops"], "raw_books": {"config": {"catalog_max_age_days": 0}}}}


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
    assert catalog_project.mirror.count(CATALOG_PATH) == 1
    catalog_project.materialize_raw_books(instance)  # the cached catalog serves the next run
    assert catalog_project.mirror.count(CATALOG_PATH) == 1


def test_editing_a_catalog_entry_reruns_the_pipeline_through_the_sensor(
    catalog_project: Project, ticks: Ticks, instance
) -> None:
    catalog_project.materialize_raw_books(instance)
    assert ticks.sensor()[0] == []
    catalog_project.write_book_list(CATALOG_LIST.replace("limit: 2", "limit: 3"))
    (request,), _ = ticks.sensor()
    assert request.tags[WHY_TAG] == "books 1 added (730)"
    assert catalog_project.mirror.count(CATALOG_PATH) == 1  # ticks never download


def test_an_old_catalog_is_refreshed_in_a_run_and_the_new_books_rerun_the_pipeline_once(
    catalog_project: Project, ticks: Ticks, instance
) -> None:
    catalog_project.write_book_list(CATALOG_LIST.replace("limit: 2", "limit: 3"))  # 46, 98, 730
    catalog_project.materialize_raw_books(instance)
    assert ticks.sensor()[0] == []
    catalog_project.mirror.add_catalog(CATALOG.read_bytes() + PICKWICK.encode())  # Gutenberg adds a book
    requests, skip = ticks.schedule()
    assert requests == [] and "younger than catalog_max_age_days (7)" in (skip or "")

    catalog_project.write_run_config(yaml.safe_dump(EXPIRED))
    (refresh,), _ = ticks.schedule()  # hourly: the catalog has expired
    assert refresh.job_name in (None, CATALOG_JOB)  # None: the schedule's own job, catalog_refresh
    assert refresh.run_config == {"ops": {"gutenberg_catalog": {"config": {"max_age_days": 0.0}}}}
    assert "days old" in refresh.tags[WHY_TAG]
    assert ticks.sensor()[0] == [] and catalog_project.mirror.count(CATALOG_PATH) == 1  # no tick downloaded

    result = catalog_refresh.execute_in_process(run_config=refresh.run_config, instance=instance,
                                                resources=catalog_project.resources(), tags=refresh.tags)
    assert result.success and catalog_project.mirror.count(CATALOG_PATH) == 2

    (request,), _ = ticks.sensor()
    assert request.tags[WHY_TAG] == "books 1 added (580); 1 removed (730), after the catalog was downloaded again"
    assert ticks.sensor()[0] == []  # one run for the change
    catalog_project.write_run_config(yaml.safe_dump(USER_RUN_CONFIG))
    assert ticks.schedule()[0] == []  # back to 7 days: the new catalog is fresh
    assert len(ticks.pipeline_runs()) == 1


def test_a_failed_catalog_download_fails_its_run_after_retries_and_keeps_the_old_copy(
    catalog_project: Project, instance
) -> None:
    catalog_project.materialize_raw_books(instance)
    cached = catalog_project.data_dir / "raw" / "pg_catalog.csv"
    before = cached.read_bytes()
    catalog_project.mirror.fail(CATALOG_PATH, status=503, times=None)  # Gutenberg is down
    assert gutenberg_catalog.retry_policy is not None and gutenberg_catalog.retry_policy.max_retries >= 1

    @dg.job(executor_def=dg.in_process_executor)
    def quick_retries() -> None:  # the same op, retried without the 60 s wait
        gutenberg_catalog.with_retry_policy(dg.RetryPolicy(max_retries=1))()

    result = quick_retries.execute_in_process(
        run_config={"ops": {"gutenberg_catalog": {"config": {"max_age_days": 0}}}}, instance=instance,
        resources={"paths": catalog_project.paths, "gutenberg": catalog_project.gutenberg(max_attempts=1)},
        raise_on_error=False,
    )

    assert not result.success
    assert catalog_project.mirror.count(CATALOG_PATH) == 1 + 2  # the first download, then two attempts
    failure = result.failure_data_for_node("gutenberg_catalog")
    assert failure is not None and "could not be downloaded again" in str(failure.error)
    assert cached.read_bytes() == before  # raw_books and the sensor keep using the old copy


def test_the_schedule_names_a_broken_run_config_instead_of_crashing(
    catalog_project: Project, ticks: Ticks, instance
) -> None:
    catalog_project.materialize_raw_books(instance)
    catalog_project.write_run_config("ops:\n  raw_books:\n    config:\n      catalog_max_age_days: soon\n")
    requests, skip = ticks.schedule()
    assert requests == []
    assert str(catalog_project.run_config_file) in (skip or "")
    assert "`ops.raw_books.config.catalog_max_age_days`" in (skip or "")
