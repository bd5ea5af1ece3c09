"""A new output is checked and recorded before it is published, and what was there before survives.

Real `dagster asset materialize` processes on the project's own instance. Each test ends by
showing that the latest materialization of each data asset, its stamp and its output on disk
agree: runs killed between building and publishing, outputs that fail their check, folders left
where a link belongs and file systems without symbolic links never leave them apart.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import dagster as dg
import pytest

from llm_assets.atomic import versions_dir
from llm_assets.books.corpus import corpus_digest, resolve_corpus
from llm_assets.digests import digest_tree
from llm_assets_tests.gutenberg_server import GutenbergMirror, make_body, make_book
from llm_assets_tests.orchestration.projects import CLI_TIMEOUT_S, CliProject, finish, latest
from llm_assets_tests.orchestration.test_overlap import (  # noqa: F401 (fixtures)
    DATA_STAGES,
    assert_disk_and_catalog_agree,
    data_config,
    instance,
    project,
)

OUTPUTS = {"tokenizer": "tokenizer", "tokenized_dataset": "processed_dataset", "corpus": "all_books.txt"}


def _stamp_digest(project: CliProject, stage: str) -> str:
    return json.loads((project.data / ".stamps" / f"{stage}.json").read_text())["output_digest"]


def _disk_digest(project: CliProject, stage: str) -> str:
    output = project.data / OUTPUTS[stage]
    if stage == "corpus":
        return corpus_digest(resolve_corpus(output))
    return digest_tree(output, "*.arrow" if stage == "tokenized_dataset" else "*")


def _staged_output_written(staging: Path, stage: str) -> bool:
    """The staged version holds the whole output."""
    for folder in staging.glob(".tmp-*"):
        if stage == "tokenizer" and (folder / "tokenizer.json").is_file():
            return True
        dataset_saved = (folder / "dataset_dict.json").is_file() and not (folder / "scratch").exists()
        if stage == "tokenized_dataset" and dataset_saved:
            return True
    return False


def _stop_between_build_and_publish(run: subprocess.Popen[str], stage: str) -> threading.Thread:
    """SIGSTOP the run the moment its log says the stage built its new version and is checking it.

    The log is read from the run's own output as it comes (the instance's database is not read while
    the run is stopped: it may be stopped inside a write). Returns the thread that drains the output."""
    checking = threading.Event()

    def drain() -> None:
        assert run.stdout is not None
        for line in run.stdout:
            if f"{stage}: checking the new version" in line:
                checking.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    assert checking.wait(CLI_TIMEOUT_S), "the run ended before its stage checked a new version"
    os.killpg(run.pid, signal.SIGSTOP)
    return reader


@pytest.mark.big_books
@pytest.mark.parametrize(("stage", "rebuild", "shown_as"), [
    ("tokenizer", {"vocab_size": 1500}, "requested_vocab_size"),
    ("tokenized_dataset", {"context_length": 64}, "context_length"),
])
def test_a_run_killed_between_build_and_publish_leaves_catalog_stamp_and_disk_agreeing(
    project: CliProject, instance: dg.DagsterInstance, stage: str, rebuild: dict, shown_as: str
) -> None:
    finish(project.materialize(DATA_STAGES, data_config(2000, 32)))
    before, live = latest(instance, stage), (project.data / OUTPUTS[stage]).resolve()

    killed = project.materialize(stage, {"ops": {stage: {"config": rebuild}}})
    reader = _stop_between_build_and_publish(killed, stage)
    assert (project.data / OUTPUTS[stage]).resolve() == live, "published before it could be stopped"
    assert _staged_output_written(versions_dir(project.data / OUTPUTS[stage]), stage)  # built, not published
    os.killpg(killed.pid, signal.SIGKILL)
    killed.wait(30)
    reader.join(30)

    assert (project.data / OUTPUTS[stage]).resolve() == live  # the new version was never published
    assert latest(instance, stage) == before  # nor recorded
    assert _stamp_digest(project, stage) == _disk_digest(project, stage) == before[1]  # nor stamped
    assert list(versions_dir(project.data / OUTPUTS[stage]).glob(".tmp-*"))  # built, left staged
    assert_disk_and_catalog_agree(project, instance, strays=True)

    vocab, context = rebuild.get("vocab_size", 2000), rebuild.get("context_length", 32)
    output = finish(project.materialize("tokenizer,tokenized_dataset", data_config(vocab, context)))
    assert "left by a run that was stopped" in output
    assert latest(instance, stage)[0][shown_as] == next(iter(rebuild.values()))
    assert _stamp_digest(project, stage) == _disk_digest(project, stage) == latest(instance, stage)[1]
    assert_disk_and_catalog_agree(project, instance)


LEAKED = "Donations to the Project Gutenberg Literary Archive Foundation are welcome."


def test_a_corpus_that_fails_its_check_publishes_nothing_and_stops_the_run(
    project: CliProject, instance: dg.DagsterInstance, gutenberg_mirror: GutenbergMirror
) -> None:
    finish(project.materialize(DATA_STAGES, data_config(400, 32)))
    before, live = latest(instance, "corpus"), project.data.joinpath("all_books.txt").resolve()
    lines = make_body(44, "en", 40).split("\n")
    lines.insert(len(lines) // 2, LEAKED)  # a licence line inside a book: the cleaner keeps it, the check finds it
    gutenberg_mirror.add_book(44, make_book(44, body="\n".join(lines)).raw)
    (project.data / "books.yaml").write_text("books: [11, 22, 33, 44]\n")

    failed = project.materialize("raw_books,corpus,tokenizer", {"ops": {"tokenizer": {"config": {"vocab_size": 400}}}})
    output, _ = failed.communicate(timeout=CLI_TIMEOUT_S)
    assert failed.returncode != 0 and "nothing was published" in output

    run = instance.get_runs(limit=1)[0]
    key = dg.AssetCheckKey(dg.AssetKey("corpus"), "corpus_clean")
    check = instance.event_log_storage.get_latest_asset_check_execution_by_key([key])[key]
    assert check.run_id == run.run_id and check.status.value == "FAILED"  # the check is on record
    assert project.data.joinpath("all_books.txt").resolve() == live and LEAKED not in live.read_text()
    assert latest(instance, "corpus") == before  # the catalog still shows what is on disk
    assert _stamp_digest(project, "corpus") == _disk_digest(project, "corpus") == before[1]
    assert latest(instance, "tokenizer")[2] != run.run_id  # the stages after it did not run
    assert not list(versions_dir(project.data / "all_books.txt").glob(".tmp-*"))
    assert_disk_and_catalog_agree(project, instance)


def test_a_folder_where_the_link_belongs_beside_a_leftover_is_migrated_and_the_run_succeeds(
    project: CliProject, instance: dg.DagsterInstance
) -> None:
    finish(project.materialize(DATA_STAGES, data_config(400, 32)))
    tokenizer = project.data / "tokenizer"
    copied = tokenizer.resolve()
    tokenizer.unlink()
    shutil.copytree(copied, tokenizer)  # a real folder, as a copy-publishing platform or a user leaves it
    leftover = versions_dir(tokenizer) / f"{0:020d}-unversioned"  # what an earlier migration left
    leftover.mkdir()
    (leftover / "tokenizer.json").write_text("{}")

    finish(project.materialize("tokenizer,tokenized_dataset", data_config(500, 32)))
    assert tokenizer.is_symlink() and latest(instance, "tokenizer")[0]["requested_vocab_size"] == 500
    kept = sorted(p.name for p in versions_dir(tokenizer).iterdir() if not p.name.startswith("."))
    assert kept == sorted([copied.name, tokenizer.resolve().name])  # the two newest; the folder and the
    # leftover became old versions (named apart) and were pruned like any other
    assert_disk_and_catalog_agree(project, instance)


NO_SYMLINKS = """
import errno, os
_root = os.environ.get("NO_SYMLINKS_UNDER")
if _root:
    _symlink = os.symlink

    def _refuse(source, link, *args, **kwargs):
        if os.path.abspath(link).startswith(_root):
            raise OSError(errno.EPERM, "Operation not permitted", str(link))
        return _symlink(source, link, *args, **kwargs)

    os.symlink = _refuse
"""


def test_without_symlinks_init_and_the_first_stage_refuse_and_say_what_is_needed(
    project: CliProject, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    """Every process of the run (CLI, step processes) sees a data folder where links fail, as on FAT
    or an SMB share mounted without symlink support."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(NO_SYMLINKS)
    env = {**project.env(), "NO_SYMLINKS_UNDER": str(project.root.resolve()),
           "PYTHONPATH": os.pathsep.join([str(site), *filter(None, [os.environ.get("PYTHONPATH")])])}

    init = subprocess.run([sys.executable, "-m", "llm_assets.cli", "init"], cwd=project.root, env=env,
                          capture_output=True, text=True, timeout=CLI_TIMEOUT_S)
    assert init.returncode == 2 and "without symbolic links" in init.stderr
    assert str(project.root.resolve() / "data") in init.stderr and "LLM_ASSETS_DATA_DIR" in init.stderr

    run = subprocess.run([sys.executable, "-m", "dagster", "asset", "materialize", "-m", "llm_assets",
                          "--select", DATA_STAGES], cwd=project.root, env=env, capture_output=True, text=True,
                         timeout=CLI_TIMEOUT_S)
    assert run.returncode != 0
    assert "NoSymlinksError" in run.stdout + run.stderr and "without symbolic links" in run.stdout + run.stderr
    assert not (project.data / "raw").exists()  # refused before the first download
    assert instance.get_latest_materialization_event(dg.AssetKey("raw_books")) is None
