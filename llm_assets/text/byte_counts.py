"""Bytes of text behind the tokens: what turns a loss per token into bits per byte.

A loss per token depends on the vocabulary (a larger one packs more text into each token), so runs
with different tokenizers, and runs of other projects, cannot be compared by it. Bits per UTF-8 byte
of the same text can: ``bpb = loss_nats * target_tokens / (ln 2 * target_bytes)``.

Counted exactly, not estimated: a byte-level BPE token spells a fixed byte string (each character
of its vocabulary entry stands for one byte), so the text's bytes are the sum of its tokens' byte
lengths. Special tokens (``<|endoftext|>`` between books) are not text and count zero bytes. Only a
block's *targets* count, the tokens the model predicts (all but each block's first), since the loss
is their mean.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer, pre_tokenizers

BYTE_COUNTS_FILE = "byte_counts.json"
TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class TargetBytes:
    """The predicted tokens of one split's blocks and the UTF-8 bytes of text they spell."""

    target_tokens: int
    target_bytes: int

    def bits_per_byte(self, loss: float) -> float:
        """Mean loss per token (nats) as bits per byte of the same text; NaN without text."""
        if not self.target_bytes or not math.isfinite(loss):
            return math.nan
        return loss * self.target_tokens / (math.log(2) * self.target_bytes)


def token_byte_lengths(tokenizer: Tokenizer) -> np.ndarray:
    """UTF-8 bytes each token id spells (0 for special tokens), indexed by id."""
    alphabet = set(pre_tokenizers.ByteLevel.alphabet())
    special = {token.content for token in tokenizer.get_added_tokens_decoder().values() if token.special}
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    lengths = np.zeros(size, dtype=np.int64)
    for token, index in tokenizer.get_vocab(with_added_tokens=True).items():
        if token in special:
            continue
        # A byte-level token is one vocabulary character per byte; any other token is its text.
        lengths[index] = len(token) if set(token) <= alphabet else len(token.encode("utf-8"))
    return lengths


def count_targets(blocks: np.ndarray, lengths: np.ndarray) -> TargetBytes:
    """Targets and their bytes in ``blocks`` (rows of token ids)."""
    if not len(blocks):
        return TargetBytes(0, 0)
    targets = blocks[:, 1:]
    return TargetBytes(target_tokens=int(targets.size), target_bytes=int(lengths[targets].sum()))


def add(a: TargetBytes, b: TargetBytes) -> TargetBytes:
    return TargetBytes(a.target_tokens + b.target_tokens, a.target_bytes + b.target_bytes)


def write_byte_counts(folder: Path, counts: dict[str, TargetBytes]) -> None:
    """Beside the splits, in the dataset's version folder (published with it)."""
    payload = {split: asdict(value) for split, value in counts.items()}
    (Path(folder) / BYTE_COUNTS_FILE).write_text(json.dumps(payload, indent=2), encoding="utf-8")


def read_byte_counts(dataset_dir: Path) -> dict[str, TargetBytes] | None:
    """The counts the dataset was built with, or None for a dataset built before they were kept."""
    path = Path(dataset_dir) / BYTE_COUNTS_FILE
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
        return {split: TargetBytes(int(v["target_tokens"]), int(v["target_bytes"])) for split, v in payload.items()}
    except FileNotFoundError:
        return None
    except (ValueError, KeyError, TypeError) as error:
        raise ValueError(f"{path} is damaged ({error}): re-materialize `tokenized_dataset`.") from error


def validation_target_bytes(dataset_dir: Path, tokenizer_dir: Path) -> TargetBytes:
    """The validation targets' bytes: as counted at build, or counted now (one vectorized pass over
    the validation blocks) for a dataset built before the counts were kept."""
    counts = read_byte_counts(dataset_dir)
    if counts is not None and "validation" in counts:
        return counts["validation"]
    from datasets import load_from_disk

    column = load_from_disk(str(Path(dataset_dir).resolve()))["validation"].data.column("input_ids")
    width = column.type.list_size
    blocks = np.concatenate([chunk.flatten().to_numpy().reshape(-1, width) for chunk in column.chunks])
    return count_targets(blocks, token_byte_lengths(Tokenizer.from_file(str(Path(tokenizer_dir) / TOKENIZER_FILE))))
