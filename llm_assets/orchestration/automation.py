"""Re-run the pipeline when the book list changes: a sensor (every 30 s) and an hourly schedule.

Each edit that changes the list's ids is one change, numbered in ``data/.automation.json``; the
first of the sensor and the schedule to see a change that the last ``raw_books`` materialization
does not reflect claims it and launches one run, with ``data/run_config.yaml``. A failed run is not
retried: the next change launches again.
"""


import json
from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from llm_assets.atomic import atomic_write_json
from llm_assets.books.booklist import BookListError, book_list_fingerprint
from llm_assets.locks import exclusive
from llm_assets.orchestration.resources import PathsResource
from llm_assets.settings import Paths

PIPELINE_JOB = "llm_pipeline"
FINGERPRINT_TAG = "llm_assets/book_list_fingerprint"
CHANGE_TAG = "llm_assets/book_list_change"
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


def _recorded_fingerprint(instance: dg.DagsterInstance) -> str | None:
    event = instance.get_latest_materialization_event(dg.AssetKey("raw_books"))
    if event is None or event.asset_materialization is None:
        return None
    value = event.asset_materialization.metadata.get("book_list_fingerprint")
    return None if value is None else str(value.value)


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
    instance: dg.DagsterInstance, paths: PathsResource, instigator: str
) -> dg.RunRequest | dg.SkipReason:
    """The one decision the sensor and the schedule share, made under a lock so only one claims a change."""
    p = paths.paths()
    try:
        fingerprint = book_list_fingerprint(p.book_list)
    except BookListError as error:
        return dg.SkipReason(f"book list not usable, nothing launched: {error}")
    recorded = _recorded_fingerprint(instance)
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
            reply = dg.RunRequest(
                run_key=f"change-{change}-{fingerprint[:16]}",
                run_config=load_run_config(p.data_dir / RUN_CONFIG_FILE),
                tags={FINGERPRINT_TAG: fingerprint, CHANGE_TAG: str(change)},
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
    return rerun_if_book_list_changed(context.instance, paths, "sensor")


@dg.schedule(
    job=llm_pipeline,
    cron_schedule="0 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly re-check of the book list, in case the sensor was switched off.",
)
def book_list_schedule(context: dg.ScheduleEvaluationContext, paths: PathsResource):
    return rerun_if_book_list_changed(context.instance, paths, "schedule")
