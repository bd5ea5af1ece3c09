"""A project folder as a user has it (`llm-assets init`, a book list, a mirror), driven through the CLI.

Runs are real `dagster asset materialize` processes started from the project folder, so they share
the project's instance through its `.env` exactly as two terminals would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from llm_assets.instance import INSTANCE_DIR, init_instance

CLI_TIMEOUT_S = 300


@dataclass(frozen=True)
class CliProject:
    root: Path
    mirror_url: str

    @classmethod
    def create(cls, root: Path, mirror_url: str, book_ids: Iterable[int], dagster_yaml: str | None = None) -> CliProject:
        (root / "data").mkdir(parents=True)
        (root / "data" / "books.yaml").write_text(
            "books:\n" + "".join(f"  - {i}\n" for i in book_ids), encoding="utf-8"
        )
        if dagster_yaml is not None:  # the user's own instance file, then `llm-assets init` (docs/deployment.md)
            (root / INSTANCE_DIR).mkdir()
            (root / INSTANCE_DIR / "dagster.yaml").write_text(dagster_yaml, encoding="utf-8")
        init_instance(root)
        return cls(root=root, mirror_url=mirror_url)

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    def env(self) -> dict[str, str]:
        """The caller's environment without anything that would point Dagster or the pipeline elsewhere."""
        env = {k: v for k, v in os.environ.items()
               if k != "DAGSTER_HOME" and not k.startswith("LLM_ASSETS_") and k != "DAGSTER_PIPES_CONTEXT"}
        env.update(GUTENBERG_MIRROR=self.mirror_url, LLM_DEVICE="cpu", OMP_NUM_THREADS="1")
        return env

    def materialize(self, select: str, config: dict[str, Any] | None = None) -> subprocess.Popen[str]:
        """`dagster asset materialize` in the project folder, in its own process group."""
        command = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "llm_assets", "--select", select]
        if config:
            command += ["--config-json", json.dumps(config)]
        return subprocess.Popen(command, cwd=self.root, env=self.env(), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def instance(self) -> dg.DagsterInstance:
        return dg.DagsterInstance.from_config(str(self.root / INSTANCE_DIR))


def finish(process: subprocess.Popen[str]) -> str:
    """Wait for a CLI run; fail the test with its output if it failed."""
    output, _ = process.communicate(timeout=CLI_TIMEOUT_S)
    assert process.returncode == 0, output[-5000:]
    return output


def kill_group(process: subprocess.Popen[str]) -> None:
    """kill -9 the CLI and every step process it started."""
    os.killpg(process.pid, signal.SIGKILL)
    process.communicate(timeout=30)


def latest(instance: dg.DagsterInstance, asset: str) -> tuple[dict[str, Any], str, str]:
    """(metadata, data version, run id) of the asset's latest materialization."""
    event = instance.get_latest_materialization_event(dg.AssetKey(asset))
    assert event is not None and event.asset_materialization is not None, f"{asset} never materialized"
    materialization = event.asset_materialization
    metadata = {key: value.value for key, value in materialization.metadata.items()}
    return metadata, (materialization.tags or {}).get("dagster/data_version", ""), event.run_id


def run_config_of(instance: dg.DagsterInstance, run_id: str) -> dict[str, Any]:
    run = instance.get_run_by_id(run_id)
    assert run is not None
    return run.run_config


def messages(instance: dg.DagsterInstance, run_id: str) -> list[tuple[float, str]]:
    return [(e.timestamp, str(e.user_message)) for e in instance.all_logs(run_id)]
