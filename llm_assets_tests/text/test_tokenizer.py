from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from llm_assets.text import tokenizer as tokenizer_module
from llm_assets.text.tokenizer import (
    END_OF_TEXT,
    iter_chunk_batches,
    iter_corpus_books,
    load_tokenizer,
    split_text,
    train_tokenizer,
)
from llm_assets_tests.text.conftest import SMALL_VOCAB, Corpus, read_books, write_corpus


def test_iter_corpus_books_yields_each_book_by_its_offsets(corpus: Corpus) -> None:
    assert list(iter_corpus_books(corpus.corpus, corpus.index)) == list(corpus.books.items())


def test_missing_corpus_says_which_asset_to_materialize(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"all_books.txt.*`corpus` asset"):
        list(iter_corpus_books(tmp_path / "all_books.txt", tmp_path / "all_books.index.json"))


def test_stale_index_names_the_book(tmp_path: Path) -> None:
    c = write_corpus(tmp_path, {1: "one", 2: "two"})
    index = json.loads(c.index.read_text())
    index["books"][1]["end"] += 100
    c.index.write_text(json.dumps(index))
    with pytest.raises(ValueError, match=r"Book 2 .*stale"):
        list(iter_corpus_books(c.corpus, c.index))


def test_malformed_index_names_the_file(tmp_path: Path) -> None:
    c = write_corpus(tmp_path, {1: "one"})
    c.index.write_text('{"books": [{"id": 1}]}')
    with pytest.raises(ValueError, match=r"all_books.index.json is not of the form"):
        list(iter_corpus_books(c.corpus, c.index))


def test_invalid_utf8_names_the_book(tmp_path: Path) -> None:
    c = write_corpus(tmp_path, {1: "one", 7: "sev"})
    data = bytearray(c.corpus.read_bytes())
    data[-2] = 0xFF
    c.corpus.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"Book 7 .*not valid UTF-8"):
        list(iter_corpus_books(c.corpus, c.index))


TRICKY = (
    "He said:  \n\n\n  “Oh!”\t\n\nno   \n  'tis 42 ...\n\nEnd.  \n \nfin\n\n"
    "x\u00a0\ny\u3000\nz\n"
)


@pytest.fixture(scope="module")
def whitespace_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Tokenizer:
    """Trained with runs of newlines and spaces, so those merges exist and a bad cut shows."""
    directory = tmp_path_factory.mktemp("whitespace")
    c = write_corpus(directory, {**read_books(), 99: TRICKY * 200})
    train_tokenizer(c.corpus, c.index, directory / "tok", vocab_size=1000)
    tok = Tokenizer.from_file(str(directory / "tok" / "tokenizer.json"))
    assert all(tok.token_to_id(t) is not None for t in ("ĊĊ", "ĠĠ"))
    return tok


@pytest.mark.parametrize("size", [1, 7, 64, 2048])
def test_split_text_pieces_encode_exactly_like_the_whole(
    whitespace_tokenizer: Tokenizer, size: int
) -> None:
    for text in [TRICKY * 60, *read_books().values()]:
        pieces = list(split_text(text, size))
        assert "".join(pieces) == text
        assert len(pieces) > 1
        by_piece = [i for e in whitespace_tokenizer.encode_batch(pieces) for i in e.ids]
        assert by_piece == whitespace_tokenizer.encode(text).ids


def test_chunk_batches_cover_the_corpus_and_mark_book_ends(corpus: Corpus) -> None:
    chunks, ends = [], []
    for batch_chunks, batch_ends, _ in iter_chunk_batches(
        corpus.corpus, corpus.index, batch_chars=5000, chunk_chars=300
    ):
        chunks += batch_chunks
        ends += batch_ends
    assert sum(ends) == len(corpus.books)
    texts, current = [], ""
    for chunk, ends_book in zip(chunks, ends):
        current += chunk
        if ends_book:
            texts.append(current)
            current = ""
    assert texts == list(corpus.books.values())


def test_trained_tokenizer_loads_with_autotokenizer_like_gpt2(
    corpus: Corpus, tokenizer_dir: Path
) -> None:
    assert {p.name for p in tokenizer_dir.iterdir()} == {
        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"
    }
    hf = load_tokenizer(tokenizer_dir)
    assert len(hf) == SMALL_VOCAB
    for special in (hf.bos_token, hf.eos_token, hf.unk_token, hf.pad_token):
        assert special == END_OF_TEXT
    assert hf.eos_token_id == hf.convert_tokens_to_ids(END_OF_TEXT)
    text = corpus.books[6838][:3000]
    ids = hf(text)["input_ids"]
    assert len(ids) < len(text.encode()) / 2  # learned merges, not bytes
    assert hf.decode(ids) == text  # byte level: lossless, accents and curly quotes included
    assert hf.tokenize(" the")[0].startswith("Ġ")  # GPT-2's byte-level space marker
    # ... and no prefix space added: "the" at the start of a text differs from " the".
    assert hf("the")["input_ids"] != hf(" the")["input_ids"]


def test_report_gives_the_learned_size_when_the_corpus_is_too_small(tmp_path: Path) -> None:
    c = write_corpus(tmp_path, {1: "abc abc abd " * 50})
    report = train_tokenizer(c.corpus, c.index, tmp_path / "tok", vocab_size=5000)
    assert report.requested_vocab_size == 5000
    assert 257 < report.vocab_size < 5000
    saved = Tokenizer.from_file(str(tmp_path / "tok" / "tokenizer.json"))
    assert saved.get_vocab_size() == report.vocab_size
    assert report.corpus_bytes == c.corpus.stat().st_size
    assert report.path == tmp_path / "tok"


@pytest.mark.parametrize("bad", [100, 256, 2_000_000_000])
def test_bad_vocab_size_is_refused_before_any_work(tmp_path: Path, bad: int) -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(tmp_path / "missing.txt", tmp_path / "missing.json", tmp_path / "tok",
                        vocab_size=bad)
    assert not (tmp_path / "tok").exists()


def test_training_is_deterministic_and_replaces_the_folder(corpus: Corpus, tmp_path: Path) -> None:
    out = tmp_path / "tokenizer"
    out.mkdir()
    (out / "stale.txt").write_text("from an older run")
    train_tokenizer(corpus.corpus, corpus.index, out, vocab_size=SMALL_VOCAB)
    first = (out / "tokenizer.json").read_bytes()
    train_tokenizer(corpus.corpus, corpus.index, out, vocab_size=SMALL_VOCAB)
    assert (out / "tokenizer.json").read_bytes() == first
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer"]  # no temp folders left


def test_failed_training_keeps_the_previous_tokenizer(corpus: Corpus, tmp_path: Path) -> None:
    out = tmp_path / "tokenizer"
    train_tokenizer(corpus.corpus, corpus.index, out, vocab_size=300)
    before = (out / "tokenizer.json").read_bytes()
    broken = write_corpus(tmp_path / "broken", {1: "one"})
    broken.corpus.write_bytes(b"\xff\xfe\xfd")
    with pytest.raises(ValueError, match="Book 1"):
        train_tokenizer(broken.corpus, broken.index, out, vocab_size=300)
    assert (out / "tokenizer.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken", "tokenizer"]


def test_parallelism_is_left_off_for_later_forks_unless_the_user_chose(
    corpus: Corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    monkeypatch.setattr(tokenizer_module, "_parallelism_left_by_us", None)
    train_tokenizer(corpus.corpus, corpus.index, tmp_path / "a", vocab_size=300)
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    train_tokenizer(corpus.corpus, corpus.index, tmp_path / "b", vocab_size=300)
    assert os.environ["TOKENIZERS_PARALLELISM"] == "true"


def test_stage_modules_import_neither_dagster_nor_heavy_libraries() -> None:
    code = (
        "import sys, llm_assets.text.tokenizer, llm_assets.text.dataset\n"
        "heavy = ('dagster', 'datasets', 'transformers', 'torch')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
