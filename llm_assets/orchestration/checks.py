"""Asset checks: each stage's output is what the next stage (and the user) relies on.

Each check runs inside its asset's step, while the stage's lock is held, on the new output while it
is still staged: it is published (and recorded) only if it passes, so the catalog shows exactly the
output that was judged. The measurements are the stage modules' (``verify_selection``,
``check_corpus``, ``check_round_trip``, ``check_dataset``); here they become pass/fail with metadata.
Checks on the data stages block: a corpus that leaked a licence or a dataset with a ragged block is
not published, and the run stops before hours of training (see ``stage_runs``).
"""

from __future__ import annotations

import math
from typing import Any

import dagster as dg


def _spec(name: str, asset: str, description: str, blocking: bool = True) -> dg.AssetCheckSpec:
    return dg.AssetCheckSpec(name, asset=asset, blocking=blocking, description=description)


RAW_BOOKS = [_spec("raw_books_intact", "raw_books", "Every selected book is on disk, byte-identical to what was fetched.")]
CORPUS = [_spec("corpus_clean", "corpus", "No Gutenberg marker or licence line left; no book empty.")]
TOKENIZER = [_spec("tokenizer_round_trips", "tokenizer", "Loads with AutoTokenizer and round-trips corpus text exactly.")]
DATASET = [_spec("dataset_blocks_valid", "tokenized_dataset",
                 "Both splits present, every block exactly context_length tokens, ids inside the vocabulary.")]
TRAINED_MODEL = [
    _spec("model_learned", "trained_model", "Eval loss is finite and below the unigram entropy of the training "
          "tokens: the model learned more than token frequencies.", blocking=False),
    _spec("model_reloads_and_generates", "trained_model",
          "checkpoints/latest/ reloads with AutoModelForCausalLM and generates text.", blocking=False),
]


def raw_books_intact(check: dict[str, Any]) -> dg.AssetCheckResult:
    bad = check["bad_books"]
    return dg.AssetCheckResult(
        check_name="raw_books_intact",
        passed=not bad,
        description="all raw files match their recorded sha256" if not bad else f"missing or changed: {bad}",
        metadata={"books": check["books"], "bad_books": bad},
    )


def corpus_clean(check: dict[str, Any]) -> dg.AssetCheckResult:
    leaked, empty = check["leaked_lines"], check["empty_books"]
    passed = not leaked and not empty and check["books"] > 0
    return dg.AssetCheckResult(
        check_name="corpus_clean",
        passed=passed,
        description="clean" if passed else f"{len(leaked)} boilerplate lines leaked; empty books {empty}",
        metadata={"leaked_lines": len(leaked), "first_leaked": dg.MetadataValue.text("\n".join(leaked[:10])),
                  "empty_books": list(empty)},
    )


def tokenizer_round_trips(check: dict[str, Any]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="tokenizer_round_trips",
        passed=check["passed"],
        description="round-trips and has <|endoftext|>" if check["passed"] else "round trip or EOS failed",
        metadata={
            "vocab_size": check["vocab_size"],
            "sample_chars": check["chars"],
            "sample_tokens": check["tokens"],
            "chars_per_token": round(check["chars"] / max(check["tokens"], 1), 3),
        },
    )


def dataset_blocks_valid(check: dict[str, Any]) -> dg.AssetCheckResult:
    problems = check["problems"]
    return dg.AssetCheckResult(
        check_name="dataset_blocks_valid",
        passed=not problems,
        description="valid" if not problems else "; ".join(problems),
        metadata={
            "block_lengths": list(check["block_lengths"]),
            "train_blocks": check["rows"].get("train", 0),
            "validation_blocks": check["rows"].get("validation", 0),
        },
    )


def model_learned(eval_loss: float, entropy: float) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        check_name="model_learned",
        passed=math.isfinite(eval_loss) and eval_loss < entropy,
        description=f"eval loss {eval_loss:.4f} vs unigram entropy {entropy:.4f} nats",
        metadata={"eval_loss": round(eval_loss, 4) if math.isfinite(eval_loss) else str(eval_loss),
                  "unigram_entropy": round(entropy, 4)},
    )


def model_reloads_and_generates(text: str, weights: list[str]) -> dg.AssetCheckResult:
    passed = bool(text.strip()) and bool(weights)
    return dg.AssetCheckResult(
        check_name="model_reloads_and_generates",
        passed=passed,
        description="reloaded and generated" if passed else "no text generated or no safetensors weights",
        metadata={"sample": dg.MetadataValue.text("The" + text), "weight_files": weights},
    )
