"""Re-run the pipeline when the book list changes: a sensor (every 30 s) and an hourly schedule.

Each change of the list's books (an edit, or a catalog download that resolves its entries to other
books) is numbered in ``data/.automation.json``; the first of the sensor and the schedule to see a
change that the last ``raw_books`` materialization does not reflect claims it and launches one run,
with ``data/run_config.yaml``. A failed run is not retried: the next change launches again.
"""


import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from llm_assets.atomic import atomic_write_json
from llm_assets.books.booklist import BookListError, load_book_list
from llm_assets.books.catalog import CatalogError
from llm_assets.books.gutenberg import FileUnavailableError
from llm_assets.books.selection import describe_change, resolve_with_catalog
from llm_assets.locks import exclusive
from llm_assets.orchestration.resources import GutenbergResource, PathsResource
from llm_assets.settings import Paths

PIPELINE_JOB = "llm_pipeline"
FINGERPRINT_TAG = "llm_assets/book_list_fingerprint"
CHANGE_TAG = "llm_assets/book_list_change"
WHY_TAG = "llm_assets/why"
RUN_CONFIG_FILE = "run_config.yaml"
STATE_FILE = ".automation.json"

llm_pipeline = dg.define_asset_job(
    PIPELINE_JOB,
    selection=dg.AssetSelection.groups("llm"),
    description="All five stages, from the book list to the trained model.",
)


def load_run_config(path: Path) -> dict[str, Any]:
    """The user's pipeline configuration (Dagster run config), or {} for the defaults."""
    if not path.is_file():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error}); fix it or delete it for the defaults") from error
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: expected a mapping like 'ops: {{trained_model: {{config: ...}}}}'")
    return loaded


def _recorded(instance: dg.DagsterInstance) -> tuple[str | None, list[int]]:
    """The fingerprint and selected ids the last raw_books materialization recorded."""
    event = instance.get_latest_materialization_event(dg.AssetKey("raw_books"))
    if event is None or event.asset_materialization is None:
        return None, []
    metadata = event.asset_materialization.metadata
    fingerprint, ids = metadata.get("book_list_fingerprint"), metadata.get("selected_ids")
    return (None if fingerprint is None else str(fingerprint.value)), (list(ids.value) if ids else [])


def catalog_max_age(run_config: dict[str, Any]) -> timedelta:
    """raw_books' catalog_max_age_days from the automatic runs' configuration (7 days if unset)."""
    raw = run_config.get("ops", {}).get("raw_books", {}).get("config", {})
    return timedelta(days=float(raw.get("catalog_max_age_days", 7.0)))


def _observe(p: Paths, fingerprint: str) -> dict[str, Any]:
    """The change log: the fingerprint last seen, how many changes so far, which one was claimed."""
    path = p.data_dir / STATE_FILE
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = {}
    if state.get("fingerprint") != fingerprint:
        state = {"fingerprint": fingerprint, "change": int(state.get("change", 0)) + 1, "claimed_by": None}
    return state


def rerun_if_book_list_changed(
    instance: dg.DagsterInstance, paths: PathsResource, instigator: str, gutenberg: GutenbergResource | None = None
) -> dg.RunRequest | dg.SkipReason:
    """The one decision the sensor and the schedule share, made under a lock so only one claims a change.

    With ``gutenberg`` (the hourly schedule), a catalog older than raw_books' max age is downloaded
    again first, so a catalog change that changes the list's books re-runs the pipeline too; without
    (the sensor, every 30 s) only the cached catalog is read.
    """
    p = paths.paths()
    run_config = load_run_config(p.data_dir / RUN_CONFIG_FILE)
    try:
        book_list = load_book_list(p.book_list)
        if gutenberg is None:
            resolved, catalog = resolve_with_catalog(book_list, p.raw_dir, None)
        else:
            with gutenberg.client() as client:
                resolved, catalog = resolve_with_catalog(book_list, p.raw_dir, client,
                                                         max_age=catalog_max_age(run_config))
    except (BookListError, CatalogError, FileUnavailableError) as error:
        return dg.SkipReason(f"book list not usable, nothing launched: {error}")
    fingerprint = resolved.fingerprint
    recorded, recorded_ids = _recorded(instance)
    if recorded is None:
        return dg.SkipReason("the pipeline has not been materialized yet: start the first run yourself")
    with exclusive(p.lock("automation"), "the book-list change log"):
        state = _observe(p, fingerprint)
        change, claimed_by = state["change"], state["claimed_by"]
        if recorded == fingerprint:
            reply: dg.RunRequest | dg.SkipReason = dg.SkipReason(f"book list unchanged ({fingerprint[:12]})")
        elif claimed_by is not None:
            reply = dg.SkipReason(
                f"change {change} of the book list ({fingerprint[:12]}) was already launched by the {claimed_by}; "
                "if that run failed, fix the cause and materialize yourself, or edit the list again"
            )
        else:
            state["claimed_by"] = instigator
            why = describe_change(recorded_ids, resolved.ids)
            if catalog is not None and catalog.downloaded:
                why += f", after the catalog was downloaded again ({catalog.reason})"
            reply = dg.RunRequest(
                run_key=f"change-{change}-{fingerprint[:16]}",
                run_config=run_config,
                tags={FINGERPRINT_TAG: fingerprint, CHANGE_TAG: str(change), WHY_TAG: why},
            )
        atomic_write_json(p.data_dir / STATE_FILE, state)
    return reply


@dg.sensor(
    job=llm_pipeline,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Re-runs the pipeline when the book list's ids change.",
)
def book_list_sensor(context: dg.SensorEvaluationContext, paths: PathsResource):
    return _said(context, rerun_if_book_list_changed(context.instance, paths, "sensor"))


@dg.schedule(
    job=llm_pipeline,
    cron_schedule="0 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly re-check of the book list, in case the sensor was switched off.",
)
def book_list_schedule(
    context: dg.ScheduleEvaluationContext, paths: PathsResource, gutenberg: GutenbergResource
):
    return _said(context, rerun_if_book_list_changed(context.instance, paths, "schedule", gutenberg))


def _said(context: Any, reply: dg.RunRequest | dg.SkipReason) -> dg.RunRequest | dg.SkipReason:
    """Put why a run is launched in the tick's log (the skip reasons show in the UI by themselves)."""
    if isinstance(reply, dg.RunRequest):
        context.log.info(f"book list changed: {reply.tags[WHY_TAG]}; launching {PIPELINE_JOB}")
    return reply
