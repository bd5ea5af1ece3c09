"""Book-list automation: the sensor launches the pipeline exactly once per change of the list's ids.

Driven in process the way the daemon drives it (see ``automation_harness``): the real sensor on a
real test instance, its cursor kept between ticks, each request's run created in the instance with
the daemon's tags, and ``raw_books`` really materialized against a local mirror.
"""

from __future__ import annotations

import json

import dagster as dg
import pytest

from llm_assets.books.selection import book_list_fingerprint
from llm_assets.definitions import defs
from llm_assets.orchestration.assets import all_assets, config_classes
from llm_assets.orchestration.automation import (
    CATALOG_JOB,
    CHANGE_TAG,
    FINGERPRINT_TAG,
    LEGACY_STATE_FILE,
    PIPELINE_JOB,
    RUN_KEY_TAG,
    WHY_TAG,
    book_list_schedule,
    book_list_sensor,
    llm_pipeline,
)
from llm_assets_tests.orchestration.automation_harness import (  # noqa: F401 - fixtures
    LIST_A,
    LIST_B,
    USER_RUN_CONFIG,
    Project,
    Ticks,
    instance,
    project,
    ticks,
)

FIVE_ASSETS = {"raw_books", "corpus", "tokenizer", "tokenized_dataset", "trained_model"}


def test_the_sensor_launches_the_five_assets_and_automation_is_on_by_default() -> None:
    job = defs.resolve_job_def(PIPELINE_JOB)
    selected = {key.to_user_string() for key in job.asset_layer.executable_asset_keys}
    assert selected == FIVE_ASSETS
    assert book_list_sensor.job_name == PIPELINE_JOB == llm_pipeline.name
    assert book_list_schedule.job_name == CATALOG_JOB  # the hourly schedule only refreshes the catalog
    # On out of the box under `dagster dev`: nobody has to find and flip a switch in the UI.
    assert book_list_sensor.default_status == dg.DefaultSensorStatus.RUNNING
    assert book_list_schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    assert defs.resolve_sensor_def(book_list_sensor.name) is not None
    assert defs.resolve_schedule_def(book_list_schedule.name) is not None


def test_the_value_checks_cover_every_configurable_asset_with_its_own_config_class() -> None:
    """run_config.yaml is checked against each asset's config class: none may be missing or stale."""
    fields = {asset.op.name: asset.op.config_field for asset in all_assets}
    configurable = {name for name, field in fields.items()
                    if field is not None and field.default_provided and isinstance(field.default_value, dict)}
    assert set(config_classes) == configurable
    for name, config_class in config_classes.items():
        assert set(fields[name].default_value) <= set(config_class.model_fields), name  # the asset's own class


def test_nothing_is_launched_before_the_first_materialization(ticks: Ticks) -> None:
    requests, skip = ticks.sensor()
    assert requests == []
    assert skip is not None and "not been materialized" in skip


def test_an_unchanged_list_launches_nothing(ticks: Ticks, project: Project, instance) -> None:
    project.materialize_raw_books(instance)
    requests, skip = ticks.sensor()
    assert requests == [] and "unchanged" in (skip or "")


def test_editing_comments_and_layout_only_launches_nothing(ticks: Ticks, project: Project, instance) -> None:
    project.materialize_raw_books(instance)
    assert ticks.sensor()[0] == []
    project.write_book_list(
        "# My reading list, reformatted.\nbooks:\n  - id: 101\n    title: The first one\n\n  - 102   # still second\n"
    )
    requests, skip = ticks.sensor()
    assert requests == [] and "unchanged" in (skip or "")


@pytest.mark.parametrize(
    "new_list",
    [
        pytest.param(LIST_B, id="book-added"),
        pytest.param("books:\n  - 101\n", id="book-removed"),
        pytest.param("books:\n  - 102\n  - 101\n", id="order-changed"),
    ],
)
def test_a_changed_list_launches_one_run_with_the_users_config(
    ticks: Ticks, project: Project, instance, new_list: str
) -> None:
    project.materialize_raw_books(instance)
    project.write_book_list(new_list)

    (request,), _ = ticks.sensor()

    assert request.job_name in (None, PIPELINE_JOB)  # None: the sensor's own job
    # The user's run_config.yaml, exactly, not the SPEC defaults (which would train GPT-2 small).
    assert request.run_config == USER_RUN_CONFIG
    fingerprint = book_list_fingerprint(project.book_list)
    assert request.tags[FINGERPRINT_TAG] == fingerprint
    assert request.tags[CHANGE_TAG] == "1"
    assert request.run_key.startswith(f"change-1-{fingerprint[:16]}-")
    (run,) = ticks.pipeline_runs()
    assert run.tags[RUN_KEY_TAG] == request.run_key and run.run_config == USER_RUN_CONFIG


def test_without_a_run_config_file_the_run_takes_the_defaults(ticks: Ticks, project: Project, instance) -> None:
    project.run_config_file.unlink()
    project.materialize_raw_books(instance)
    project.write_book_list(LIST_B)
    (request,), _ = ticks.sensor()
    assert request.run_config == {}


def test_a_launched_change_is_not_launched_again(ticks: Ticks, project: Project, instance) -> None:
    project.materialize_raw_books(instance)
    project.write_book_list(LIST_B)
    (request,), _ = ticks.sensor()
    (run,) = ticks.pipeline_runs()  # created: it has not yet materialized raw_books
    for _ in range(2):
        requests, skip = ticks.sensor()
        assert requests == []
        assert f"change {request.tags[CHANGE_TAG]} " in (skip or "") and "already launched" in (skip or "")
        assert run.run_id[:8] in (skip or "") and run.status.value.lower() in (skip or "")
    assert len(ticks.pipeline_runs()) == 1


@pytest.mark.parametrize("cursor_saved", [False, True], ids=["tick-failed", "cursor-saved"])
def test_a_request_whose_run_was_not_created_is_asked_again(
    ticks: Ticks, project: Project, instance, cursor_saved: bool
) -> None:
    project.materialize_raw_books(instance)
    project.write_book_list(LIST_B)
    (lost,), _ = ticks.sensor(create_runs=False, keep_cursor=cursor_saved)  # the daemon stopped mid-tick
    assert ticks.pipeline_runs() == []

    (again,), _ = ticks.sensor()  # the next tick, no edit in between

    assert again.run_key == lost.run_key  # the same change: Dagster could never create it twice
    assert len(ticks.pipeline_runs()) == 1
    assert ticks.sensor()[0] == []


def test_once_the_rerun_has_fetched_the_new_list_all_is_quiet_again(
    ticks: Ticks, project: Project, instance
) -> None:
    project.materialize_raw_books(instance)
    project.write_book_list(LIST_B)
    (request,), _ = ticks.sensor()

    project.materialize_raw_books(instance, tags=request.tags)  # the re-run's raw_books records the new list

    requests, skip = ticks.sensor()
    assert requests == [] and "unchanged" in (skip or "")
    assert project.mirror.count(103) == 1  # the new book was fetched, once


def test_an_unusable_book_list_skips_and_says_why(ticks: Ticks, project: Project, instance) -> None:
    project.materialize_raw_books(instance)
    project.write_book_list("books:\n  - 101\n  - ../etc/passwd\n")
    requests, skip = ticks.sensor()
    assert requests == []
    assert skip is not None and "books.yaml" in skip and "line 3" in skip
    project.write_book_list(LIST_B)  # fixed: the change is launched
    assert len(ticks.sensor()[0]) == 1


def test_a_book_list_path_that_is_a_folder_skips_and_says_why(ticks: Ticks, project: Project, instance) -> None:
    project.materialize_raw_books(instance)
    project.book_list.unlink()
    project.book_list.mkdir()
    requests, skip = ticks.sensor()  # a skip, not a crashed tick
    assert requests == []
    assert skip is not None and str(project.book_list) in skip and "directory" in skip.lower()


@pytest.mark.parametrize(
    ("broken", "named"),
    [
        pytest.param("ops: [unclosed\n", "line 2", id="not-yaml"),
        pytest.param("- just\n- a list\n", "expected a mapping", id="not-a-mapping"),
        pytest.param("ops:\n  tokenizer:\n    config:\n      vocab_sise: 1000\n",
                     "`ops.tokenizer.config.vocab_sise`", id="unknown-key"),
        pytest.param("ops:\n  tokenizr:\n    config: {}\n", "`ops.tokenizr`", id="unknown-op"),
        pytest.param("ops:\n  tokenizer:\n    config:\n      vocab_size: many\n",
                     "`ops.tokenizer.config.vocab_size`", id="wrong-type"),
        pytest.param("ops:\n  trained_model:\n    config:\n      preset: tny\n",
                     "`ops.trained_model.config.preset`", id="unknown-preset"),
    ],
)
def test_a_bad_run_config_skips_naming_file_and_key_and_the_fix_launches_the_change(
    ticks: Ticks, project: Project, instance, broken: str, named: str
) -> None:
    project.materialize_raw_books(instance)
    project.write_book_list(LIST_B)
    project.write_run_config(broken)

    for _ in range(2):  # every tick says so; none crashes, none creates a run
        requests, skip = ticks.sensor()
        assert requests == []
        assert skip is not None and str(project.run_config_file) in skip and named in skip, skip
        assert "Change 1 of the book list" in skip and "waits" in skip
    assert ticks.pipeline_runs() == []

    project.write_run_config("# fixed\n" + json.dumps(USER_RUN_CONFIG))  # the list is not touched again
    (request,), _ = ticks.sensor()
    assert request.tags[CHANGE_TAG] == "1" and request.run_config == USER_RUN_CONFIG
    assert len(ticks.pipeline_runs()) == 1


def test_every_change_reruns_even_back_to_an_earlier_list(ticks: Ticks, project: Project, instance) -> None:
    """A -> B -> A -> B: three changes, each launched once; the last B is not mistaken for the first."""
    project.write_book_list(LIST_A)
    project.materialize_raw_books(instance)
    assert ticks.sensor()[0] == []
    launched = []
    for text in (LIST_B, LIST_A, LIST_B):
        project.write_book_list(text)
        (request,), _ = ticks.sensor()
        launched.append(request.run_key)
        assert ticks.sensor()[0] == []  # the same change is not launched twice
        project.materialize_raw_books(instance, tags=request.tags)  # the run's raw_books records the list
        assert ticks.sensor()[0] == []
    assert len(set(launched)) == 3
    assert [run.tags[CHANGE_TAG] for run in reversed(ticks.pipeline_runs())] == ["1", "2", "3"]


def test_the_sensor_and_the_hourly_schedule_give_one_run_per_change(
    ticks: Ticks, project: Project, instance
) -> None:
    project.materialize_raw_books(instance)
    for number, text in enumerate((LIST_B, "books:\n  - 101\n"), start=1):
        project.write_book_list(text)
        schedule_requests, skip = ticks.schedule()
        assert schedule_requests == [] and "no catalog needed" in (skip or "")  # it never starts the pipeline
        requests = ticks.sensor()[0] + ticks.schedule()[0] + ticks.sensor()[0]
        assert len(requests) == 1 and requests[0].tags[CHANGE_TAG] == str(number)
    assert len(ticks.pipeline_runs()) == 2


def test_a_failed_automatic_run_is_not_retried_and_does_not_block_the_next_change(
    ticks: Ticks, project: Project, instance
) -> None:
    project.materialize_raw_books(instance)
    project.write_book_list("books:\n  - 101\n  - 102\n  - 999\n")  # 999: not on the mirror
    (request,), _ = ticks.sensor(create_runs=False)
    failed = project.materialize_raw_books(  # the launched run, as far as it gets, with the daemon's tags
        instance, tags={**request.tags, RUN_KEY_TAG: request.run_key, "dagster/sensor_name": book_list_sensor.name},
        raise_on_error=False,
    )
    assert not failed.success  # book 999 cannot be had
    requests, skip = ticks.sensor()
    assert requests == [] and "already launched" in (skip or "") and "not retried" in (skip or "")
    assert failed.run_id[:8] in (skip or "")
    project.write_book_list(LIST_B)  # the user fixes the list
    (retry,), _ = ticks.sensor()
    assert retry.tags[FINGERPRINT_TAG] == book_list_fingerprint(project.book_list)
    assert retry.tags[WHY_TAG] == "books 1 added (103)"


def test_a_reset_cursor_never_reuses_an_earlier_changes_run_key(ticks: Ticks, project: Project, instance) -> None:
    """A cursor reset in the UI starts counting again at 1: after A -> B -> A, a reset and B again,
    that change 1 (B) must not share its run key with the first change 1 (B), or it would never run."""
    project.write_book_list(LIST_A)
    project.materialize_raw_books(instance)
    first = []
    for text in (LIST_B, LIST_A):
        project.write_book_list(text)
        (request,), _ = ticks.sensor()
        first.append(request)
        project.materialize_raw_books(instance, tags=request.tags)
    ticks.cursor = None  # reset

    project.write_book_list(LIST_B)
    (again,), _ = ticks.sensor()

    assert again.tags[CHANGE_TAG] == first[0].tags[CHANGE_TAG] == "1"
    assert again.tags[FINGERPRINT_TAG] == first[0].tags[FINGERPRINT_TAG]
    assert again.run_key != first[0].run_key
    assert len(ticks.pipeline_runs()) == 3


def test_an_older_versions_state_file_is_removed_and_never_blocks_a_change(
    ticks: Ticks, project: Project, instance
) -> None:
    project.materialize_raw_books(instance)
    project.write_book_list(LIST_B)
    legacy = project.data_dir / LEGACY_STATE_FILE  # an older version had claimed this change, then lost it
    legacy.write_text(json.dumps({"fingerprint": book_list_fingerprint(project.book_list), "change": 7,
                                  "claimed_by": "schedule"}), encoding="utf-8")
    (request,), _ = ticks.sensor()
    assert request.tags[FINGERPRINT_TAG] == book_list_fingerprint(project.book_list)
    assert not legacy.exists()
    legacy.write_text("{not json", encoding="utf-8")  # even a damaged one, left by a copy of the folder
    assert ticks.sensor()[0] == []
