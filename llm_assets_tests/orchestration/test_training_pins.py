"""A long training keeps the data it started with while the data stages publish new versions."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from llm_assets_tests.gutenberg_server import GutenbergMirror, make_books
from llm_assets_tests.orchestration.projects import CliProject, finish, latest, messages

from llm_assets.digests import digest_tree
from llm_assets.text.dataset import unigram_entropy

DATA_STAGES = "raw_books,corpus,tokenizer,tokenized_dataset"
BOOK_IDS = (11, 22, 33)


def data_config(context_length: int) -> dict:
    return {"ops": {"tokenizer": {"config": {"vocab_size": 400}},
                    "tokenized_dataset": {"config": {"context_length": context_length}}}}


@pytest.fixture
def project(tmp_path: Path, gutenberg_mirror: GutenbergMirror) -> CliProject:
    for book in make_books(BOOK_IDS, paragraphs=120).values():
        gutenberg_mirror.add_book(book.book_id, book.raw)
    return CliProject.create(tmp_path / "project", gutenberg_mirror.url, BOOK_IDS)


@pytest.fixture
def instance(project: CliProject) -> Iterator[dg.DagsterInstance]:
    instance = project.instance()
    yield instance
    instance.dispose()


def test_a_training_keeps_its_dataset_while_two_data_runs_publish_new_ones(
    project: CliProject, instance: dg.DagsterInstance
) -> None:
    """Two torchrun ranks, each with a DataLoader worker: every process that reads the dataset reads
    the version the asset resolved and holds (the single-process path is the same asset code)."""
    processes, workers = 2, 1
    finish(project.materialize(DATA_STAGES, data_config(32)))
    started_with = Path(os.path.realpath(project.data / "processed_dataset"))
    digest = digest_tree(started_with, "*.arrow")
    entropy = unigram_entropy(started_with)

    training = project.materialize("trained_model", {"ops": {"trained_model": {"config": {
        "preset": "tiny", "time_budget_minutes": 2.5, "save_steps": 50, "nproc_per_node": processes,
        "dataloader_workers": workers, "batch_size": 4, "sample_prompts": [],
        "early_stopping_patience": 0}}}})  # it must outlast the two data runs
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and training.poll() is None:
        if any("held until the run ends" in m for r in instance.get_runs() for _, m in messages(instance, r.run_id)):
            break
        time.sleep(0.5)
    for context_length in (48, 64):  # two new datasets published while it trains: three versions in all
        finish(project.materialize(DATA_STAGES, data_config(context_length)))
    assert training.poll() is None, "the training should still be running while the data runs publish"
    assert Path(os.path.realpath(project.data / "processed_dataset")) != started_with
    finish(training)

    metadata, _, run_id = latest(instance, "trained_model")
    assert metadata["dataset_version"] == str(started_with) and metadata["dataset_data_version"] == digest
    # ...taken from the dataset stage's digest cache, without reading the dataset again
    assert any(m.startswith("dataset digest:") and " 0 hashed" in m for _, m in messages(instance, run_id))
    event = instance.get_latest_materialization_event(dg.AssetKey("trained_model"))
    assert event.asset_materialization.tags["dagster/input_data_version/tokenized_dataset"] == digest
    [check] = [e.asset_check_evaluation for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
               if e.asset_check_evaluation.check_name == "model_learned"]
    assert check.metadata["unigram_entropy"].value == pytest.approx(entropy, abs=1e-4)  # its own dataset's
    assert started_with.is_dir()  # held through a publish that pruned beyond two versions
    assert metadata["world_size"] == processes and run_id
