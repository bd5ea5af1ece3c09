"""Asset checks: each stage's output is what the next stage (and the user) relies on.

Checks on the data stages are blocking: a corpus that leaked a licence or a dataset with a ragged
block stops the run before hours of training are spent on it.
"""


import json
import math

import dagster as dg

from llm_assets import stamps
from llm_assets.books.cleaning import find_boilerplate_lines
from llm_assets.orchestration.assets import corpus, raw_books, tokenized_dataset, tokenizer, trained_model
from llm_assets.orchestration.resources import PathsResource


def _result(passed: bool, description: str, **metadata) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(passed=passed, description=description, metadata=metadata)


@dg.asset_check(asset=raw_books, blocking=True, description="Every selected book is on disk, byte-identical to what was fetched.")
def raw_books_intact(paths: PathsResource) -> dg.AssetCheckResult:
    p = paths.paths()
    selection = json.loads((p.raw_dir / "books.json").read_text(encoding="utf-8"))
    bad = []
    for book in selection["books"]:
        path = p.raw_dir / f"{int(book['id'])}.txt"
        if not path.is_file() or stamps.digest_file(path) != book["sha256"]:
            bad.append(int(book["id"]))
    return _result(
        not bad,
        "all raw files match their recorded sha256" if not bad else f"missing or changed: {bad}",
        books=len(selection["books"]),
        bad_books=bad,
    )


@dg.asset_check(asset=corpus, blocking=True, description="No Gutenberg marker or licence line left; no book empty.")
def corpus_clean(paths: PathsResource) -> dg.AssetCheckResult:
    p = paths.paths()
    index = json.loads(p.corpus_index.read_text(encoding="utf-8"))
    empty = [b["id"] for b in index["books"] if b["end"] <= b["start"]]
    leaked: list[str] = []
    with open(p.corpus, encoding="utf-8") as f:
        for line_block in iter(lambda: f.readlines(1 << 22), []):
            leaked += find_boilerplate_lines("".join(line_block))
    passed = not leaked and not empty and bool(index["books"])
    return _result(
        passed,
        "clean" if passed else f"{len(leaked)} boilerplate lines leaked; empty books {empty}",
        leaked_lines=len(leaked),
        first_leaked=dg.MetadataValue.text("\n".join(leaked[:10])),
        empty_books=empty,
    )


@dg.asset_check(asset=tokenizer, blocking=True, description="Loads with AutoTokenizer and round-trips corpus text exactly.")
def tokenizer_round_trips(paths: PathsResource) -> dg.AssetCheckResult:
    from transformers import AutoTokenizer

    p = paths.paths()
    tok = AutoTokenizer.from_pretrained(str(p.tokenizer_dir))
    with open(p.corpus, encoding="utf-8") as f:
        sample = f.read(20_000)
    ids = tok(sample)["input_ids"]
    round_trip = tok.decode(ids) == sample
    eos_ok = tok.eos_token == "<|endoftext|>"
    return _result(
        round_trip and eos_ok,
        "round-trips and has <|endoftext|>" if round_trip and eos_ok else "round trip or EOS failed",
        vocab_size=len(tok),
        sample_chars=len(sample),
        sample_tokens=len(ids),
        chars_per_token=round(len(sample) / max(len(ids), 1), 3),
    )


@dg.asset_check(asset=tokenized_dataset, blocking=True, description="Both splits present, every block exactly context_length tokens, ids inside the vocabulary.")
def dataset_blocks_valid(paths: PathsResource) -> dg.AssetCheckResult:
    import datasets
    import numpy as np
    from transformers import AutoTokenizer

    p = paths.paths()
    dsd = datasets.load_from_disk(str(p.dataset_dir))
    vocab = len(AutoTokenizer.from_pretrained(str(p.tokenizer_dir)))
    problems: list[str] = []
    lengths: set[int] = set()
    for split in ("train", "validation"):
        if split not in dsd or len(dsd[split]) == 0:
            problems.append(f"split {split} missing or empty")
            continue
        column = dsd[split].with_format("numpy")["input_ids"]
        array = np.asarray(column)
        if array.ndim != 2:
            problems.append(f"{split}: rows of different lengths")
            continue
        lengths.add(array.shape[1])
        if array.size and int(array.max()) >= vocab:
            problems.append(f"{split}: token id {int(array.max())} >= vocab {vocab}")
    if len(lengths) > 1:
        problems.append(f"splits have different block lengths {sorted(lengths)}")
    return _result(
        not problems,
        "valid" if not problems else "; ".join(problems),
        block_lengths=sorted(lengths),
        train_blocks=len(dsd["train"]) if "train" in dsd else 0,
        validation_blocks=len(dsd["validation"]) if "validation" in dsd else 0,
    )


def _latest_metadata(context: dg.AssetCheckExecutionContext, key: str) -> dict:
    event = context.instance.get_latest_materialization_event(dg.AssetKey(key))
    if event is None or event.asset_materialization is None:
        return {}
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


@dg.asset_check(asset=trained_model, description="Eval loss is finite and below the unigram entropy of the training tokens: the model learned more than token frequencies.")
def model_learned(context: dg.AssetCheckExecutionContext, paths: PathsResource) -> dg.AssetCheckResult:
    from llm_assets.text.dataset import unigram_entropy

    eval_loss = _latest_metadata(context, "trained_model").get("eval_loss")
    entropy = unigram_entropy(paths.paths().dataset_dir)
    passed = isinstance(eval_loss, (int, float)) and math.isfinite(eval_loss) and eval_loss < entropy
    return _result(
        passed,
        f"eval loss {eval_loss} vs unigram entropy {entropy:.3f} nats",
        eval_loss=eval_loss if isinstance(eval_loss, (int, float)) else str(eval_loss),
        unigram_entropy=round(entropy, 4),
    )


@dg.asset_check(asset=trained_model, description="checkpoints/latest/ reloads with AutoModelForCausalLM and generates text.")
def model_reloads_and_generates(paths: PathsResource) -> dg.AssetCheckResult:
    from llm_assets.training.generate import generate_text, load_model

    model_dir = paths.paths().latest_model
    model, tok = load_model(model_dir, device="cpu")
    text = generate_text(model, tok, "The", max_new_tokens=20, seed=0)
    weights = sorted(p.name for p in model_dir.glob("*.safetensors"))
    passed = bool(text.strip()) and bool(weights)
    return _result(
        passed,
        "reloaded and generated" if passed else "no text generated or no safetensors weights",
        sample=dg.MetadataValue.text("The" + text),
        weight_files=weights,
    )


all_checks = [
    raw_books_intact,
    corpus_clean,
    tokenizer_round_trips,
    dataset_blocks_valid,
    model_learned,
    model_reloads_and_generates,
]
