"""Small real inputs for the training tests: a byte-level BPE tokenizer and a tokenized DatasetDict.

Built here with `tokenizers` and `datasets` directly (not the project's text stage), in the
layout the SPEC fixes: `data/tokenizer/` loadable by AutoTokenizer, `data/processed_dataset/`
with `train`/`validation` splits of fixed-length uint16 `input_ids`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

CONTEXT = 64
SPECIAL = "<|endoftext|>"

SUBJECTS = ["the old captain", "my sister", "the young doctor", "a stranger", "the village priest", "Elizabeth"]
VERBS = ["walked slowly toward", "looked at", "spoke kindly to", "wrote a letter to", "thought about", "feared"]
OBJECTS = ["the grey house", "the quiet river", "her father", "the long road", "the ship", "the garden wall"]
ENDINGS = ["before the night fell.", "and said nothing.", "in the morning light.", "with a heavy heart."]


def make_text(sentences: int, seed: int = 0) -> str:
    """Sentences with a grammar simple enough that a tiny model's loss visibly falls."""
    rng = random.Random(seed)
    lines = []
    for i in range(sentences):
        sentence = f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(OBJECTS)} {rng.choice(ENDINGS)}"
        lines.append(sentence[0].upper() + sentence[1:])
        if i % 7 == 6:
            lines.append("\n")
    return " ".join(lines)


@dataclass(frozen=True)
class TinyData:
    tokenizer_dir: Path
    dataset_dir: Path
    context_length: int
    vocab: int


def build_tokenizer(text: str, out: Path, vocab_size: int = 384) -> int:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[SPECIAL],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator([text], trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=SPECIAL, eos_token=SPECIAL, pad_token=SPECIAL, unk_token=SPECIAL
    )
    fast.save_pretrained(out)
    return len(fast)


def build_dataset(ids: list[int], out: Path, context: int, validation_rows: int) -> None:
    from datasets import Dataset, DatasetDict, Features, Sequence, Value

    rows = len(ids) // context
    blocks = np.asarray(ids[: rows * context], dtype=np.uint16).reshape(rows, context)
    features = Features({"input_ids": Sequence(Value("uint16"), length=context)})
    make = lambda a: Dataset.from_dict({"input_ids": a.tolist()}, features=features)  # noqa: E731
    DatasetDict(
        {"train": make(blocks[validation_rows:]), "validation": make(blocks[:validation_rows])}
    ).save_to_disk(str(out))


def build_tiny_data(root: Path, sentences: int = 2500, context: int = CONTEXT, seed: int = 0) -> TinyData:
    from transformers import AutoTokenizer

    text = make_text(sentences, seed=seed)
    tokenizer_dir = root / "tokenizer"
    vocab = build_tokenizer(text, tokenizer_dir)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    ids = tokenizer(text).input_ids
    dataset_dir = root / "processed_dataset"
    build_dataset(ids, dataset_dir, context, validation_rows=16)
    return TinyData(tokenizer_dir=tokenizer_dir, dataset_dir=dataset_dir, context_length=context, vocab=vocab)


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> TinyData:
    return build_tiny_data(tmp_path_factory.mktemp("tiny-data"))


@pytest.fixture(scope="session", autouse=True)
def one_thread_per_process() -> None:
    """This machine's 2 cores are shared: two OpenMP threads stall on each other's barriers when a
    neighbour is busy (measured: 25x slower steps), so the tests train with one thread."""
    import torch

    torch.set_num_threads(1)


def tiny_config(**overrides: object):
    from llm_assets.training.config import TrainConfig

    settings: dict[str, object] = {
        "preset": "tiny",
        "max_steps": 8,
        "save_steps": 4,
        "logging_steps": 2,
        "batch_size": 8,
        "sample_prompts": ["The old captain", "Elizabeth"],
        "sample_max_new_tokens": 8,
    }
    settings.update(overrides)
    return TrainConfig(**settings)  # type: ignore[arg-type]


@dataclass(frozen=True)
class TrainedRun:
    data: TinyData
    checkpoint_dir: Path
    result: object
    progress: tuple


@pytest.fixture(scope="session")
def trained(tiny_data: TinyData, tmp_path_factory: pytest.TempPathFactory) -> TrainedRun:
    """One short real training run shared by the tests that only read its outputs."""
    from llm_assets.training.train import train_model

    checkpoint_dir = tmp_path_factory.mktemp("trained") / "checkpoints"
    updates: list = []
    result = train_model(
        tiny_data.dataset_dir, tiny_data.tokenizer_dir, checkpoint_dir, tiny_config(), device="cpu", progress=updates.append
    )
    return TrainedRun(data=tiny_data, checkpoint_dir=checkpoint_dir, result=result, progress=tuple(updates))
