"""The five assets of SPEC.md: raw_books -> corpus -> tokenizer -> tokenized_dataset -> trained_model.

Each asset is a thin wire: it reads its configuration and resources, calls one stage function
(which reads the previous stage's files from the paths in settings), logs progress, and turns the
stage's report into metadata. Assets hand nothing to each other in memory: files on disk are the
interface, so any asset can be re-run alone from the UI, the CLI or a test.
"""


import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from llm_assets import stamps
from llm_assets.books.booklist import book_list_fingerprint, load_book_list
from llm_assets.books.cleaning import build_corpus
from llm_assets.books.gutenberg import download_books
from llm_assets.orchestration import metadata as md
from llm_assets.orchestration.resources import DeviceResource, GutenbergResource, PathsResource
from llm_assets.settings import Paths
from llm_assets.text.dataset import build_dataset
from llm_assets.text.tokenizer import train_tokenizer
from llm_assets.training.checkpoints import training_lock
from llm_assets.training.train import (
    TrainConfig,
    TrainResult,
    torchrun_command,
    train_model,
    validate_config,
)

GROUP = "llm"
TRAINING_POOL = "llm_training"
_TRAIN_DEFAULTS = TrainConfig()


def _stamp_path(paths: Paths, asset: str) -> Path:
    return paths.data_dir / ".stamps" / f"{asset}.json"


def _reuse_or_run(
    context: dg.AssetExecutionContext,
    paths: Paths,
    key: str,
    outputs: list[Path],
    run: Callable[[], dict[str, Any]],
) -> tuple[dict[str, Any], bool]:
    """Return the stamped report when inputs, config and code are unchanged; else run and stamp."""
    asset = context.asset_key.to_user_string()
    stamp_path = _stamp_path(paths, asset)
    report = stamps.load_stamp(stamp_path, key, outputs)
    if report is not None:
        context.log.info(f"{asset}: inputs, configuration and code unchanged; reusing {outputs[0]}")
        return report, True
    report = run()
    stamps.save_stamp(stamp_path, key, report)
    return report, False


# ---------------------------------------------------------------------------------------------
# raw_books


class RawBooksConfig(dg.Config):
    force_refresh: bool = Field(
        default=False, description="Download every listed book again, even if it is cached."
    )
    skip_unavailable: bool = Field(
        default=False,
        description="Skip books that cannot be had (listed in metadata) instead of failing the run.",
    )


@dg.asset(
    group_name=GROUP,
    code_version="1",
    kinds={"python"},
    description=(
        "Every book on the book list, downloaded from Project Gutenberg (or GUTENBERG_MIRROR) into "
        "data/raw/<id>.txt, bytes exactly as served. Cached by size and hash: an unchanged list makes "
        "no request, a new book fetches that book alone."
    ),
)
def raw_books(
    context: dg.AssetExecutionContext,
    config: RawBooksConfig,
    paths: PathsResource,
    gutenberg: GutenbergResource,
) -> dg.MaterializeResult:
    p = paths.paths()
    book_list = load_book_list(p.book_list)
    if book_list.duplicates:
        context.log.warning(
            f"{p.book_list}: books listed more than once, kept once: {list(book_list.duplicates)}"
        )
    client = gutenberg.client()
    total = len(book_list.ids)
    context.log.info(f"raw_books: {total} books from {client.mirror} into {p.raw_dir}")

    def progress(n: int, of: int, book: Any) -> None:
        how = "downloaded" if book.fetched else "cached"
        context.log.info(f"book {n} of {of}: {book.book_id} {how} ({book.size:,} bytes)")

    report = download_books(
        book_list.ids,
        p.raw_dir,
        client,
        force_refresh=config.force_refresh,
        skip_unavailable=config.skip_unavailable,
        progress=progress,
    )
    for book_id, reason in report.skipped:
        context.log.warning(f"book {book_id} skipped: {reason}")
    fingerprint = book_list_fingerprint(p.book_list)
    return dg.MaterializeResult(
        metadata=md.raw_books(report, fingerprint, p.book_list),
        data_version=dg.DataVersion(fingerprint),
    )


# ---------------------------------------------------------------------------------------------
# corpus

CORPUS_CODE_VERSION = "2"  # 2: per-book cleaner warnings in the report


@dg.asset(
    group_name=GROUP,
    deps=[raw_books],
    code_version=CORPUS_CODE_VERSION,
    kinds={"python"},
    description=(
        "The listed books with Gutenberg's header, licence and footer stripped, decoded to UTF-8 "
        "with LF line endings, concatenated in list order into data/all_books.txt; "
        "data/all_books.index.json records where each book starts and ends."
    ),
)
def corpus(context: dg.AssetExecutionContext, paths: PathsResource) -> dg.MaterializeResult:
    p = paths.paths()
    selection = p.raw_dir / "books.json"
    key = stamps.stamp_key(books=stamps.digest_file(selection), code=CORPUS_CODE_VERSION)

    def run() -> dict[str, Any]:
        def progress(n: int, of: int, book_id: int) -> None:
            context.log.info(f"cleaning book {n} of {of}: {book_id}")

        return md.corpus_report(build_corpus(p.raw_dir, p.corpus, p.corpus_index, progress))

    report, reused = _reuse_or_run(context, p, key, [p.corpus, p.corpus_index], run)
    for book in report["books"]:
        for warning in book["warnings"]:
            context.log.warning(f"book {book['id']}: {warning}")
    return dg.MaterializeResult(metadata=md.with_reuse(md.corpus(report), reused))


# ---------------------------------------------------------------------------------------------
# tokenizer

TOKENIZER_CODE_VERSION = "1"


class TokenizerConfig(dg.Config):
    vocab_size: int = Field(
        default=50257, description="Target vocabulary size of the byte-level BPE (GPT-2: 50257)."
    )


@dg.asset(
    group_name=GROUP,
    deps=[corpus],
    code_version=TOKENIZER_CODE_VERSION,
    kinds={"huggingface"},
    description=(
        "A byte-level BPE tokenizer (GPT-2 style, <|endoftext|> special token) trained on the corpus, "
        "saved in data/tokenizer/ so transformers.AutoTokenizer.from_pretrained loads it."
    ),
)
def tokenizer(
    context: dg.AssetExecutionContext, config: TokenizerConfig, paths: PathsResource
) -> dg.MaterializeResult:
    p = paths.paths()
    key = stamps.stamp_key(
        corpus=stamps.digest_file(p.corpus),
        index=stamps.digest_file(p.corpus_index),
        vocab_size=config.vocab_size,
        code=TOKENIZER_CODE_VERSION,
    )

    def run() -> dict[str, Any]:
        context.log.info(f"training a {config.vocab_size}-token byte-level BPE on {p.corpus}")
        result = train_tokenizer(
            p.corpus,
            p.corpus_index,
            p.tokenizer_dir,
            vocab_size=config.vocab_size,
            progress=context.log.info,
        )
        return md.plain(result)

    report, reused = _reuse_or_run(context, p, key, [p.tokenizer_dir / "tokenizer.json"], run)
    return dg.MaterializeResult(metadata=md.with_reuse(md.tokenizer(report), reused))


# ---------------------------------------------------------------------------------------------
# tokenized_dataset

DATASET_CODE_VERSION = "1"


class TokenizedDatasetConfig(dg.Config):
    context_length: int = Field(
        default=128, description="Tokens per training block (every row has exactly this many)."
    )
    validation_fraction: float = Field(
        default=0.05, description="Share of blocks held out for validation."
    )
    seed: int = Field(default=1234, description="Seed of the train/validation split.")


@dg.asset(
    group_name=GROUP,
    deps=[tokenizer],
    code_version=DATASET_CODE_VERSION,
    kinds={"huggingface"},
    description=(
        "The corpus tokenized with <|endoftext|> between books, cut into blocks of exactly "
        "context_length tokens (only the final remainder dropped), split into train and validation, "
        "saved with datasets.save_to_disk to data/processed_dataset/."
    ),
)
def tokenized_dataset(
    context: dg.AssetExecutionContext, config: TokenizedDatasetConfig, paths: PathsResource
) -> dg.MaterializeResult:
    p = paths.paths()
    key = stamps.stamp_key(
        corpus=stamps.digest_file(p.corpus),
        index=stamps.digest_file(p.corpus_index),
        tokenizer=stamps.digest_file(p.tokenizer_dir / "tokenizer.json"),
        config=config.model_dump(),
        code=DATASET_CODE_VERSION,
    )

    def run() -> dict[str, Any]:
        last_log = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last_log[0] >= 2.0 or done >= total:
                last_log[0] = now
                context.log.info(f"tokenized {done:,} of {total:,} bytes ({100 * done / max(total, 1):.0f}%)")

        result = build_dataset(
            p.corpus,
            p.corpus_index,
            p.tokenizer_dir,
            p.dataset_dir,
            context_length=config.context_length,
            validation_fraction=config.validation_fraction,
            seed=config.seed,
            progress=progress,
        )
        return md.plain(result)

    report, reused = _reuse_or_run(context, p, key, [p.dataset_dir / "dataset_dict.json"], run)
    return dg.MaterializeResult(metadata=md.with_reuse(md.tokenized_dataset(report), reused))


# ---------------------------------------------------------------------------------------------
# trained_model


class TrainedModelConfig(dg.Config):
    """Training run configuration; SPEC fixes the names preset, max_steps, save_steps, nproc_per_node."""

    preset: str = Field(
        default=_TRAIN_DEFAULTS.preset,
        description="Model size: gpt2-small (~124M, the default) or tiny (a CPU smoke run in seconds).",
    )
    max_steps: int = Field(
        default=_TRAIN_DEFAULTS.max_steps, description="Optimizer steps; -1 trains by epochs."
    )
    num_train_epochs: float = Field(
        default=_TRAIN_DEFAULTS.num_train_epochs, description="Epochs when max_steps is -1."
    )
    save_steps: int = Field(
        default=_TRAIN_DEFAULTS.save_steps, description="Checkpoint interval in optimizer steps."
    )
    save_total_limit: int = Field(
        default=_TRAIN_DEFAULTS.save_total_limit, description="Checkpoints kept per run."
    )
    eval_steps: int = Field(
        default=_TRAIN_DEFAULTS.eval_steps, description="Evaluation interval; 0 evaluates at each save."
    )
    logging_steps: int = Field(
        default=_TRAIN_DEFAULTS.logging_steps, description="Progress line interval in steps."
    )
    batch_size: int = Field(
        default=_TRAIN_DEFAULTS.batch_size, description="Sequences per device per step; 0: the preset's."
    )
    gradient_accumulation_steps: int = Field(
        default=_TRAIN_DEFAULTS.gradient_accumulation_steps,
        description="Micro-batches per optimizer step; 0: the preset's.",
    )
    learning_rate: float = Field(
        default=_TRAIN_DEFAULTS.learning_rate, description="Peak learning rate; 0: the preset's."
    )
    precision: str = Field(
        default=_TRAIN_DEFAULTS.precision,
        description="auto (bf16 where the device has it natively, else fp32), bf16, fp16 or fp32.",
    )
    compile: bool = Field(default=_TRAIN_DEFAULTS.compile, description="Use torch.compile.")
    seed: int = Field(default=_TRAIN_DEFAULTS.seed, description="Seed for initialisation and data order.")
    dataloader_workers: int = Field(
        default=_TRAIN_DEFAULTS.dataloader_workers,
        description="DataLoader worker processes; 0 loads batches in the training process.",
    )
    nproc_per_node: int = Field(
        default=1, description="Processes per node; more than 1 trains data-parallel with torchrun."
    )

    def train_config(self, fallback_to_cpu: bool) -> TrainConfig:
        fields = self.model_dump(exclude={"nproc_per_node"})
        return TrainConfig(**fields, fallback_to_cpu=fallback_to_cpu)


@dg.asset(
    group_name=GROUP,
    deps=[tokenized_dataset],
    code_version="1",
    kinds={"pytorch"},
    pool=TRAINING_POOL,
    description=(
        "GPT-2 trained from scratch with the Hugging Face Trainer on the tokenized dataset. "
        "Checkpoints go under checkpoints/runs/<dataset+config fingerprint>/ and a re-run resumes "
        "from the latest complete one; the final model and tokenizer are published to "
        "checkpoints/latest/ (safetensors)."
    ),
)
def trained_model(
    context: dg.AssetExecutionContext,
    config: TrainedModelConfig,
    paths: PathsResource,
    device: DeviceResource,
    pipes_subprocess_client: dg.PipesSubprocessClient,
) -> dg.MaterializeResult:
    p = paths.paths()
    if config.nproc_per_node < 1:
        raise dg.Failure(f"nproc_per_node must be at least 1, got {config.nproc_per_node}.")
    where = device.resolve()  # fails fast, naming the device, before any work
    train_config = config.train_config(device.fallback_to_cpu)
    context.log.info(
        f"training preset {train_config.preset} on {where} "
        f"({config.nproc_per_node} process{'es' if config.nproc_per_node > 1 else ''})"
    )

    # The pool keeps runs apart in Dagster; the lock also covers what the pool cannot (see its doc).
    with training_lock(p.checkpoint_dir, on_wait=context.log.warning) as lock:
        context.log.info(f"holding the training lock {lock}")
        if config.nproc_per_node == 1:
            result = train_model(
                p.dataset_dir,
                p.tokenizer_dir,
                p.checkpoint_dir,
                train_config,
                device=where,
                progress=lambda update: context.log.info(update.message),
            )
        else:
            result = _train_with_torchrun(context, p, train_config, where, config.nproc_per_node,
                                          pipes_subprocess_client)
        context.log.info(f"releasing the training lock {lock}")
    for prompt, text in result.samples:
        context.log.info(f"sample: {prompt!r} -> {text!r}")
    return dg.MaterializeResult(metadata=md.trained_model(result))


def _train_with_torchrun(
    context: dg.AssetExecutionContext,
    p: Paths,
    train_config: TrainConfig,
    device: str,
    nproc_per_node: int,
    pipes_client: dg.PipesSubprocessClient,
) -> TrainResult:
    """Launch data-parallel training under torchrun; rank 0 streams its progress through Pipes.

    The configuration is validated here first, so a bad key fails in seconds with its name rather
    than in every worker after torchrun has started them.
    """
    validate_config(p.dataset_dir, p.tokenizer_dir, train_config, world_size=nproc_per_node)
    with tempfile.TemporaryDirectory(prefix="llm-assets-train-") as tmp:
        result_path = Path(tmp) / "result.json"
        command = torchrun_command(
            nproc_per_node,
            p.dataset_dir,
            p.tokenizer_dir,
            p.checkpoint_dir,
            train_config,
            device,
            result_path,
        )
        context.log.info("launching: " + " ".join(command[:8]) + " ...")
        pipes_client.run(command=command, context=context)
        return TrainResult.from_json(result_path.read_text(encoding="utf-8"))


all_assets = [raw_books, corpus, tokenizer, tokenized_dataset, trained_model]
