from __future__ import annotations

import filecmp
import math
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from datasets import DatasetDict, Features, List, Value, load_from_disk
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from llm_assets.text.dataset import MIN_STRETCH_BLOCKS, build_dataset, check_dataset, token_dtype, unigram_entropy
from llm_assets.text.tokenizer import END_OF_TEXT, save_for_transformers
from llm_assets_tests.text.conftest import BOOK_IDS, Corpus, write_corpus


def expected_stream(corpus: Corpus, tokenizer_dir: Path) -> list[int]:
    """The token stream worked out independently: each whole book encoded, then end-of-text."""
    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    eot = tok.token_to_id(END_OF_TEXT)
    return [i for text in corpus.books.values() for i in [*tok.encode(text).ids, eot]]


def rows(dataset_dir: Path, split: str) -> list[tuple[int, ...]]:
    table = load_from_disk(str(dataset_dir))[split].with_format("numpy")["input_ids"]
    return [tuple(int(x) for x in row) for row in table]


def is_subsequence(part: list, whole: list) -> bool:
    it = iter(whole)
    return all(any(x == y for y in it) for x in part)


@pytest.fixture(scope="module")
def built(corpus: Corpus, tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("built") / "processed_dataset"
    calls: list[tuple[int, int]] = []
    report = build_dataset(corpus.corpus, tokenizer_dir, out, context_length=32,
                           progress=lambda done, total: calls.append((done, total)))
    return out, report, calls


def test_saves_a_datasetdict_of_fixed_length_uint16_blocks(built) -> None:
    out, report, _ = built
    loaded = load_from_disk(str(out))
    assert isinstance(loaded, DatasetDict)
    assert set(loaded) == {"train", "validation"}
    for split in loaded.values():
        assert split.column_names == ["input_ids"]
        assert split.features == Features({"input_ids": List(Value("uint16"), length=32)})
        assert str(split.data.schema.field("input_ids").type) == "fixed_size_list<item: uint16>[32]"
        assert split.with_format("numpy")[:5]["input_ids"].shape == (5, 32)
    assert loaded["train"].with_format("torch")[:3]["input_ids"].shape == (3, 32)
    assert (report.train_blocks, report.validation_blocks) == (
        len(loaded["train"]), len(loaded["validation"])
    )
    assert report.token_dtype == "uint16" and report.context_length == 32
    assert report.path == out and out.is_symlink()
    assert not list(out.rglob("tokens.bin")) and not list(out.rglob("scratch"))


def test_chunks_the_whole_stream_losing_only_the_final_remainder(
    built, corpus: Corpus, tokenizer_dir: Path
) -> None:
    out, report, _ = built
    stream = expected_stream(corpus, tokenizer_dir)
    assert report.total_tokens == len(stream)
    assert report.dropped_tokens == len(stream) % 32
    assert report.books == 3 and report.corpus_bytes == sum(
        len(t.encode()) for t in corpus.books.values()
    )
    blocks = [tuple(stream[i : i + 32]) for i in range(0, len(stream) - 31, 32)]
    train, validation = rows(out, "train"), rows(out, "validation")
    assert sorted(train + validation) == sorted(blocks)
    assert is_subsequence(train, blocks) and is_subsequence(validation, blocks)  # corpus order
    assert abs(len(validation) - len(blocks) * 0.05) <= len(corpus.books)  # rounded per book
    assert report.validation_stretches == len(corpus.books)


def book_of_each_block(corpus: Corpus, tokenizer_dir: Path, context: int) -> list[set[int]]:
    """For each block of the stream, the ids of the books whose tokens it holds."""
    tok = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    owner: list[int] = []
    for book_id, text in corpus.books.items():
        owner += [book_id] * (len(tok.encode(text).ids) + 1)
    return [set(owner[i : i + context]) for i in range(0, len(owner) - context + 1, context)]


def test_no_validation_block_sits_between_training_blocks_of_its_book(
    built, corpus: Corpus, tokenizer_dir: Path
) -> None:
    """Validation is held out as contiguous stretches: a block the model is scored on never has
    text it trained on from the same book right before and right after it."""
    out, _, _ = built
    stream = expected_stream(corpus, tokenizer_dir)
    blocks = [tuple(stream[i : i + 32]) for i in range(0, len(stream) - 31, 32)]
    validation = set(rows(out, "validation"))
    is_validation = [block in validation for block in blocks]
    owners = book_of_each_block(corpus, tokenizer_dir, 32)
    for i, held_out in enumerate(is_validation):
        if held_out and 0 < i < len(blocks) - 1 and not is_validation[i - 1] and not is_validation[i + 1]:
            assert not (owners[i] & owners[i - 1] & owners[i + 1]), f"block {i} sits between its book's training blocks"
    runs = "".join("v" if v else "t" for v in is_validation).split("t")
    assert all(len(run) >= MIN_STRETCH_BLOCKS for run in runs if run)


def test_progress_ends_at_the_whole_corpus(built, corpus: Corpus) -> None:
    _, _, calls = built
    size = corpus.corpus.stat().st_size
    assert calls[-1] == (size, size)
    assert all(total == size for _, total in calls)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_same_inputs_give_byte_identical_folders_and_the_seed_moves_the_split(
    built, corpus: Corpus, tokenizer_dir: Path, tmp_path: Path
) -> None:
    out, _, _ = built
    again = tmp_path / "again"
    build_dataset(corpus.corpus, tokenizer_dir, again, context_length=32)
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all(filecmp.cmp(out / f, again / f, shallow=False) for f in files)

    other = tmp_path / "other_seed"
    build_dataset(corpus.corpus, tokenizer_dir, other, context_length=32, seed=7)
    assert rows(other, "validation") != rows(out, "validation")
    assert sorted(rows(other, "train") + rows(other, "validation")) == sorted(
        rows(out, "train") + rows(out, "validation")
    )


def test_small_shards_still_load_as_one_split(
    built, corpus: Corpus, tokenizer_dir: Path, tmp_path: Path
) -> None:
    out, _, _ = built
    sharded = tmp_path / "sharded"
    build_dataset(corpus.corpus, tokenizer_dir, sharded, context_length=32, max_shard_bytes=20_000)
    arrow_files = list((sharded / "train").glob("data-*-of-*.arrow"))
    assert len(arrow_files) > 3
    assert rows(sharded, "train") == rows(out, "train")
    assert rows(sharded, "validation") == rows(out, "validation")


def test_the_build_never_holds_more_than_twice_the_finished_dataset(
    corpus: Corpus, tokenizer_dir: Path, tmp_path: Path
) -> None:
    """Each form of the tokens (flat file, split files, saved dataset) is deleted once the next is
    written. A thread watching the build's folder never sees more than the peak it reports."""
    big = write_corpus(tmp_path / "corpus", {i: text for i in range(12) for text in [corpus.books[BOOK_IDS[i % 3]]]})
    out = tmp_path / "processed_dataset"
    versions = tmp_path / ".processed_dataset.versions"
    seen: list[int] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            seen.append(_bytes_under(versions))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        report = build_dataset(big.corpus, tokenizer_dir, out, context_length=32, max_shard_bytes=100_000)
    finally:
        done.set()
        watcher.join()
    finished = sum(f.stat().st_size for f in out.resolve().rglob("*") if f.is_file())
    assert report.disk_bytes == finished
    assert list(report.disk_phases) == ["tokens", "splits", "saved"]
    assert report.peak_disk_bytes == max(report.disk_phases.values()) <= 2 * finished
    tokens = report.total_tokens * 2  # uint16
    assert report.disk_phases["tokens"] == tokens  # the flat file alone
    assert report.disk_phases["splits"] < 2.1 * tokens  # flat file and split files, nothing else
    assert len(seen) > 10 and max(seen) <= report.peak_disk_bytes
    print(f"peak {report.peak_disk_bytes:,} B = {report.peak_disk_bytes / finished:.3f}x the finished "
          f"{finished:,} B; phases {report.disk_phases}; watcher's largest of {len(seen)} looks {max(seen):,} B")


def _bytes_under(folder: Path) -> int:
    total = 0
    for top, _, files in os.walk(folder):  # a folder deleted while walked is skipped
        for name in files:
            try:
                total += os.path.getsize(os.path.join(top, name))
            except OSError:  # deleted while being looked at
                pass
    return total


def test_every_split_gets_a_block_even_with_extreme_fractions(
    corpus: Corpus, tokenizer_dir: Path, tmp_path: Path
) -> None:
    for fraction in (1e-9, 0.999999):
        report = build_dataset(corpus.corpus, tokenizer_dir, tmp_path / "d",
                               context_length=32, validation_fraction=fraction)
        assert report.train_blocks >= 1 and report.validation_blocks >= 1


def test_too_short_a_corpus_names_context_length(tokenizer_dir: Path, tmp_path: Path) -> None:
    c = write_corpus(tmp_path, {1: "A short book about nothing."})
    with pytest.raises(ValueError, match="context_length=128 is too long"):
        build_dataset(c.corpus, tokenizer_dir, tmp_path / "ds")
    assert not (tmp_path / "ds").exists() and not list((tmp_path / ".ds.versions").iterdir())


@pytest.mark.parametrize("bad", [{"context_length": 0}, {"validation_fraction": 1.0},
                                 {"validation_fraction": 0}])
def test_bad_config_is_refused_by_name(corpus: Corpus, tokenizer_dir: Path, tmp_path: Path,
                                       bad: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        build_dataset(corpus.corpus, tokenizer_dir, tmp_path / "ds", **bad)


def test_missing_tokenizer_says_which_asset_to_materialize(corpus: Corpus, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="`tokenizer` asset"):
        build_dataset(corpus.corpus, tmp_path / "nowhere", tmp_path / "ds")


def test_dtype_follows_the_vocabulary() -> None:
    assert token_dtype(50257) == np.uint16 and token_dtype(65536) == np.uint16
    assert token_dtype(65537) == np.uint32


def test_ids_above_uint16_are_stored_as_uint32(corpus: Corpus, tmp_path: Path) -> None:
    """A hand-built byte-level vocabulary whose 256 byte symbols sit above id 70000."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {f"<unused{i}>": i for i in range(70_000)}
    vocab.update({symbol: 70_000 + k for k, symbol in enumerate(alphabet)})
    vocab[END_OF_TEXT] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok_dir = tmp_path / "big_tokenizer"
    tok_dir.mkdir()
    save_for_transformers(tok, tok_dir)

    report = build_dataset(corpus.corpus, tok_dir, tmp_path / "ds", context_length=64)
    assert report.token_dtype == "uint32"
    split = load_from_disk(str(tmp_path / "ds"))["train"]
    assert split.features["input_ids"].feature == Value("uint32")
    assert split.data.schema.field("input_ids").type.value_type == "uint32"
    ids = split.with_format("numpy")[:]["input_ids"]
    assert ids.min() >= 70_000  # nothing wrapped around at 65536
    out = tmp_path / "ds"
    every_block = [list(r) for r in rows(out, "train") + rows(out, "validation")]
    first = next(iter(corpus.books.values()))
    assert tok.encode(first).ids[:64] in every_block  # the first block: the first book's bytes


def test_unigram_entropy_matches_the_token_frequencies(built) -> None:
    out, report, _ = built
    ids = load_from_disk(str(out))["train"].with_format("numpy")[:]["input_ids"].reshape(-1)
    p = np.bincount(ids) / ids.size
    p = p[p > 0]
    assert unigram_entropy(out) == pytest.approx(float(-(p * np.log(p)).sum()), rel=1e-9)
    assert 0 < unigram_entropy(out, "validation") <= math.log(600)
    with pytest.raises(FileNotFoundError, match="test"):
        unigram_entropy(out, "test")


def test_check_finds_ids_outside_the_vocabulary_and_ragged_splits(built) -> None:
    out, report, _ = built
    check = check_dataset(out, 600)
    assert check.problems == () and check.block_lengths == (32,)
    assert check.rows == {"train": report.train_blocks, "validation": report.validation_blocks}
    smaller = check_dataset(out, 100)
    assert any("token id" in problem and ">= the tokenizer's 100 tokens" in problem for problem in smaller.problems)
