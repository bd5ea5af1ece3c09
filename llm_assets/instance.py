"""One persistent Dagster instance for the project, shared by `dagster dev` and the CLI.

Without DAGSTER_HOME each command uses a throw-away instance; both commands read `.env` from the
working directory, so `llm-assets init` writes DAGSTER_HOME there once.
"""

from __future__ import annotations

import re
from pathlib import Path

INSTANCE_DIR = ".dagster_home"

# One training run at a time, whoever launches it: trained_model declares this pool. `init` sets its
# limit in the instance itself, because Dagster 1.13 writes a pool's default limit on its first claim,
# and on PostgreSQL two runs making that first claim at once make one of them fail (unique key). The
# default below covers any other pool a user adds. Other stages run freely.
TRAINING_POOL = "llm_training"
TRAINING_POOL_LIMIT = 1

DAGSTER_YAML = """\
# Written by `llm-assets init`. See the README ("One history, one training at a time").
concurrency:
  pools:
    default_limit: 1
telemetry:
  enabled: false
"""


def init_instance(project_dir: Path) -> Path:
    """Create the instance folder, record the training pool's limit, and point `.env` at it.

    Safe to run again: an existing dagster.yaml (the user's, e.g. PostgreSQL storage) is kept, other
    `.env` lines are kept, and a limit the user set on the pool is left as it is."""
    project_dir = project_dir.resolve()
    home = project_dir / INSTANCE_DIR
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML, encoding="utf-8")
    _set_training_pool_limit(home)
    env_file = project_dir / ".env"
    lines = env_file.read_text(encoding="utf-8").splitlines() if env_file.exists() else []
    lines = [line for line in lines if not re.match(r"\s*(export\s+)?DAGSTER_HOME\s*=", line)]
    lines.append(f"DAGSTER_HOME={home}")
    env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return home


def _set_training_pool_limit(home: Path) -> None:
    import dagster as dg

    instance = dg.DagsterInstance.from_config(str(home))
    try:
        storage = instance.event_log_storage
        info = storage.get_concurrency_info(TRAINING_POOL) if storage.supports_global_concurrency_limits else None
        if info is not None and (info.limit is None or info.using_default_limit):
            storage.set_concurrency_slots(TRAINING_POOL, TRAINING_POOL_LIMIT)
    finally:
        instance.dispose()
