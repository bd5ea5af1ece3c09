"""Input stamps: a stage whose inputs, configuration and code are unchanged reuses its output.

A stamp records a key (a digest of everything that determines a stage's output) and the plain
report of the run that produced it. Re-running the stage with the same key and the output still on
disk returns that report instead of recomputing, so automation and `--select '*'` re-runs cost
nothing for the stages a change does not touch. A stamp is written only after its output is
complete, so a crash mid-stage leaves no stamp and the next run recomputes.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

_CHUNK = 4 * 2**20


def digest_file(path: Path) -> str:
    """sha256 of a file, streamed so a multi-GB corpus costs no memory."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def stamp_key(**parts: Any) -> str:
    """A digest of named JSON-able parts (upstream digests, config values, code versions)."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()


def load_stamp(stamp_path: Path, key: str, outputs: Iterable[Path]) -> dict[str, Any] | None:
    """The stored report if the stamp matches ``key`` and every output still exists, else None."""
    if not all(Path(p).exists() for p in outputs):
        return None
    try:
        stamp = json.loads(stamp_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(stamp, dict) or stamp.get("key") != key:
        return None
    report = stamp.get("report")
    return report if isinstance(report, dict) else None


def save_stamp(stamp_path: Path, key: str, report: Mapping[str, Any]) -> None:
    """Write the stamp atomically: a reader sees the old stamp or the new one, never half."""
    stamp_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=stamp_path.parent, prefix=f".{stamp_path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"key": key, "report": dict(report)}, f, indent=1, default=str)
        os.replace(tmp, stamp_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
