"""Re-run the pipeline when the book list changes, on Dagster's own bookkeeping.

One sensor decides (``book_list_sensor``, every 30 s). Its cursor numbers the changes of the list's
resolved ids, and each change's run key is derived from that number: a change counts as launched
only once Dagster holds a run with its run key. A request whose run could not be created (the
daemon stopped mid-tick) is simply asked again at the next tick, and Dagster never creates two runs
for one key, so a change runs once. A failed run is not retried by itself: its run exists. The
automatic runs use ``data/run_config.yaml``, checked in the tick: a bad file skips the tick with a
reason naming the file and key, and the change is launched at the first tick after the fix.

Ticks never download: the hourly ``book_list_schedule`` launches the ``catalog_refresh`` job when a
list with catalog entries has a catalog older than ``catalog_max_age_days``, so the download has a
run of its own, with a log and retries. A new catalog that changes the list's books is a change like
an edit, and the sensor's run says so.
"""

import dataclasses
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import dagster as dg
from pydantic import Field

from llm_assets.books.booklist import BookListError, load_book_list
from llm_assets.books.catalog import CatalogError
from llm_assets.books.catalog_cache import CATALOG_FILE, CATALOG_LOCK, CATALOG_META_FILE, fetch_catalog
from llm_assets.books.selection import ResolvedBookList, describe_change, resolve_with_catalog
from llm_assets.locks import exclusive
from llm_assets.orchestration.assets import config_classes
from llm_assets.orchestration.metadata import recorded_selection
from llm_assets.orchestration.resources import GutenbergResource, PathsResource
from llm_assets.orchestration.run_config import RUN_CONFIG_FILE as RUN_CONFIG_FILE  # imported from here too
from llm_assets.orchestration.run_config import RunConfigError, check_run_config
from llm_assets.settings import Paths

PIPELINE_JOB = "llm_pipeline"
CATALOG_JOB = "catalog_refresh"
FINGERPRINT_TAG = "llm_assets/book_list_fingerprint"
CHANGE_TAG = "llm_assets/book_list_change"
WHY_TAG = "llm_assets/why"
RUN_KEY_TAG = "dagster/run_key"  # set by Dagster on every run a sensor requests with a run key
SENSOR_NAME_TAG = "dagster/sensor_name"
SENSOR_NAME = "book_list_sensor"
LEGACY_STATE_FILE = ".automation.json"  # the change log of versions before the sensor's cursor; removed

llm_pipeline = dg.define_asset_job(
    PIPELINE_JOB,
    selection=dg.AssetSelection.groups("llm"),
    description="All five stages, from the book list to the trained model.",
)


# ---- the sensor -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Seen:
    """The sensor's cursor: what it saw at its last tick, and how many changes it has counted.

    ``series`` is part of every run key. A cursor starts with the run that last materialized
    raw_books: a first tick whose cursor was lost gets the same run key again (no second run),
    while a cursor reset later, after the list was fetched again, never reuses an earlier change's.
    """

    series: str
    change: int = 0  # changes of the resolved ids seen so far
    fingerprint: str | None = None  # the resolved ids' fingerprint at the last tick
    book_list: str | None = None  # digest of the list's path and bytes then
    catalog: str | None = None  # the cached catalog's stamp then (size, time, inode of its files):
    # which of the two changed tells an edit from a catalog download in the run's reason
    by_catalog: bool = False  # the current change came with a new catalog, not an edit

    @classmethod
    def load(cls, cursor: str | None, recorded: "Recorded") -> "Seen":
        """The cursor as stored; a new series when there is none (or it is not ours)."""
        try:
            return cls(**json.loads(cursor)) if cursor else cls(series=recorded.run_id[:8])
        except (TypeError, ValueError):
            return cls(series=recorded.run_id[:8])

    def dump(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @property
    def run_key(self) -> str:
        return f"change-{self.change}-{(self.fingerprint or '')[:16]}-{self.series}"

    def observe(self, fingerprint: str, book_list: str, catalog: str, recorded: str) -> "Seen":
        """This tick's view; a fingerprint other than the last one seen (at first: the recorded one)
        is a new change, even one back to an earlier list."""
        previous = self.fingerprint if self.fingerprint is not None else recorded
        now = dataclasses.replace(self, fingerprint=fingerprint, book_list=book_list, catalog=catalog)
        if fingerprint == previous:
            return now
        by_catalog = self.catalog is not None and catalog != self.catalog and book_list == self.book_list
        return dataclasses.replace(now, change=self.change + 1, by_catalog=by_catalog)


@dataclass(frozen=True)
class Recorded:
    """What the last raw_books materialization recorded: the list it fetched, and which run did."""

    fingerprint: str
    run_id: str
    metadata: Mapping[str, dg.MetadataValue]

    def ids(self) -> list[int]:
        """The ids it selected (read only for a run's reason: a long list's are in a file); [] if
        no longer readable, and the reason then names no books."""
        return recorded_selection(self.metadata)


def _recorded(instance: dg.DagsterInstance) -> Recorded | None:
    """The fingerprint the last raw_books materialization recorded, and its run (None: never)."""
    event = instance.get_latest_materialization_event(dg.AssetKey("raw_books"))
    if event is None or event.asset_materialization is None:
        return None
    metadata = event.asset_materialization.metadata
    fingerprint = metadata.get("book_list_fingerprint")
    return None if fingerprint is None else Recorded(str(fingerprint.value), event.run_id, metadata)


def _stamp(path: Path) -> str:
    """Size, modification time and inode: a file replaced by a download gets a new stamp."""
    try:
        info = path.stat()
    except FileNotFoundError:
        return "-"
    return f"{info.st_size}:{info.st_mtime_ns}:{info.st_ino}"


def _inputs(p: Paths) -> tuple[str, str]:
    """Digests of what resolving the list reads: the list's bytes, and the cached catalog's stamp.

    Raises OSError when the list cannot be read (a folder, no permission), for the skip reason.
    """
    book_list = hashlib.sha256(str(p.book_list.resolve()).encode() + b"\0" + p.book_list.read_bytes()).hexdigest()
    return book_list, _stamp(p.raw_dir / CATALOG_FILE) + "|" + _stamp(p.raw_dir / CATALOG_META_FILE)


def _resolve(p: Paths) -> ResolvedBookList:
    """The list resolved against the cached catalog only: a tick never downloads (and an unchanged
    list against an unchanged catalog is read back from the resolution cache, not resolved again)."""
    return resolve_with_catalog(load_book_list(p.book_list), p.raw_dir, None)[0]


def _launched(instance: dg.DagsterInstance, run_key: str) -> dg.DagsterRun | None:
    """The run Dagster created for this run key, if any: what "launched" means."""
    runs = instance.get_runs(filters=dg.RunsFilter(tags={RUN_KEY_TAG: run_key, SENSOR_NAME_TAG: SENSOR_NAME}), limit=1)
    return runs[0] if runs else None


def _already_launched(seen: Seen, run: dg.DagsterRun) -> str:
    """Why nothing is asked for: the change has its run (named, with its status, to look it up)."""
    what = (f"change {seen.change} of the book list ({(seen.fingerprint or '')[:12]}) was already launched: "
            f"run {run.run_id[:8]} ({run.status.value.lower()})")
    if run.status in (dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED):
        return what + "; it is not retried by itself: fix the cause and materialize yourself, or edit the list again"
    return what


def decide(
    instance: dg.DagsterInstance, p: Paths, cursor: str | None, job: dg.JobDefinition
) -> tuple[dg.RunRequest | dg.SkipReason, str | None]:
    """The tick's answer and the cursor to keep. Reads the list, the cached catalog and Dagster's
    records; it launches nothing itself (Dagster creates the run of a request, once per run key)."""
    recorded = _recorded(instance)
    if recorded is None:
        return dg.SkipReason("the pipeline has not been materialized yet: start the first run yourself"), cursor
    seen = Seen.load(cursor, recorded)
    try:
        book_list, catalog = _inputs(p)
        resolved = _resolve(p)
    except (BookListError, CatalogError, OSError) as error:
        return dg.SkipReason(f"book list {p.book_list} not usable, nothing launched: {error}"), cursor
    fingerprint = resolved.fingerprint
    now = seen.observe(fingerprint, book_list, catalog, recorded.fingerprint)
    if fingerprint == recorded.fingerprint:
        return dg.SkipReason(f"book list unchanged ({fingerprint[:12]})"), now.dump()
    run = _launched(instance, now.run_key)
    if run is not None:
        return dg.SkipReason(_already_launched(now, run)), now.dump()
    try:
        run_config, _ = check_run_config(p.data_dir / RUN_CONFIG_FILE, job, config_classes)
    except RunConfigError as error:
        return dg.SkipReason(f"{str(error).rstrip('.')}. Change {now.change} of the book list ({fingerprint[:12]}) "
                             "waits: it is launched at the first tick after the file is fixed"), now.dump()
    before = recorded.ids()
    why = describe_change(before, resolved.ids) if before else "the book list's books changed"
    if now.by_catalog:
        why += ", after the catalog was downloaded again"
    tags = {FINGERPRINT_TAG: fingerprint, CHANGE_TAG: str(now.change), WHY_TAG: why}
    return dg.RunRequest(run_key=now.run_key, run_config=run_config, tags=tags), now.dump()


@dg.sensor(
    name=SENSOR_NAME,
    job=llm_pipeline,
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Re-runs the pipeline, once per change, when the book list's resolved ids change.",
)
def book_list_sensor(context: dg.SensorEvaluationContext, paths: PathsResource) -> dg.SensorResult:
    p = paths.paths()
    if not context.cursor:  # the first tick of this version: its change log is the cursor now
        (p.data_dir / LEGACY_STATE_FILE).unlink(missing_ok=True)
    job = context.repository_def.get_job(PIPELINE_JOB)
    reply, cursor = decide(context.instance, p, context.cursor, job)
    if isinstance(reply, dg.RunRequest):
        context.log.info(f"book list changed: {reply.tags[WHY_TAG]}; asking for {PIPELINE_JOB} ({reply.run_key})")
        return dg.SensorResult(run_requests=[reply], cursor=cursor)
    return dg.SensorResult(skip_reason=reply, cursor=cursor)


# ---- the catalog refresh: a run of its own ---------------------------------------------------------

class CatalogRefreshConfig(dg.Config):
    max_age_days: float = Field(
        default=7.0, ge=0, description="Download the catalog again when the cached copy is older than this."
    )


@dg.op(
    retry_policy=dg.RetryPolicy(max_retries=2, delay=60, backoff=dg.Backoff.EXPONENTIAL),
    description="Download Project Gutenberg's catalog into data/raw/ when the cached copy is older than max_age_days.",
)
def gutenberg_catalog(
    context: dg.OpExecutionContext, config: CatalogRefreshConfig, paths: PathsResource, gutenberg: GutenbergResource
) -> None:
    raw_dir = paths.paths().raw_dir
    with exclusive(raw_dir / CATALOG_LOCK, "Project Gutenberg's catalog", on_wait=context.log.info), \
            gutenberg.client() as client:
        cached = fetch_catalog(raw_dir, client, max_age=timedelta(days=config.max_age_days))
    if cached.stale:  # the old copy stays in use; fail, so the retry policy and the run's status say so
        raise dg.Failure(description=f"the catalog could not be downloaded again: {cached.reason}")
    action = f"downloaded from {cached.url}" if cached.downloaded else "kept"
    context.log.info(f"catalog {cached.path} {action} ({cached.reason})")


@dg.job(
    name=CATALOG_JOB,
    executor_def=dg.in_process_executor,
    description="Refresh Project Gutenberg's catalog, which author:, title:, subject: and bookshelf: entries use.",
)
def catalog_refresh() -> None:
    gutenberg_catalog()


def _catalog_due(raw_dir: Path, max_age: timedelta) -> str | None:
    """Why the cached catalog should be downloaded again now, or None (judged by the file's age)."""
    try:
        age = timedelta(seconds=time.time() - (raw_dir / CATALOG_FILE).stat().st_mtime)
    except FileNotFoundError:
        return "no cached catalog"
    days = age.total_seconds() / 86400
    return f"the cached catalog is {days:.1f} days old (catalog_max_age_days: {max_age / timedelta(days=1):g})" \
        if age > max_age else None


def catalog_refresh_request(
    instance: dg.DagsterInstance, p: Paths, job: dg.JobDefinition
) -> dg.RunRequest | dg.SkipReason:
    """A catalog_refresh run when the list uses the catalog and the cached copy is too old, with
    raw_books' ``catalog_max_age_days`` from data/run_config.yaml (one setting for both)."""
    try:
        if not load_book_list(p.book_list).needs_catalog:
            return dg.SkipReason("the book list has no author:, title:, subject: or bookshelf: entry: "
                                 "no catalog needed")
    except (BookListError, OSError) as error:
        return dg.SkipReason(f"book list {p.book_list} not usable: {error}")
    try:
        _, resolved = check_run_config(p.data_dir / RUN_CONFIG_FILE, job, config_classes)
    except RunConfigError as error:
        return dg.SkipReason(f"{error}; the catalog is refreshed after the file is fixed")
    max_age_days = float(resolved["ops"]["raw_books"]["config"]["catalog_max_age_days"])
    due = _catalog_due(p.raw_dir, timedelta(days=max_age_days))
    if due is None:
        return dg.SkipReason(f"the cached catalog is younger than catalog_max_age_days ({max_age_days:g})")
    unfinished = instance.get_runs(filters=dg.RunsFilter(job_name=CATALOG_JOB, statuses=[
        dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.NOT_STARTED, dg.DagsterRunStatus.STARTING,
        dg.DagsterRunStatus.STARTED]), limit=1)
    if unfinished:
        return dg.SkipReason(f"{due}; run {unfinished[0].run_id[:8]} is refreshing it already")
    return dg.RunRequest(run_config={"ops": {"gutenberg_catalog": {"config": {"max_age_days": max_age_days}}}},
                         tags={WHY_TAG: due})


@dg.schedule(
    job=catalog_refresh,
    cron_schedule="0 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
    description="Hourly: launches catalog_refresh when the book list uses the catalog and the cached copy "
    "is older than catalog_max_age_days. It never launches the pipeline: book_list_sensor does.",
)
def book_list_schedule(context: dg.ScheduleEvaluationContext, paths: PathsResource) -> dg.RunRequest | dg.SkipReason:
    job = context.repository_def.get_job(PIPELINE_JOB)
    reply = catalog_refresh_request(context.instance, paths.paths(), job)
    if isinstance(reply, dg.RunRequest):
        context.log.info(f"{reply.tags[WHY_TAG]}: launching {CATALOG_JOB}")
    return reply
