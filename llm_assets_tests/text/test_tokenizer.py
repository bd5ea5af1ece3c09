from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tokenizers import Tokenizer

from llm_assets.books.corpus import CorpusError
from llm_assets.text import tokenizer as tokenizer_module
from llm_assets.text.tokenizer import END_OF_TEXT, check_round_trip, load_tokenizer, train_tokenizer
from llm_assets_tests.text.conftest import SMALL_VOCAB, Corpus, write_corpus


def test_trained_tokenizer_loads_with_autotokenizer_like_gpt2(
    corpus: Corpus, tokenizer_dir: Path
) -> None:
    from transformers import AutoTokenizer

    assert (tokenizer_dir / "tokenizer.json").is_file() and (tokenizer_dir / "tokenizer_config.json").is_file()
    hf = AutoTokenizer.from_pretrained(tokenizer_dir)
    assert len(hf) == len(load_tokenizer(tokenizer_dir))
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
    report = train_tokenizer(c.corpus, tmp_path / "tok", vocab_size=5000)
    assert report.requested_vocab_size == 5000
    assert 257 < report.vocab_size < 5000
    saved = Tokenizer.from_file(str(tmp_path / "tok" / "tokenizer.json"))
    assert saved.get_vocab_size() == report.vocab_size
    assert report.corpus_bytes == c.corpus.stat().st_size
    assert report.path == tmp_path / "tok"


@pytest.mark.parametrize("bad", [100, 256, 2_000_000_000])
def test_bad_vocab_size_is_refused_before_any_work(tmp_path: Path, bad: int) -> None:
    with pytest.raises(ValueError, match="vocab_size"):
        train_tokenizer(tmp_path / "missing.txt", tmp_path / "tok", vocab_size=bad)
    assert not (tmp_path / "tok").exists()


def test_training_is_deterministic_and_replaces_the_folder(corpus: Corpus, tmp_path: Path) -> None:
    out = tmp_path / "tokenizer"
    out.mkdir()
    (out / "stale.txt").write_text("from an older run")
    train_tokenizer(corpus.corpus, out, vocab_size=SMALL_VOCAB)
    first = (out / "tokenizer.json").read_bytes()
    train_tokenizer(corpus.corpus, out, vocab_size=SMALL_VOCAB)
    assert (out / "tokenizer.json").read_bytes() == first
    assert not (out / "stale.txt").exists() and out.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tokenizer.versions", "tokenizer"]
    assert not [p for p in (tmp_path / ".tokenizer.versions").iterdir() if p.name.startswith(".tmp")]


def test_failed_training_keeps_the_previous_tokenizer(corpus: Corpus, tmp_path: Path) -> None:
    out = tmp_path / "tokenizer"
    train_tokenizer(corpus.corpus, out, vocab_size=300)
    before = (out / "tokenizer.json").read_bytes()
    broken = write_corpus(tmp_path / "broken", {1: "one"})
    broken.corpus.write_bytes(b"\xff\xfe\xfd")
    with pytest.raises(CorpusError, match="Book 1"):
        train_tokenizer(broken.corpus, out, vocab_size=300)
    assert (out / "tokenizer.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [".tokenizer.versions", "broken", "tokenizer"]


def test_round_trip_check_reads_the_corpus_back_through_the_tokenizer(corpus: Corpus, tokenizer_dir: Path) -> None:
    check = check_round_trip(tokenizer_dir, corpus.corpus, chars=5000)
    assert check.passed and check.end_of_text and check.vocab_size == SMALL_VOCAB
    assert check.chars == 5000 and 0 < check.tokens < 5000


def test_parallelism_is_left_off_for_later_forks_unless_the_user_chose(
    corpus: Corpus, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TOKENIZERS_PARALLELISM", raising=False)
    monkeypatch.setattr(tokenizer_module, "_parallelism_left_by_us", None)
    train_tokenizer(corpus.corpus, tmp_path / "a", vocab_size=300)
    assert os.environ["TOKENIZERS_PARALLELISM"] == "false"
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "true")
    train_tokenizer(corpus.corpus, tmp_path / "b", vocab_size=300)
    assert os.environ["TOKENIZERS_PARALLELISM"] == "true"


def test_stage_modules_import_neither_dagster_nor_heavy_libraries() -> None:
    code = (
        "import sys, llm_assets.text.tokenizer, llm_assets.text.dataset\n"
        "heavy = ('dagster', 'datasets', 'transformers', 'torch')\n"
        "print(sorted(m for m in heavy if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
