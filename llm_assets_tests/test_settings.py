from pathlib import Path

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


def test_stage_locks_and_stamps_live_in_the_data_folder():
    p = settings.paths_from_env({"LLM_ASSETS_DATA_DIR": "/tmp/x"})
    assert p.lock("tokenizer") == Path("/tmp/x/.locks/tokenizer.lock")
    assert p.stamps_dir == Path("/tmp/x/.stamps")
