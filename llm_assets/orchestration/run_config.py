"""``data/run_config.yaml``, the configuration automatic runs use, checked before a run is asked for.

A run whose configuration Dagster rejects is never created, and one whose values the assets reject
fails hours later in training. So automation checks the file the way the run would: as YAML, against
the job's config schema (``dagster.validate_run_config``: unknown keys, wrong types), then each
asset's own config class (values: an unknown preset, a negative age). Every problem names the file
and the key, e.g. ``ops.tokenizer.config.vocab_sise``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pydantic
import yaml

RUN_CONFIG_FILE = "run_config.yaml"


class RunConfigError(ValueError):
    """The run configuration file cannot be used; the message names the file and each bad key."""


def load_run_config(path: Path) -> dict[str, Any]:
    """The file as a mapping, or {} when it does not exist (the assets' defaults).

    Raises RunConfigError for a file that cannot be read (a folder), is not YAML, or is not a mapping.
    """
    if not path.exists():
        return {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise RunConfigError(f"{path}: cannot be read ({error}); fix it, or delete it for the defaults") from None
    try:
        loaded = yaml.safe_load(text) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error)
        message = f"{path}{where}: not valid YAML ({problem}); fix it, or delete it for the defaults"
        raise RunConfigError(message) from None
    if not isinstance(loaded, dict):
        raise RunConfigError(f"{path}: expected a mapping like 'ops: {{trained_model: {{config: ...}}}}', "
                             f"found {type(loaded).__name__}")
    return loaded


def _schema_problem(error: Any) -> str:
    """One Dagster config error as "`key`: what is wrong" (its message ends with the whole schema: cut)."""
    levels = list(error.stack.levels)
    data = error.error_data
    names = list(getattr(data, "field_names", None) or [getattr(data, "field_name", None)])
    keys = [".".join([*levels, name]) if name else ".".join(levels) or "(top level)" for name in names]
    summary = error.message.split(" Expected:")[0]
    return f"`{', '.join(keys)}`: {summary}"


def _value_problems(op: str, config_class: type[pydantic.BaseModel], values: Mapping[str, Any]) -> list[str]:
    """What the asset's own config class rejects in ``values`` (Dagster's schema checks types only)."""
    try:
        config_class.model_validate(dict(values))
    except pydantic.ValidationError as error:
        return [f"`ops.{op}.config.{'.'.join(map(str, e['loc']))}`: {e['msg'].removeprefix('Value error, ')}"
                for e in error.errors()]
    return []


def check_run_config(
    path: Path, job: dg.JobDefinition, config_classes: Mapping[str, type[pydantic.BaseModel]]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the file as written, the configuration the run would get, defaults filled in).

    Raises RunConfigError naming the file and every bad key, so the caller can skip with that reason.
    """
    run_config = load_run_config(path)
    try:
        resolved = dg.validate_run_config(job, run_config)
    except dg.DagsterInvalidConfigError as error:
        raise RunConfigError(f"{path}: " + "; ".join(_schema_problem(e) for e in error.errors)) from None
    problems = [
        problem
        for op, config_class in config_classes.items()
        for problem in _value_problems(op, config_class, resolved.get("ops", {}).get(op, {}).get("config") or {})
    ]
    if problems:
        raise RunConfigError(f"{path}: " + "; ".join(problems))
    return run_config, resolved
