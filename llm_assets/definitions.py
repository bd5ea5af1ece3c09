"""The Definitions: the five assets (their checks run inside them), the resources and the automation
(the pipeline job and its sensor, the catalog refresh job and its hourly schedule)."""

from __future__ import annotations

import dagster as dg

from llm_assets.orchestration.assets import all_assets
from llm_assets.orchestration.automation import (
    book_list_schedule,
    book_list_sensor,
    catalog_refresh,
    llm_pipeline,
)
from llm_assets.orchestration.resources import (
    DeviceResource,
    GutenbergResource,
    PathsResource,
)

# Each step runs in its own process (a crash or OOM in training fails the run cleanly, checkpoints
# kept), forked from a server that imported Dagster, datasets and this package once per run,
# instead of a fresh interpreter importing them again for every step. PyTorch and transformers
# (about 6 s) are left to the one step that trains: a run of the data stages never waits for them.
# Each step opens the instance first: its storage modules (SQLAlchemy, Alembic; 1-1.5 s to import)
# are preloaded too, or every step would import them again. (A name a Dagster release moves is
# skipped by the fork server, costing that time again, nothing else.)
INSTANCE_STORAGE = [
    "dagster._core.instance.factory",
    "dagster._core.storage.root",
    "dagster._core.storage.sqlite_storage",
    "dagster._core.storage.runs.sqlite.sqlite_run_storage",
    "dagster._core.storage.event_log.sqlite.sqlite_event_log",
    "dagster._core.storage.schedules.sqlite.sqlite_schedule_storage",
]
PRELOADED = ["llm_assets.definitions", "datasets", *INSTANCE_STORAGE]
executor = dg.multiprocess_executor.configured({"start_method": {"forkserver": {"preload_modules": PRELOADED}}})

defs = dg.Definitions(
    assets=all_assets,
    executor=executor,
    jobs=[llm_pipeline, catalog_refresh],
    sensors=[book_list_sensor],
    schedules=[book_list_schedule],
    resources={
        "paths": PathsResource(),
        "gutenberg": GutenbergResource(),
        "device": DeviceResource(),
    },
)
