"""How a data stage materializes when runs overlap: one writer at a time, verified reuse, true metadata.

The sensor, the schedule, the UI and the CLI all start runs, so two runs of the same stage at once
are normal. A stage holds its lock from before it reads its stamp until after its materialization
is recorded (the asset yields its result inside the lock, and Dagster records the event before the
asset resumes), so the catalog's latest entry always describes the output on disk.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from llm_assets.atomic import remove_stale_staging, remove_stale_temporaries
from llm_assets.locks import exclusive
from llm_assets.settings import Paths
from llm_assets.stamps import check_stamp, save_stamp


@dataclass(frozen=True)
class StageOutput:
    report: dict[str, Any]
    digest: str  # of the output on disk: the asset's data version
    reused: bool


@contextmanager
def stage_lock(context: dg.AssetExecutionContext, paths: Paths, stage: str) -> Iterator[None]:
    with exclusive(paths.lock(stage), f"the {stage} output", on_wait=context.log.warning) as lock:
        context.log.info(f"{stage}: holding {lock}")
        yield
        context.log.info(f"{stage}: releasing {lock}")


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
    build: Callable[[], dict[str, Any]],
    digest: Callable[[], str],
) -> StageOutput:
    """Reuse the stamped output if it is verifiably the one built from ``key``; else build and stamp.

    Call it holding the stage's lock: it also clears what a killed run of the stage left behind.
    """
    stamp = paths.stamps_dir / f"{stage}.json"
    for stale in [*remove_stale_staging(output), *remove_stale_temporaries(stamp.parent, stamp.name)]:
        context.log.info(f"{stage}: removed {stale}, left by a run that was stopped")
    reuse = check_stamp(stamp, key, digest)
    if reuse.report is not None and reuse.output_digest is not None:
        context.log.info(f"{stage}: {reuse.reason}; reusing {output}")
        return StageOutput(reuse.report, reuse.output_digest, True)
    context.log.info(f"{stage}: building ({reuse.reason})")
    report = build()
    written = digest()
    save_stamp(stamp, key, written, report)
    return StageOutput(report, written, False)
