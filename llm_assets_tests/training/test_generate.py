from pathlib import Path

import pytest

from llm_assets.training.generate import generate_text, load_model


def test_generation_with_a_seed_repeats(trained):
    model, tokenizer = load_model(trained.checkpoint_dir / "latest")
    first = generate_text(model, tokenizer, "The old captain", max_new_tokens=12, seed=7)
    again = generate_text(model, tokenizer, "The old captain", max_new_tokens=12, seed=7)
    assert first == again
    others = {generate_text(model, tokenizer, "The old captain", max_new_tokens=12, seed=s) for s in range(8)}
    assert len(others) > 1  # the seed matters: it is sampling, not greedy


def test_greedy_returns_only_the_continuation(trained):
    model, tokenizer = load_model(trained.checkpoint_dir / "latest")
    text = generate_text(model, tokenizer, "Elizabeth", max_new_tokens=6, temperature=0)
    assert text == generate_text(model, tokenizer, "Elizabeth", max_new_tokens=6, temperature=0, seed=1)
    assert not text.startswith("Elizabeth")
    assert 0 < len(tokenizer(text).input_ids) <= 8


def test_empty_prompt_starts_from_the_start_token(trained):
    model, tokenizer = load_model(trained.checkpoint_dir / "latest")
    assert isinstance(generate_text(model, tokenizer, "", max_new_tokens=4, seed=0), str)


def test_missing_model_says_what_to_do(tmp_path: Path):
    with pytest.raises(FileNotFoundError, match="trained_model"):
        load_model(tmp_path)


def test_bad_arguments_are_named(trained):
    model, tokenizer = load_model(trained.checkpoint_dir / "latest")
    with pytest.raises(ValueError, match="max_new_tokens"):
        generate_text(model, tokenizer, "x", max_new_tokens=0)
    with pytest.raises(ValueError, match="temperature"):
        generate_text(model, tokenizer, "x", temperature=-1)
