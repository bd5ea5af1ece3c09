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
