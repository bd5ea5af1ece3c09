"""The four data assets: raw_books -> corpus -> tokenizer -> tokenized_dataset.

Each is a thin wire: it takes its stage's lock, holds the versions of the previous stages' outputs
it reads (resolved once from the paths in settings, so its key and its build see the same bytes),
calls one stage function to write a staged version, checks it, and publishes it (``stage_runs``),
then yields metadata, check results and a data version (the output's digest) while still holding
the lock. Files on disk are the interface between assets, so any asset can be re-run alone from the
UI, the CLI or a test.
"""


import dataclasses
import functools
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from llm_assets.atomic import hold_version, remove_stale_temporaries
from llm_assets.books.booklist import load_book_list
from llm_assets.books.catalog_cache import CATALOG_LOCK
from llm_assets.books.catalog_index import index_dir
from llm_assets.books.corpus import check_corpus, corpus_digest, resolve_corpus, write_corpus
from llm_assets.books.downloads import SELECTION_FILE, download_books, snapshot_selection, verify_selection
from llm_assets.books.resolution_store import RECORDS_DIR, write_record
from llm_assets.books.selection import describe_change, resolve_with_catalog
from llm_assets.digests import digest_file
from llm_assets.locks import exclusive
from llm_assets.orchestration import checks
from llm_assets.orchestration import metadata as md
from llm_assets.orchestration.resources import GutenbergResource, PathsResource
from llm_assets.orchestration.stage_runs import (
    Recipe,
    Throttled,
    build_or_reuse,
    built_in_this_run,
    stage_digests,
    stage_lock,
    stage_results,
)
from llm_assets.stamps import stamp_key
from llm_assets.text.dataset import build_dataset, check_dataset
from llm_assets.text.tokenizer import check_round_trip, load_tokenizer, train_tokenizer

GROUP = "llm"


class RawBooksConfig(dg.Config):
    force_refresh: bool = Field(default=False, description="Download every listed book again, even if it is cached.")
    skip_unavailable: bool = Field(
        default=False, description="Skip books that cannot be had (listed in metadata) instead of failing the run."
    )
    refresh_catalog: bool = Field(
        default=False,
        description="Download Project Gutenberg's catalog again before resolving author:, title:, subject: "
        "and bookshelf: entries (only lists with such entries use the catalog).",
    )
    catalog_max_age_days: float = Field(
        default=7.0, ge=0, description="A cached catalog older than this is downloaded again when the list needs it."
    )


@dg.asset(
    group_name=GROUP,
    code_version="2",
    kinds={"python"},
    check_specs=checks.RAW_BOOKS,
    description=(
        "Every book on the book list, downloaded from Project Gutenberg (or GUTENBERG_MIRROR) into "
        "data/raw/<id>.txt, bytes exactly as served. Cached by size and hash: an unchanged list makes "
        "no request, a new book fetches that book alone."
    ),
)
def raw_books(
    context: dg.AssetExecutionContext, config: RawBooksConfig, paths: PathsResource, gutenberg: GutenbergResource
) -> Iterator[dg.MaterializeResult]:
    p = paths.paths()
    book_list = load_book_list(p.book_list)
    if book_list.duplicates:
        context.log.warning(f"{p.book_list}: books listed more than once, kept once: {list(book_list.duplicates)}")

    counts = {True: 0, False: 0}  # fetched -> books
    throttled = Throttled(context.log.info)

    def progress(n: int, of: int, book: Any) -> None:
        counts[book.fetched] += 1
        throttled(f"book {n} of {of}: {counts[True]} downloaded, {counts[False]} cached so far "
                  f"(last: {book.book_id}, {book.size:,} bytes)", last=n == of)

    with (stage_lock(context, p, "raw_books"), stage_digests(context, p, "raw_books") as digests,
          gutenberg.client() as client):
        with exclusive(p.raw_dir / CATALOG_LOCK, "Project Gutenberg's catalog"):  # no other writer in raw/
            for folder in (p.raw_dir, index_dir(p.raw_dir), p.raw_dir / RECORDS_DIR):
                for stale in remove_stale_temporaries(folder):
                    context.log.info(f"raw_books: removed {stale}, left by a run that was stopped")
        resolved, catalog = resolve_with_catalog(book_list, p.raw_dir, client, refresh=config.refresh_catalog,
                                                 max_age=timedelta(days=config.catalog_max_age_days))
        if catalog is not None:
            context.log.info(f"catalog {catalog.path}: {catalog.books:,} books, "
                             f"{'downloaded' if catalog.downloaded else 'reused'} ({catalog.reason})")
        previous = _previous_selection(context)
        if previous is not None and previous != list(resolved.ids):
            context.log.info(f"the book list now selects other books: {describe_change(previous, resolved.ids)}"
                             + (" (the catalog was downloaded again)" if catalog and catalog.downloaded else ""))
        context.log.info(f"raw_books: {len(resolved.ids)} books from {client.mirror} into {p.raw_dir}")
        report = download_books(resolved.ids, p.raw_dir, client, force_refresh=config.force_refresh,
                                skip_unavailable=config.skip_unavailable, progress=progress, digests=digests)
        for book_id, reason in report.skipped:
            context.log.warning(f"book {book_id} skipped: {reason}")
        selected, bad = verify_selection(p.raw_dir, digests)
        resolution = write_record(p.raw_dir, resolved.record(catalog))
        yield dg.MaterializeResult(
            metadata=md.raw_books(report, resolved, p.book_list, catalog, resolution),
            data_version=dg.DataVersion(digest_file(p.raw_dir / SELECTION_FILE)),
            check_results=[checks.raw_books_intact({"books": selected, "bad_books": bad})],
        )


def _previous_selection(context: dg.AssetExecutionContext) -> list[int] | None:
    event = context.instance.get_latest_materialization_event(dg.AssetKey("raw_books"))
    if event is None or event.asset_materialization is None:
        return None
    return md.recorded_selection(event.asset_materialization.metadata) or None


CORPUS_CODE_VERSION = "3"  # 3: text and index published as one version


@dg.asset(
    group_name=GROUP,
    deps=[raw_books],
    code_version=CORPUS_CODE_VERSION,
    kinds={"python"},
    check_specs=checks.CORPUS,
    description=(
        "The listed books with Gutenberg's header, licence and footer stripped, decoded to UTF-8 "
        "with LF line endings, concatenated in list order into data/all_books.txt, with an index of "
        "where each book starts and ends beside it."
    ),
)
def corpus(context: dg.AssetExecutionContext, paths: PathsResource) -> Iterator[dg.MaterializeResult]:
    p = paths.paths()
    with stage_lock(context, p, "corpus"), stage_digests(context, p, "corpus") as digests:
        selection = snapshot_selection(p.raw_dir)  # read once: the key and the build agree
        key = stamp_key(books=selection.digest, code=CORPUS_CODE_VERSION)
        throttled = Throttled(context.log.info)

        def build(text: Path) -> dict[str, Any]:
            report = write_corpus(selection, p.raw_dir, text,
                                  lambda n, of, book_id: throttled(f"cleaned book {n} of {of}: {book_id}", n == of))
            return md.corpus_report(dataclasses.replace(report, path=p.corpus))

        recipe = Recipe(build=build, check=lambda text: md.plain(check_corpus(resolve_corpus(text))),
                        verdict=checks.corpus_clean, digest=lambda text: corpus_digest(resolve_corpus(text), digests))
        out = build_or_reuse(context, p, "corpus", key, p.corpus, recipe, member=p.corpus.name)
        _log_warnings(context, out.report["books"])
        yield from stage_results("corpus", p.corpus, out, md.with_reuse(md.corpus(out.report), out.reused))


WARNINGS_LOGGED = 10  # books whose cleaner warnings are logged one by one; the metadata has them all


def _log_warnings(context: dg.AssetExecutionContext, books: list[dict[str, Any]]) -> None:
    warned = [book for book in books if book["warnings"]]
    for book in warned[:WARNINGS_LOGGED]:
        for warning in book["warnings"]:
            context.log.warning(f"book {book['id']}: {warning}")
    if len(warned) > WARNINGS_LOGGED:
        context.log.warning(f"... and {len(warned) - WARNINGS_LOGGED} more books with cleaner warnings: "
                            "see the corpus metadata (books_with_warnings, per_book)")


TOKENIZER_CODE_VERSION = "2"  # 2: saved by transformers, published as one version


class TokenizerConfig(dg.Config):
    vocab_size: int = Field(default=50257, description="Target vocabulary size of the byte-level BPE (GPT-2: 50257).")


@dg.asset(
    group_name=GROUP,
    deps=[corpus],
    code_version=TOKENIZER_CODE_VERSION,
    kinds={"huggingface"},
    check_specs=checks.TOKENIZER,
    description=(
        "A byte-level BPE tokenizer (GPT-2 style, <|endoftext|> special token) trained on the corpus, "
        "saved in data/tokenizer/ so transformers.AutoTokenizer.from_pretrained loads it."
    ),
)
def tokenizer(
    context: dg.AssetExecutionContext, config: TokenizerConfig, paths: PathsResource
) -> Iterator[dg.MaterializeResult]:
    p = paths.paths()
    with (stage_lock(context, p, "tokenizer"), stage_digests(context, p, "tokenizer") as digests,
          hold_version(p.corpus) as text):  # this corpus version throughout
        key = stamp_key(corpus=corpus_digest(resolve_corpus(text), digests), vocab_size=config.vocab_size,
                        code=TOKENIZER_CODE_VERSION)

        def build(staged: Path) -> dict[str, Any]:
            result = train_tokenizer(text, staged, vocab_size=config.vocab_size, progress=context.log.info)
            return md.plain(dataclasses.replace(result, path=p.tokenizer_dir))

        recipe = Recipe(build=build, check=lambda staged: md.plain(check_round_trip(staged, text)),
                        verdict=checks.tokenizer_round_trips, digest=digests.digest_tree)
        out = build_or_reuse(context, p, "tokenizer", key, p.tokenizer_dir, recipe)
        yield from stage_results("tokenizer", p.tokenizer_dir, out,
                                 md.with_reuse(md.tokenizer(out.report), out.reused))


DATASET_CODE_VERSION = "2"  # 2: validation held out as contiguous stretches; saved by datasets


class TokenizedDatasetConfig(dg.Config):
    context_length: int = Field(default=128, description="Tokens per training block (every row has exactly this many).")
    validation_fraction: float = Field(
        default=0.05, description="Share of each book held out for validation, as one contiguous stretch."
    )
    seed: int = Field(default=1234, description="Seed of where in each book the validation stretch lies.")


@dg.asset(
    group_name=GROUP,
    deps=[tokenizer],
    code_version=DATASET_CODE_VERSION,
    kinds={"huggingface"},
    check_specs=checks.DATASET,
    description=(
        "The corpus tokenized with <|endoftext|> between books, cut into blocks of exactly "
        "context_length tokens (only the final remainder dropped), with a contiguous validation "
        "stretch held out of each book, saved with datasets.save_to_disk to data/processed_dataset/."
    ),
)
def tokenized_dataset(
    context: dg.AssetExecutionContext, config: TokenizedDatasetConfig, paths: PathsResource
) -> Iterator[dg.MaterializeResult]:
    p = paths.paths()
    with (stage_lock(context, p, "tokenized_dataset"), stage_digests(context, p, "tokenized_dataset") as digests,
          hold_version(p.corpus) as text, hold_version(p.tokenizer_dir) as tokenizer_dir):  # these versions throughout
        tokenizer_digest = digests.digest_tree(tokenizer_dir)
        ours = built_in_this_run(context, "tokenizer")
        if ours is not None and ours != tokenizer_digest:
            context.log.warning(
                "tokenized_dataset: another run replaced the tokenizer this run built before this step "
                f"started; building on the tokenizer now on disk ({tokenizer_digest[:12]}), so the two agree"
            )
        key = stamp_key(corpus=corpus_digest(resolve_corpus(text), digests), tokenizer=tokenizer_digest,
                        config=config.model_dump(), code=DATASET_CODE_VERSION)
        last_log = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.monotonic()
            if now - last_log[0] >= 2.0 or done >= total:
                last_log[0] = now
                context.log.info(f"tokenized {done:,} of {total:,} bytes ({100 * done / max(total, 1):.0f}%)")

        tokenizer_vocab = functools.cache(lambda: len(load_tokenizer(tokenizer_dir)))  # loaded once, if built

        def build(staged: Path) -> dict[str, Any]:
            result = build_dataset(text, tokenizer_dir, staged, context_length=config.context_length,
                                   validation_fraction=config.validation_fraction, seed=config.seed,
                                   progress=progress)
            return {**md.plain(dataclasses.replace(result, path=p.dataset_dir)), "tokenizer_vocab": tokenizer_vocab()}

        def check(staged: Path) -> dict[str, Any]:
            return dataclasses.asdict(check_dataset(staged, tokenizer_vocab()))

        recipe = Recipe(build=build, check=check, verdict=checks.dataset_blocks_valid,
                        digest=lambda folder: digests.digest_tree(folder, "*.arrow"))
        out = build_or_reuse(context, p, "tokenized_dataset", key, p.dataset_dir, recipe)
        yield from stage_results("tokenized_dataset", p.dataset_dir, out,
                                 md.with_reuse(md.tokenized_dataset(out.report), out.reused))


data_assets = [raw_books, corpus, tokenizer, tokenized_dataset]
