from pathlib import Path

import pytest

from llm_assets import settings


def test_defaults_follow_the_spec():
    p = settings.paths_from_env({})
    assert p.data_dir == Path("data")
    assert p.checkpoint_dir == Path("checkpoints")
    assert p.book_list == Path("data/books.yaml")
    assert p.corpus == Path("data/all_books.txt")
    assert p.tokenizer_dir == Path("data/tokenizer")
    assert p.dataset_dir == Path("data/processed_dataset")
    assert p.latest_model == Path("checkpoints/latest")
    assert settings.gutenberg_mirror({}) == "https://www.gutenberg.org"
    assert settings.requested_device({}) == "auto"


def test_book_list_follows_the_data_dir_unless_set():
    p = settings.paths_from_env({"LLM_ASSETS_DATA_DIR": "/tmp/x"})
    assert p.book_list == Path("/tmp/x/books.yaml")
    p = settings.paths_from_env({"LLM_ASSETS_DATA_DIR": "/tmp/x", "LLM_ASSETS_BOOK_LIST": "/b.yaml"})
    assert p.book_list == Path("/b.yaml")


def test_mirror_trailing_slash_is_dropped():
    assert settings.gutenberg_mirror({"GUTENBERG_MIRROR": "http://127.0.0.1:8000/"}) == "http://127.0.0.1:8000"


def test_unknown_device_is_rejected_naming_the_variable():
    with pytest.raises(ValueError, match="LLM_DEVICE='tpu'"):
        settings.requested_device({"LLM_DEVICE": "tpu"})
    assert settings.requested_device({"LLM_DEVICE": " CPU "}) == "cpu"
