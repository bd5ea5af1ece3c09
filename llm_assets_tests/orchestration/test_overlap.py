"""Runs that overlap, and runs killed: the data stages stay correct and the catalog describes the disk.

Real `dagster asset materialize` processes on the project's own instance, as the sensor, the
schedule, the UI and the CLI start them. After each test, the tokenizer and the dataset on disk,
and the latest materialization of each, agree, and the run that made each asked for what is there.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from filelock import FileLock

from llm_assets.atomic import versions_dir
from llm_assets.digests import digest_tree
from llm_assets.orchestration.assets import corpus, raw_books, tokenizer
from llm_assets.orchestration.resources import GutenbergResource, PathsResource
from llm_assets.text.dataset import check_dataset
from llm_assets.text.tokenizer import load_tokenizer, train_tokenizer
from llm_assets_tests.gutenberg_server import GutenbergMirror, make_books
from llm_assets_tests.orchestration.projects import CliProject, finish, kill_group, latest, messages, run_config_of

DATA_STAGES = "raw_books,corpus,tokenizer,tokenized_dataset"
BOOK_IDS = (11, 22, 33)


def data_config(vocab_size: int, context_length: int) -> dict:
    return {"ops": {"tokenizer": {"config": {"vocab_size": vocab_size}},
                    "tokenized_dataset": {"config": {"context_length": context_length}}}}


@pytest.fixture(params=["sqlite"])
def project(tmp_path: Path, gutenberg_mirror: GutenbergMirror, request: pytest.FixtureRequest) -> CliProject:
    """A project on the default SQLite instance, or (param "postgres") on a PostgreSQL database.

    A test marked ``big_books`` gets books large enough to be caught in the middle of a stage."""
    paragraphs = 1500 if request.node.get_closest_marker("big_books") else 120
    for book in make_books(BOOK_IDS, paragraphs=paragraphs).values():
        gutenberg_mirror.add_book(book.book_id, book.raw)
    dagster_yaml = None
    if request.param == "postgres":
        server = request.getfixturevalue("postgres_server")
        database = f"t{abs(hash(str(tmp_path))) % 10**12}"
        server.create_database(database)
        dagster_yaml = server.dagster_yaml(database)
    return CliProject.create(tmp_path / "project", gutenberg_mirror.url, BOOK_IDS, dagster_yaml)


@pytest.fixture
def instance(project: CliProject) -> Iterator[dg.DagsterInstance]:
    instance = project.instance()
    yield instance
    instance.dispose()


def assert_disk_and_catalog_agree(project: CliProject, instance: dg.DagsterInstance, strays: bool = False) -> None:
    tokenizer_dir, dataset_dir = project.data / "tokenizer", project.data / "processed_dataset"
    meta, version, run_id = latest(instance, "tokenizer")
    vocab = len(load_tokenizer(tokenizer_dir))
    assert meta["vocab_size"] == vocab and version == digest_tree(tokenizer_dir)
    asked = run_config_of(instance, run_id)["ops"]["tokenizer"]["config"]["vocab_size"]
    assert asked == meta["requested_vocab_size"]  # the run that made it asked for it (a small corpus learns fewer)

    meta, version, run_id = latest(instance, "tokenized_dataset")
    check = check_dataset(dataset_dir, vocab)
    assert check.problems == ()  # every id inside the tokenizer on disk
    assert check.block_lengths == (meta["context_length"],) and meta["tokenizer_vocab"] == vocab
    assert version == digest_tree(dataset_dir, "*.arrow")
    asked = run_config_of(instance, run_id)["ops"]["tokenized_dataset"]["config"]["context_length"]
    assert asked == meta["context_length"]
    for output in ("tokenizer", "processed_dataset", "all_books.txt"):
        assert strays or not list(versions_dir(project.data / output).glob(".tmp-*")), f"stray staging of {output}"


def held_intervals(instance: dg.DagsterInstance, run_ids: list[str], stage: str) -> list[tuple[float, float]]:
    spans = []
    for run_id in run_ids:
        logs = messages(instance, run_id)
        held = [t for t, m in logs if m.startswith(f"{stage}: holding")]
        released = [t for t, m in logs if m.startswith(f"{stage}: releasing")]
        spans.append((held[0], released[0]))
    return sorted(spans)


@pytest.mark.parametrize("project", ["sqlite", "postgres"], indirect=True)
def test_two_overlapping_runs_of_the_data_stages_leave_one_consistent_output(
    project: CliProject, instance: dg.DagsterInstance
) -> None:
    blocker = FileLock(project.data / ".locks" / "tokenizer.lock")
    blocker.acquire()  # hold the tokenizer stage until both runs are queued behind it
    try:
        runs = [project.materialize(DATA_STAGES, data_config(400, 32)),
                project.materialize(DATA_STAGES, data_config(600, 64))]
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            waiting = {r.run_id for r in instance.get_runs()
                       if any("another run is writing the tokenizer output" in m for _, m in messages(instance, r.run_id))}
            if len(waiting) == 2 or any(r.poll() is not None for r in runs):
                break
            time.sleep(0.5)
        assert len(waiting) == 2, "both runs should be waiting for the tokenizer lock"
    finally:
        blocker.release()
    for run in runs:
        finish(run)

    run_ids = [r.run_id for r in instance.get_runs()]
    assert len(run_ids) == 2
    for stage in ("raw_books", "corpus", "tokenizer", "tokenized_dataset"):
        (_, first_end), (second_start, _) = held_intervals(instance, run_ids, stage)
        assert first_end <= second_start, f"two runs wrote {stage} at once"
    assert_disk_and_catalog_agree(project, instance)


@pytest.mark.big_books
def test_a_run_killed_inside_tokenized_dataset_leaves_the_previous_dataset_and_a_clean_rerun(
    project: CliProject, instance: dg.DagsterInstance
) -> None:
    finish(project.materialize(DATA_STAGES, data_config(2000, 32)))
    before = latest(instance, "tokenized_dataset")

    longer_blocks = {"ops": {"tokenized_dataset": {"config": {"context_length": 64}}}}
    killed = project.materialize("tokenized_dataset", longer_blocks)
    staging = versions_dir(project.data / "processed_dataset")
    deadline = time.monotonic() + 120
    while not list(staging.glob(".tmp-*")) and killed.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    assert killed.poll() is None, "the run finished before it could be killed mid-build"
    kill_group(killed)

    assert list(staging.glob(".tmp-*"))  # killed mid-write: its staging folder is left behind
    assert latest(instance, "tokenized_dataset") == before  # nothing recorded for the killed run
    assert_disk_and_catalog_agree(project, instance, strays=True)  # the previous dataset, whole and described

    output = finish(project.materialize("tokenized_dataset", longer_blocks))
    assert "left by a run that was stopped" in output
    assert latest(instance, "tokenized_dataset")[0]["context_length"] == 64
    assert_disk_and_catalog_agree(project, instance)


def test_a_tokenizer_replaced_behind_its_stamp_is_rebuilt_and_says_why(
    tmp_path: Path, gutenberg_mirror: GutenbergMirror
) -> None:
    for book in make_books(BOOK_IDS, paragraphs=60).values():
        gutenberg_mirror.add_book(book.book_id, book.raw)
    data = tmp_path / "data"
    data.mkdir()
    (data / "books.yaml").write_text("books: [11, 22, 33]\n")
    resources = {"paths": PathsResource(data_dir=str(data), checkpoint_dir=str(tmp_path / "ck")),
                 "gutenberg": GutenbergResource(mirror=gutenberg_mirror.url)}
    config = {"ops": {"tokenizer": {"config": {"vocab_size": 500}}}}
    with dg.instance_for_test() as instance:
        assert dg.materialize([raw_books, corpus, tokenizer], instance=instance, resources=resources,
                              run_config=config).success
        # A notebook trains another tokenizer into the same folder, behind the stamp's back.
        train_tokenizer(data / "all_books.txt", data / "tokenizer", vocab_size=300)
        again = dg.materialize([tokenizer], instance=instance, resources=resources, run_config=config)
        meta = latest(instance, "tokenizer")[0]
        logs = [m for _, m in messages(instance, again.run_id)]
    assert meta["reused_previous_output"] is False and meta["vocab_size"] == 500
    assert len(load_tokenizer(data / "tokenizer")) == 500
    assert any("not the one the last build wrote" in m for m in logs)


@pytest.mark.parametrize(
    ("project", "training_lock"),
    [("sqlite", True), ("postgres", False)],  # on PostgreSQL the pool alone keeps trainings apart
    indirect=["project"],
)
def test_two_trainings_started_at_once_never_overlap(
    project: CliProject, instance: dg.DagsterInstance, training_lock: bool
) -> None:
    """One trains, the other waits (for the llm_training pool, or where two SQLite claims race, for
    the training lock), and each trains its own configuration to its own final step."""
    finish(project.materialize(DATA_STAGES, data_config(400, 32)))
    trainings = [
        project.materialize("trained_model", {"ops": {"trained_model": {"config": {
            "preset": "tiny", "max_steps": steps, "save_steps": 2, "logging_steps": 2,
            "training_lock": training_lock}}}})
        for steps in (6, 8)
    ]
    for training in trainings:
        finish(training)
    runs = [r for r in instance.get_runs() if "trained_model" in str(r.asset_selection)]
    assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    spans, waited = [], []
    for run in runs:
        logs = messages(instance, run.run_id)
        started = [t for t, m in logs if m.startswith(("holding the training lock", "training without"))]
        ended = [t for t, m in logs if m.startswith(("releasing the training lock", "training done"))]
        spans.append((started[0], ended[0]))
        waited += [m for _, m in logs if "blocked by limit for pool llm_training" in m or "waiting for it" in m]
    (_, first_end), (second_start, _) = sorted(spans)
    assert first_end <= second_start, f"trainings overlapped: {sorted(spans)}"
    assert waited, "the later training never reported waiting for the other"
    # Each trained to its own final step (the 8-step run continued the 6-step one's checkpoint, which
    # the finished run's tidying then removed: the run folder keeps its last and best checkpoints).
    finals = sorted(
        record.asset_materialization.metadata["global_step"].value
        for record in instance.fetch_materializations(dg.AssetKey("trained_model"), limit=10).records
    )
    assert finals == [6, 8]
