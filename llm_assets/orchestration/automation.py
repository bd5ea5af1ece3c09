"""Re-run the pipeline when the book list changes: a sensor (every 30 s) and an hourly schedule.

Both compare the book list's fingerprint (its normalized ids, so editing a comment is no change)
with the fingerprint recorded on the latest `raw_books` materialization. A change launches the
`llm_pipeline` job with the run configuration the user chose in `<data dir>/run_config.yaml`, so an
automatic run trains the same preset, vocabulary and steps as the user's own runs. Unchanged stages
inside that run reuse their outputs (see llm_assets.stamps), so only what the change touches is
recomputed. Before the pipeline has ever been materialized, nothing is launched: the first run is
the user's to start.
"""


from pathlib import Path
from typing import Any

import dagster as dg
import yaml

from llm_assets.books.booklist import BookListError, book_list_fingerprint
from llm_assets.orchestration.resources import PathsResource

PIPELINE_JOB = "llm_pipeline"
FINGERPRINT_TAG = "llm_assets/book_list_fingerprint"
RUN_CONFIG_FILE = "run_config.yaml"

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


def _already_launched(instance: dg.DagsterInstance, fingerprint: str) -> bool:
    runs = instance.get_runs(filters=dg.RunsFilter(tags={FINGERPRINT_TAG: fingerprint}), limit=1)
    return bool(runs)


def rerun_if_book_list_changed(
    instance: dg.DagsterInstance, paths: PathsResource
) -> dg.RunRequest | dg.SkipReason:
    """The one decision both the sensor and the schedule make."""
    p = paths.paths()
    try:
        fingerprint = book_list_fingerprint(p.book_list)
    except BookListError as error:
        return dg.SkipReason(f"book list not usable, nothing launched: {error}")
    recorded = _recorded_fingerprint(instance)
    if recorded is None:
        return dg.SkipReason("the pipeline has not been materialized yet: start the first run yourself")
    if recorded == fingerprint:
        return dg.SkipReason(f"book list unchanged ({fingerprint[:12]})")
    if _already_launched(instance, fingerprint):
        return dg.SkipReason(f"a run for this book list ({fingerprint[:12]}) was already launched")
    return dg.RunRequest(
        run_key=fingerprint,
        run_config=load_run_config(p.data_dir / RUN_CONFIG_FILE),
        tags={FINGERPRINT_TAG: fingerprint},
    )


@dg.sensor(
    job=llm_pipeline,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Re-runs the pipeline when the book list's ids change.",
)
def book_list_sensor(context: dg.SensorEvaluationContext, paths: PathsResource):
    return rerun_if_book_list_changed(context.instance, paths)


@dg.schedule(
    job=llm_pipeline,
    cron_schedule="0 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly re-check of the book list, in case the sensor was switched off.",
)
def book_list_schedule(context: dg.ScheduleEvaluationContext, paths: PathsResource):
    return rerun_if_book_list_changed(context.instance, paths)
