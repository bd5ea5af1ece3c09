import pytest

from llm_assets.training.presets import PRESETS, get_preset, padded_vocab_size


def test_unknown_preset_names_the_key_and_the_choices():
    with pytest.raises(ValueError) as caught:
        get_preset("gpt5")
    message = str(caught.value)
    assert "`preset`" in message and "'gpt5'" in message
    for name in ("gpt2-small", "tiny", "mini"):
        assert name in message


def test_gpt2_small_is_the_124m_model():
    preset = get_preset("gpt2-small")
    assert (preset.n_layer, preset.n_head, preset.n_embd) == (12, 12, 768)
    # 124,439,808 with the unpadded 50257 vocabulary; the padded embedding adds 47 rows.
    assert preset.parameter_count(50257) == 124_475_904


def test_parameter_count_matches_the_built_model():
    from transformers import GPT2Config, GPT2LMHeadModel

    preset = get_preset("tiny")
    model = GPT2LMHeadModel(
        GPT2Config(
            vocab_size=padded_vocab_size(1000),
            n_positions=preset.n_positions,
            n_embd=preset.n_embd,
            n_layer=preset.n_layer,
            n_head=preset.n_head,
        )
    )
    assert preset.parameter_count(1000) == sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("vocab", "padded"), [(384, 384), (385, 448), (50257, 50304), (1, 64)])
def test_embedding_is_padded_to_a_multiple_of_64(vocab, padded):
    assert padded_vocab_size(vocab) == padded


def test_every_preset_has_heads_that_divide_the_width():
    for preset in PRESETS.values():
        assert preset.n_embd % preset.n_head == 0, preset.name
