"""Stamps: a data stage whose inputs, configuration and code are unchanged reuses its output.

A stamp records a key (a digest of everything that determines the stage's output), the digest of
the output it wrote, and the report of the run that wrote it. Before reuse, the output on disk is
digested again and must match: a tokenizer rebuilt from a notebook, or a crash between writing the
stamp of a staged output and publishing it (stages stamp first: see ``orchestration.stage_runs``),
is rebuilt, and the reason is said.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llm_assets.atomic import atomic_write_json


@dataclass(frozen=True)
class Reuse:
    """The stored report when the output may be reused; otherwise why it may not."""

    report: dict[str, Any] | None
    output_digest: str | None
    reason: str


def stamp_key(**parts: Any) -> str:
    """A digest of named JSON-able parts (upstream digests, config values, code versions)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def check_stamp(stamp_path: Path, key: str, output_digest: Callable[[], str]) -> Reuse:
    """May the stage reuse its output? Only if the key matches and the output is the one stamped."""
    try:
        stamp = json.loads(Path(stamp_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Reuse(None, None, "no record of an earlier build")
    if not isinstance(stamp, dict) or not isinstance(stamp.get("report"), dict):
        return Reuse(None, None, f"{stamp_path} is not a stamp")
    if stamp.get("key") != key:
        return Reuse(None, None, "inputs, configuration or code changed since the last build")
    try:
        current = output_digest()
    except (OSError, ValueError) as exc:
        return Reuse(None, None, f"the output of the last build is missing or unreadable ({exc})")
    if current != stamp.get("output_digest"):
        return Reuse(None, current, "the output on disk is not the one the last build wrote "
                     "(changed outside a run, or a run stopped before recording it)")
    return Reuse(stamp["report"], current, "inputs, configuration, code and output unchanged")


def save_stamp(stamp_path: Path, key: str, output_digest: str, report: Mapping[str, Any]) -> None:
    atomic_write_json(stamp_path, {"key": key, "output_digest": output_digest, "report": dict(report)})
