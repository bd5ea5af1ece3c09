"""One persistent Dagster instance for the project, shared by `dagster dev` and the CLI.

Without DAGSTER_HOME each command uses a throw-away instance; both commands read `.env` from the
working directory, so `llm-assets init` writes DAGSTER_HOME there once.
"""

from __future__ import annotations

import re
from pathlib import Path

INSTANCE_DIR = ".dagster_home"

# One training run at a time, whoever launches it: trained_model declares pool "llm_training" and
# every pool without its own limit gets this one. Other stages run freely.
DAGSTER_YAML = """\
# Written by `llm-assets init`. See the README ("One history, one training at a time").
concurrency:
  pools:
    default_limit: 1
telemetry:
  enabled: false
"""


def init_instance(project_dir: Path) -> Path:
    """Create the instance folder and point `.env` at it; safe to run again (keeps other lines)."""
    project_dir = project_dir.resolve()
    home = project_dir / INSTANCE_DIR
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML, encoding="utf-8")
    env_file = project_dir / ".env"
    lines = env_file.read_text(encoding="utf-8").splitlines() if env_file.exists() else []
    lines = [line for line in lines if not re.match(r"\s*(export\s+)?DAGSTER_HOME\s*=", line)]
    lines.append(f"DAGSTER_HOME={home}")
    env_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return home
