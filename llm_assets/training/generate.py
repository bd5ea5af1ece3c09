"""Text from a trained model: used for the samples after training, the asset check and the CLI."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)


def load_model(model_dir: Path, device: str = "cpu") -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a saved model and its tokenizer, ready for generation on ``device``."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"No model in {model_dir}: config.json is missing. Materialize `trained_model` first "
            "(or pass --model DIR pointing at a saved model)."
        )
    # Our own folders only: a missing one is the error above, never a download from the hub.
    tokenizer = AutoTokenizer.from_pretrained(model_dir.resolve(), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir.resolve(), local_files_only=True)
    model.to(device)
    model.eval()
    return model, tokenizer


def generate_text(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    prompt: str,
    *,
    max_new_tokens: int = 50,
    temperature: float = 0.8,
    top_k: int | None = 50,
    seed: int | None = None,
) -> str:
    """Sample a continuation of ``prompt`` and return only the new text.

    ``temperature`` 0 means greedy. A ``seed`` makes the sample repeatable without disturbing the
    caller's random state. Token ids the tokenizer does not have (the padding rows of the
    embedding) are never produced.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}.")
    if temperature < 0:
        raise ValueError(f"temperature must be 0 (greedy) or positive, got {temperature}.")
    device = model.device
    ids = tokenizer(prompt, return_tensors="pt").input_ids if prompt else None
    if ids is None or ids.shape[1] == 0:
        start = tokenizer.bos_token_id if tokenizer.bos_token_id is not None else tokenizer.eos_token_id
        ids = torch.tensor([[start]])
    room = model.config.n_positions - max_new_tokens if hasattr(model.config, "n_positions") else None
    if room is not None:
        if room < 1:
            raise ValueError(
                f"max_new_tokens={max_new_tokens} leaves no room for the prompt in the model's "
                f"{model.config.n_positions} positions."
            )
        ids = ids[:, -room:]
    ids = ids.to(device)
    unknown = list(range(len(tokenizer), model.config.vocab_size))
    sample = temperature > 0
    kwargs = {
        "max_new_tokens": max_new_tokens,
        "do_sample": sample,
        "pad_token_id": tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
        "attention_mask": torch.ones_like(ids),
    }
    if sample:
        kwargs.update(temperature=temperature, top_k=top_k if top_k else 0)
    if unknown:
        kwargs["suppress_tokens"] = unknown
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type=device.type if devices else "cuda"):
        if seed is not None:
            torch.manual_seed(seed)
        with torch.inference_mode():
            out = model.generate(ids, **kwargs)
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
