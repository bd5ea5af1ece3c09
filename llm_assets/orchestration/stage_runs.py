"""How a data stage materializes when runs overlap: one writer at a time, checked before published.

The sensor, the schedule, the UI and the CLI all start runs, so two runs of the same stage at once
are normal. A stage holds its lock from before it reads its stamp until after its materialization
is recorded (the asset yields its result inside the lock, and Dagster records the event before the
asset resumes). A new output is written as a staged version; it is checked, digested and stamped
there, and only then published by one link swap. So a failed blocking check publishes nothing, and
a run killed at any point before the swap leaves the catalog, the stamp and the disk describing the
previous output. (Killed in the instant between the swap and Dagster's record, the next run finds
the stamp matching the disk and records it.)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from llm_assets.atomic import new_version, remove_stale_staging, remove_stale_temporaries, require_symlinks
from llm_assets.digests import DigestCache
from llm_assets.locks import exclusive
from llm_assets.settings import Paths
from llm_assets.stamps import check_stamp, save_stamp


@dataclass(frozen=True)
class Recipe:
    """How a stage makes its output. Each callable gets the output's path: staged, or published."""

    build: Callable[[Path], dict[str, Any]]  # writes the output there; returns its report (JSON-able)
    check: Callable[[Path], dict[str, Any]]  # measures the written output; kept as report["check"]
    verdict: Callable[[dict[str, Any]], dg.AssetCheckResult]  # the blocking check, from the measurement
    digest: Callable[[Path], str]  # the output's content digest: its data version


@dataclass(frozen=True)
class StageOutput:
    report: dict[str, Any]
    digest: str  # of the output: the asset's data version
    reused: bool
    check: dg.AssetCheckResult
    published: bool  # False: the new output failed its check and was deleted unpublished


class _Rejected(Exception):
    """Raised inside the staged version's block so that it is deleted unpublished."""

    def __init__(self, report: dict[str, Any], verdict: dg.AssetCheckResult) -> None:
        super().__init__(verdict.description)
        self.report, self.verdict = report, verdict


@contextmanager
def stage_lock(context: dg.AssetExecutionContext, paths: Paths, stage: str) -> Iterator[None]:
    """Hold the stage's lock; refuse first a data folder where outputs could not be published."""
    paths.data_dir.mkdir(parents=True, exist_ok=True)
    require_symlinks(paths.data_dir)
    with exclusive(paths.lock(stage), f"the {stage} output", on_wait=context.log.warning) as lock:
        context.log.info(f"{stage}: holding {lock}")
        yield
        context.log.info(f"{stage}: releasing {lock}")


@contextmanager
def stage_digests(context: dg.AssetExecutionContext, paths: Paths, stage: str) -> Iterator[DigestCache]:
    """The stage's digest cache, ``data/.stamps/<stage>.digests.json``: a file the stage hashed
    before and whose identity has not changed since is not read again (see ``llm_assets.digests``).
    Saved, and summed up in the log, when the block ends. Use it holding the stage's lock: the
    stage is the only writer of its cache."""
    name = f"{stage}.digests.json"
    for stale in remove_stale_temporaries(paths.stamps_dir, name):
        context.log.info(f"{stage}: removed {stale}, left by a run that was stopped")
    cache = DigestCache(paths.stamps_dir / name)
    try:
        yield cache
    finally:
        cache.save()
        context.log.info(f"{stage}: digests: {cache.summary()}")


class Throttled:
    """A progress line at most every ``seconds``, and always the last one. Each line is an event in
    the run's history (a database write, then shown by the UI), so a line per book would cost a
    thousand-book list more time than the work it reports."""

    def __init__(self, log: Callable[[str], None], seconds: float = 2.0) -> None:
        self.log, self.seconds, self._last = log, seconds, float("-inf")

    def __call__(self, message: str, last: bool = False) -> None:
        now = time.monotonic()
        if last or now - self._last >= self.seconds:
            self._last = now
            self.log(message)


def built_in_this_run(context: dg.AssetExecutionContext, asset: str) -> str | None:
    """The data version this run recorded for ``asset``, if this run materialized it."""
    records = context.instance.get_records_for_run(
        context.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
    ).records
    for record in reversed(records):
        materialization = record.asset_materialization
        if materialization is not None and materialization.asset_key == dg.AssetKey(asset):
            return materialization.tags.get("dagster/data_version") if materialization.tags else None
    return None


def build_or_reuse(
    context: dg.AssetExecutionContext,
    paths: Paths,
    stage: str,
    key: str,
    output: Path,
    recipe: Recipe,
    member: str | None = None,
) -> StageOutput:
    """Reuse the stamped output if it is verifiably the one built from ``key``; else build, check,
    stamp and publish it, in that order (``member``: the published thing is that file of the version).

    Call it holding the stage's lock: it also clears what a killed run of the stage left behind.
    """
    stamp = paths.stamps_dir / f"{stage}.json"
    for stale in [*remove_stale_staging(output), *remove_stale_temporaries(stamp.parent, stamp.name)]:
        context.log.info(f"{stage}: removed {stale}, left by a run that was stopped")
    reuse = check_stamp(stamp, key, lambda: recipe.digest(output))
    if reuse.report is not None and reuse.output_digest is not None:
        context.log.info(f"{stage}: {reuse.reason}; reusing {output}")
        return StageOutput(reuse.report, reuse.output_digest, True, recipe.verdict(reuse.report["check"]), True)
    context.log.info(f"{stage}: building ({reuse.reason})")
    try:
        with new_version(output, member=member) as staged:
            written = staged / member if member else staged
            report = recipe.build(written)
            context.log.info(f"{stage}: checking the new version in {staged} before publishing it")
            report["check"] = recipe.check(written)
            verdict = recipe.verdict(report["check"])
            if not verdict.passed:
                raise _Rejected(report, verdict)
            digest = recipe.digest(written)
            save_stamp(stamp, key, digest, report)  # with the version, before anyone can see it
    except _Rejected as rejected:
        context.log.error(f"{stage}: the new version failed its check {rejected.verdict.check_name} and was "
                          f"deleted unpublished; {output} is unchanged")
        return StageOutput(rejected.report, "", False, rejected.verdict, False)
    context.log.info(f"{stage}: published {output} -> {os.path.realpath(output)}")
    return StageOutput(report, digest, False, verdict, True)


def stage_results(
    stage: str, output: Path, out: StageOutput, metadata: dict[str, Any]
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """What the asset yields: its materialization with the check, or, for an output that failed its
    blocking check, the failed check and a failure that says nothing was published."""
    if out.published:
        yield dg.MaterializeResult(metadata=metadata, data_version=dg.DataVersion(out.digest),
                                   check_results=[out.check])
        return
    yield out.check
    raise dg.Failure(
        description=(f"{stage}: the new output failed its blocking check {out.check.check_name} "
                     f"({out.check.description}); nothing was published: {output} is still the previous "
                     "output, and the stages after it did not run. Fix the cause (the check's metadata "
                     "says what it found) and materialize again."),
        metadata=metadata,
    )
