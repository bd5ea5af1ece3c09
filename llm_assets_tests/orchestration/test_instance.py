"""One persistent instance: `llm-assets init`, then every CLI run lands in the history the UI shows.

The CLI run here is real: `dagster asset materialize` in a subprocess from a project folder, with no
DAGSTER_HOME in its environment, so only the `.env` that `llm-assets init` wrote can have pointed it
at the project's instance. Reading the run back from that folder afterwards is exactly what
`dagster dev` does when it (re)starts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from llm_assets.instance import DAGSTER_YAML, INSTANCE_DIR
from llm_assets_tests.gutenberg_server import GutenbergMirror, make_books

CLI_TIMEOUT_S = 240


def _llm_assets_command() -> list[str]:
    """The installed console script, as the README runs it."""
    script = Path(sys.executable).with_name("llm-assets")
    found = str(script) if script.is_file() else shutil.which("llm-assets")
    if found is None:
        pytest.fail("the `llm-assets` command is not installed: run `pip install -e .` first")
    return [found]


def _clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without anything that would point Dagster or the pipeline elsewhere."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k != "DAGSTER_HOME" and not k.startswith("LLM_ASSETS_") and k != "GUTENBERG_MIRROR"
    }
    env.update(extra)
    return env


def _run(command: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=CLI_TIMEOUT_S
    )
    assert done.returncode == 0, (
        f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    )
    return done


def _init(project_dir: Path) -> subprocess.CompletedProcess[str]:
    return _run([*_llm_assets_command(), "init"], project_dir, _clean_env())


def _dagster_home_lines(env_file: Path) -> list[str]:
    return [line for line in env_file.read_text(encoding="utf-8").splitlines() if "DAGSTER_HOME" in line]


def test_init_writes_the_instance_and_an_absolute_dagster_home(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("HF_HOME=/models\nexport DAGSTER_HOME=/somewhere/old\n", encoding="utf-8")

    _init(tmp_path)

    home = tmp_path.resolve() / INSTANCE_DIR
    assert (home / "dagster.yaml").read_text(encoding="utf-8") == DAGSTER_YAML
    env_lines = (tmp_path / ".env").read_text(encoding="utf-8").splitlines()
    assert "HF_HOME=/models" in env_lines  # the user's own settings are kept
    (line,) = _dagster_home_lines(tmp_path / ".env")  # the old one replaced, not added to
    assert line == f"DAGSTER_HOME={home}"
    assert Path(line.split("=", 1)[1]).is_absolute()  # Dagster refuses a relative DAGSTER_HOME


def test_init_again_changes_nothing_and_keeps_edits(tmp_path: Path) -> None:
    _init(tmp_path)
    config = tmp_path / INSTANCE_DIR / "dagster.yaml"
    config.write_text(DAGSTER_YAML + "# my own edit\n", encoding="utf-8")
    env_before = (tmp_path / ".env").read_text(encoding="utf-8")

    _init(tmp_path)

    assert (tmp_path / ".env").read_text(encoding="utf-8") == env_before
    assert config.read_text(encoding="utf-8").endswith("# my own edit\n")


def test_the_instance_allows_one_training_at_a_time(tmp_path: Path) -> None:
    from llm_assets.definitions import defs

    _init(tmp_path)
    instance = dg.DagsterInstance.from_config(str(tmp_path / INSTANCE_DIR))
    try:
        training = instance.event_log_storage.get_concurrency_info("llm_training")
        assert training.limit == 1 and not training.using_default_limit  # set, never raced for on first claim
        pools = {
            key.to_user_string(): defs.resolve_assets_def(key).op.pool
            for key in defs.resolve_asset_graph().get_all_asset_keys()
        }
        assert pools["trained_model"] == "llm_training"
        # Only training is held back: the data stages may run beside a training run.
        assert {name for name, pool in pools.items() if pool} == {"trained_model"}
    finally:
        instance.dispose()


def test_a_cli_run_lands_in_the_projects_history(tmp_path: Path, gutenberg_mirror: GutenbergMirror) -> None:
    books = make_books((201, 202), paragraphs=4)
    for book in books.values():
        gutenberg_mirror.add_book(book.book_id, book.raw)
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "books.yaml").write_text("books:\n  - 201\n  - 202\n", encoding="utf-8")
    _init(project)

    # As a user would type it in the project root: no DAGSTER_HOME exported, default data dir.
    done = _run(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "llm_assets", "--select", "raw_books"],
        project,
        _clean_env(GUTENBERG_MIRROR=gutenberg_mirror.url),
    )

    assert (project / "data" / "raw" / "201.txt").read_bytes() == books[201].raw
    instance = dg.DagsterInstance.from_config(str(project / INSTANCE_DIR))
    try:
        runs = instance.get_runs()
        assert len(runs) == 1, f"expected the CLI run in {project / INSTANCE_DIR}:\n{done.stderr[-3000:]}"
        assert runs[0].status == dg.DagsterRunStatus.SUCCESS
        event = instance.get_latest_materialization_event(dg.AssetKey("raw_books"))
        assert event is not None and event.run_id == runs[0].run_id
        assert event.asset_materialization.metadata["book_ids"].value == [201, 202]
    finally:
        instance.dispose()
