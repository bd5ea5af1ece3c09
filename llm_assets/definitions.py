"""The Definitions: the five assets (their checks run inside them), the resources and the automation."""

from __future__ import annotations

import dagster as dg

from llm_assets.orchestration.assets import all_assets
from llm_assets.orchestration.automation import book_list_schedule, book_list_sensor, llm_pipeline
from llm_assets.orchestration.resources import DeviceResource, GutenbergResource, PathsResource

defs = dg.Definitions(
    assets=all_assets,
    jobs=[llm_pipeline],
    sensors=[book_list_sensor],
    schedules=[book_list_schedule],
    resources={
        "paths": PathsResource(),
        "gutenberg": GutenbergResource(),
        "device": DeviceResource(),
        "pipes_subprocess_client": dg.PipesSubprocessClient(),
    },
)
