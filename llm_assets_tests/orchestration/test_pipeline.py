"""The whole chain, materialized in process on the real Definitions, then used as SPEC.md says."""

from __future__ import annotations

import json
import math
from pathlib import Path

import dagster as dg
import pytest

from llm_assets import cli
from llm_assets.books.corpus import read_corpus_index, resolve_corpus
from llm_assets.definitions import defs
from llm_assets.orchestration.assets import trained_model
from llm_assets.orchestration.automation import PIPELINE_JOB
from llm_assets.orchestration.resources import DeviceResource, PathsResource
from llm_assets_tests.gutenberg_server import GutenbergMirror, make_books

BOOK_IDS = (11, 22, 33)
CONTEXT = 64
TINY = {
    "ops": {
        "tokenizer": {"config": {"vocab_size": 600}},
        "tokenized_dataset": {"config": {"context_length": CONTEXT}},
        "trained_model": {
            # Every logged step reaches the chart (no pacing), so the points below are exact.
            "config": {"preset": "tiny", "max_steps": 40, "save_steps": 20, "logging_steps": 10,
                       "progress_interval_seconds": 0}
        },
    }
}
SPEC_METADATA_KEYS = {
    "device", "precision", "preset", "parameters", "batch_size", "train_tokens",
    "tokens_per_second", "train_loss", "eval_loss", "perplexity", "resumed_from_step",
    "world_size", "model_dir",
}


@pytest.fixture
def project(tmp_path: Path, gutenberg_mirror: GutenbergMirror, monkeypatch: pytest.MonkeyPatch):
    books = make_books(BOOK_IDS, paragraphs=120)
    for book_id, book in books.items():
        gutenberg_mirror.add_book(book_id, book.raw)
    data = tmp_path / "data"
    data.mkdir()
    (data / "books.yaml").write_text("books:\n  - 11\n  - id: 22\n  - 33  # a comment\n")
    monkeypatch.setenv("LLM_ASSETS_DATA_DIR", str(data))
    monkeypatch.setenv("LLM_ASSETS_CHECKPOINT_DIR", str(tmp_path / "checkpoints"))
    monkeypatch.setenv("GUTENBERG_MIRROR", gutenberg_mirror.url)
    monkeypatch.setenv("LLM_DEVICE", "cpu")
    monkeypatch.delenv("LLM_ASSETS_BOOK_LIST", raising=False)
    return {"data": data, "checkpoints": tmp_path / "checkpoints", "books": books,
            "mirror": gutenberg_mirror}


def _run(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def(PIPELINE_JOB)
    return job.execute_in_process(run_config=TINY, instance=instance)


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    [event] = result.asset_materializations_for_node(asset)
    return {key: value.value for key, value in event.metadata.items()}


def _chart_points(instance: dg.DagsterInstance, run_id: str) -> list[dict]:
    """The live chart's points: trained_model's observations during the run, in order."""
    records = instance.get_records_for_run(run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION).records
    return [{k: v.value for k, v in r.event_log_entry.asset_observation.metadata.items()} for r in records]


def test_pipeline_end_to_end(project, capsys):
    from datasets import load_from_disk
    from transformers import AutoModelForCausalLM, AutoTokenizer

    instance = dg.DagsterInstance.ephemeral()
    result = _run(instance)
    assert result.success

    # Every asset check ran and passed.
    checks = result.get_asset_check_evaluations()
    assert {c.check_name for c in checks} >= {
        "raw_books_intact", "corpus_clean", "tokenizer_round_trips", "dataset_blocks_valid",
        "model_learned", "model_reloads_and_generates",
    }
    assert all(c.passed for c in checks), [(c.check_name, c.description) for c in checks if not c.passed]

    data, checkpoints = project["data"], project["checkpoints"]
    # raw_books: bytes exactly as served.
    for book_id, book in project["books"].items():
        assert (data / "raw" / f"{book_id}.txt").read_bytes() == book.raw
    # corpus: UTF-8, LF, the books' bodies in list order, no boilerplate.
    corpus = (data / "all_books.txt").read_bytes().decode("utf-8")
    assert "\r" not in corpus and "PROJECT GUTENBERG" not in corpus.upper()
    positions = [corpus.index(project["books"][i].body.strip().splitlines()[0]) for i in BOOK_IDS]
    assert positions == sorted(positions)
    # tokenizer and dataset load as the SPEC says; every block exactly context_length.
    tok = AutoTokenizer.from_pretrained(data / "tokenizer")
    dsd = load_from_disk(str(data / "processed_dataset"))
    assert set(dsd) == {"train", "validation"}
    for split in dsd.values():
        assert len(split) > 0
        assert {len(row) for row in split["input_ids"]} == {CONTEXT}
    # trained_model: loads from checkpoints/latest with safetensors weights; SPEC metadata keys.
    latest = checkpoints / "latest"
    assert list(latest.glob("*.safetensors"))
    model = AutoModelForCausalLM.from_pretrained(latest)
    assert model.config.vocab_size >= len(tok)
    AutoTokenizer.from_pretrained(latest)
    meta = _metadata(result, "trained_model")
    assert SPEC_METADATA_KEYS <= set(meta)
    assert meta["device"] == "cpu" and meta["preset"] == "tiny" and meta["world_size"] == 1
    assert meta["resumed_from_step"] == 0 and meta["train_tokens"] > 0
    # Bits per byte beside the loss: the dataset counted its validation text's bytes when built.
    counts = json.loads((data / "processed_dataset" / "byte_counts.json").read_text())["validation"]
    assert meta["eval_bpb"] == pytest.approx(
        meta["eval_loss"] * counts["target_tokens"] / (math.log(2) * counts["target_bytes"]), abs=1e-3)
    assert meta["best_step"] in (20, 40) and meta["optimizer"] in ("adamw", "muon")
    assert meta["time_budget_minutes"] == 0 and meta["stopped_early"] is False
    assert "data:image/png;base64," in meta["loss_curve"]
    assert list(checkpoints.rglob("checkpoint-*/trainer_state.json"))
    # While it trained, the live chart grew: a point per logged step and per evaluation.
    points = _chart_points(instance, result.run_id)
    assert [p["step"] for p in points if "train_loss" in p] == [1, 10, 20, 30, 40]
    assert [p["step"] for p in points if "eval_loss" in p] == [20, 40]
    assert all(0 < p["eval_bpb"] < 8 for p in points if "eval_loss" in p)
    assert all(p["tokens_per_second"] > 0 for p in points if "train_loss" in p and p["step"] > 1)

    # The CLI generates from checkpoints/latest.
    assert cli.main(["generate", "The fog lifted and", "--max-new-tokens", "12", "--seed", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("The fog lifted and") and len(printed.strip()) > len("The fog lifted and")

    # Re-run unchanged: no request to the mirror, the data stages reuse their outputs.
    project["mirror"].clear_log()
    again = _run(instance)
    assert again.success
    assert project["mirror"].count() == 0
    assert _metadata(again, "raw_books")["requests"] == 0
    for asset in ("corpus", "tokenizer", "tokenized_dataset"):
        assert _metadata(again, asset)["reused_previous_output"] is True, asset

    # Data-parallel: two CPU processes under torchrun, launched by the asset through Dagster Pipes.
    two = {"ops": {"trained_model": {"config": {
        "preset": "tiny", "max_steps": 4, "save_steps": 2, "logging_steps": 1, "nproc_per_node": 2,
        "progress_interval_seconds": 0,
    }}}}
    parallel = defs.resolve_job_def(PIPELINE_JOB).execute_in_process(
        run_config=two, instance=instance, asset_selection=[dg.AssetKey("trained_model")]
    )
    assert parallel.success
    meta = _metadata(parallel, "trained_model")
    assert meta["world_size"] == 2 and meta["resumed_from_step"] == 0
    assert meta["train_tokens"] == 4 * 2 * meta["batch_size"] * CONTEXT
    logs = "\n".join(str(r.user_message) for r in instance.all_logs(parallel.run_id))
    assert "step 4/4" in logs  # rank 0's progress reached the Dagster log through Pipes
    assert [p["step"] for p in _chart_points(instance, parallel.run_id) if "train_loss" in p] == [1, 2, 3, 4]


def test_removing_a_book_removes_it_from_the_corpus(project):
    instance = dg.DagsterInstance.ephemeral()
    job = defs.resolve_job_def(PIPELINE_JOB)
    selection = ["raw_books", "corpus"]
    assert job.execute_in_process(run_config=TINY, instance=instance,
                                  asset_selection=[dg.AssetKey(a) for a in selection]).success
    (project["data"] / "books.yaml").write_text("books:\n  - 11\n  - 33\n")
    result = job.execute_in_process(run_config=TINY, instance=instance,
                                    asset_selection=[dg.AssetKey(a) for a in selection])
    assert result.success
    assert [b.id for b in read_corpus_index(resolve_corpus(project["data"] / "all_books.txt"))] == [11, 33]
    assert _metadata(result, "corpus")["reused_previous_output"] is False


def test_explicit_absent_device_fails_before_training(project, monkeypatch):
    import torch

    if torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    monkeypatch.setenv("LLM_DEVICE", "mps")
    result = dg.materialize(
        [trained_model],
        resources={"paths": PathsResource(), "device": DeviceResource()},
        raise_on_error=False,
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert "LLM_DEVICE=mps" in failure.step_failure_data.error.to_string()
    assert not (project["checkpoints"] / "runs").exists()
