"""Stage reports -> Dagster metadata: what a user sees on each asset's page in the UI.

Reports arrive as the plain dicts stored in stamps (see llm_assets.stamps), so a reused stage
shows the same figures as the run that produced its output.
"""

from __future__ import annotations

import base64
import dataclasses
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg

from llm_assets.books.catalog_cache import CachedCatalog
from llm_assets.books.corpus import INDEX_FILE, CorpusReport
from llm_assets.books.downloads import DownloadReport
from llm_assets.books.resolution_store import read_record_ids
from llm_assets.books.selection import ResolvedBookList

if TYPE_CHECKING:  # the training stack is imported only by the step that trains
    from llm_assets.training.train import TrainResult


def plain(report: Any) -> dict[str, Any]:
    """A dataclass report as JSON-able values (paths become strings), as stamps store it."""

    def convert(value: Any) -> Any:
        if isinstance(value, Path):
            return str(value)
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    return {k: convert(v) for k, v in dataclasses.asdict(report).items()}


def with_reuse(metadata: dict[str, Any], reused: bool) -> dict[str, Any]:
    return {**metadata, "reused_previous_output": reused}


def _md_table(header: list[str], rows: list[list[Any]], footer: str = "") -> dg.MetadataValue:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines) + footer)


LISTED = 1_000  # ids a raw_books record lists in full; a longer list is only in its resolution file
SHOWN = 25  # rows of each table in the UI; the resolution file has them all


def raw_books(
    report: DownloadReport, resolved: ResolvedBookList, book_list: Path, catalog: CachedCatalog | None,
    resolution: Path,
) -> dict[str, Any]:
    """raw_books' record: counts, a summary and the first rows of each table, and the path of the
    full resolution. Bounded whatever the list's length (~20 KB at 1,000 books, never over 64 KB):
    every event is kept in the instance's history and loaded by the asset's page in the UI."""
    fetched = [b for b in report.books if b.fetched]
    more = f"\n\n... and {{}} more: see {resolution}"
    chosen = _md_table(
        ["book id", "title", "chosen by", "line"],
        [[b.book_id, _cell(b.title, limit=120) or "-", f"`{_cell(b.entry, limit=160)}`", b.line] for b in resolved.books[:SHOWN]],
        more.format(len(resolved.books) - SHOWN) if len(resolved.books) > SHOWN else "",
    )
    entries = _md_table(
        ["line", "entry", "matched", "chosen", "new"],
        [[e.line, f"`{_cell(e.entry, limit=160)}`", e.matched, len(e.chosen), len(e.new)] for e in resolved.entries[:SHOWN]],
        more.format(len(resolved.entries) - SHOWN) if len(resolved.entries) > SHOWN else "",
    )
    catalog_info: dict[str, Any] = {}
    if catalog is not None:
        catalog_info = {
            "catalog": dg.MetadataValue.path(str(catalog.path)),
            "catalog_books": catalog.books,
            "catalog_fetched_at": catalog.fetched_at.isoformat(),
        }
    skipped = [list(s) for s in report.skipped]
    listed = len(resolved.ids) <= LISTED
    return {
        "books": len(report.books),
        "downloaded": len(fetched),
        "cached": len(report.books) - len(fetched),
        "skipped": _md_table(["book id", "reason"], [[i, _cell(r, limit=200)] for i, r in skipped[:SHOWN]],
                             more.format(len(skipped) - SHOWN) if len(skipped) > SHOWN else "")
        if skipped
        else "none",
        "skipped_count": len(report.skipped),
        "requests": report.requests,
        "bytes_downloaded": report.bytes_downloaded,
        "total_bytes": sum(b.size for b in report.books),
        "seconds": round(report.seconds, 3),
        **({"book_ids": [b.book_id for b in report.books], "selected_ids": list(resolved.ids)} if listed else {}),
        "selected_count": len(resolved.ids),
        "duplicates_count": len(resolved.duplicates),
        "entries": entries,
        "chosen_by": chosen,
        "resolution": dg.MetadataValue.path(str(resolution)),
        "book_list": dg.MetadataValue.path(str(book_list)),
        "book_list_fingerprint": resolved.fingerprint,
        **catalog_info,
    }


def recorded_selection(metadata: Mapping[str, dg.MetadataValue]) -> list[int]:
    """The ids a raw_books materialization selected: listed in its metadata, or (a list longer
    than LISTED) in the resolution file it links, if that file still holds this resolution."""
    ids = metadata.get("selected_ids")
    if ids is not None:
        return list(ids.value)
    record, fingerprint = metadata.get("resolution"), metadata.get("book_list_fingerprint")
    if record is None or fingerprint is None:
        return []
    return read_record_ids(Path(str(record.value)), str(fingerprint.value)) or []


def _cell(text: str, newline: str = " ", limit: int | None = None) -> str:
    """Text for one cell of a Markdown table: pipes escaped, on one line, at most ``limit`` characters."""
    if limit is not None and len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("|", "\\|").replace("\n", newline).strip()


def corpus_report(report: CorpusReport) -> dict[str, Any]:
    out = plain(report)
    out["books"] = [
        {
            "id": b.id,
            "bytes": b.end - b.start,
            "lines": b.lines,
            "markers": b.markers_found,
            "warnings": list(b.warnings),
        }
        for b in report.books
    ]
    return out


def corpus(report: dict[str, Any]) -> dict[str, Any]:
    """The corpus's record: counts, and a table of at most SHOWN books, those the cleaner was unsure
    of first. Bounded whatever the list's length; the corpus index has every book."""
    books = report["books"]
    flagged = [b for b in books if b["warnings"] or not b["markers"]]
    shown = (flagged + [b for b in books if not (b["warnings"] or not b["markers"])])[:SHOWN]
    more = len(books) - len(shown)
    return {
        "books": len(books),
        "total_bytes": report["total_bytes"],
        "seconds": round(report["seconds"], 3),
        "unmarked_books": report["unmarked"] or "none",
        "books_with_warnings": [b["id"] for b in books if b["warnings"]] or "none",
        "path": dg.MetadataValue.path(report["path"]),
        "per_book": _md_table(
            ["book id", "bytes", "lines", "header/footer found", "cleaner warnings"],
            [
                [
                    b["id"],
                    f"{b['bytes']:,}",
                    f"{b['lines']:,}",
                    "yes" if b["markers"] else "**no: kept whole**",
                    "; ".join(b["warnings"]) or "-",
                ]
                for b in shown
            ],
            f"\n\n... and {more} more books (those the cleaner was sure of): every book's offsets, lines and "
            f"warnings are in {INDEX_FILE}, beside the text {report['path']} links to" if more else "",
        ),
    }


def tokenizer(report: dict[str, Any]) -> dict[str, Any]:
    return {
        "vocab_size": report["vocab_size"],
        "requested_vocab_size": report["requested_vocab_size"],
        "corpus_bytes": report["corpus_bytes"],
        "seconds": round(report["seconds"], 3),
        "path": dg.MetadataValue.path(report["path"]),
    }


def tokenized_dataset(report: dict[str, Any]) -> dict[str, Any]:
    seconds = report["seconds"]
    return {
        "context_length": report["context_length"],
        "train_blocks": report["train_blocks"],
        "validation_blocks": report["validation_blocks"],
        "total_tokens": report["total_tokens"],
        "dropped_tokens": report["dropped_tokens"],
        "token_dtype": report["token_dtype"],
        "validation_stretches": report["validation_stretches"],
        "books": report["books"],
        "tokenizer_vocab": report["tokenizer_vocab"],
        "seconds": round(seconds, 3),
        "mb_per_second": round(report["corpus_bytes"] / 1e6 / max(seconds, 1e-9), 2),
        "path": dg.MetadataValue.path(report["path"]),
        **_dataset_disk(report),
    }


def _dataset_disk(report: dict[str, Any]) -> dict[str, Any]:
    """The finished dataset's size and the most its build held at once (absent from older stamps)."""
    disk, peak = report.get("disk_bytes"), report.get("peak_disk_bytes")
    if not disk or peak is None:
        return {}
    return {
        "disk_mb": round(disk / 1e6, 1),
        "build_peak_disk_mb": round(peak / 1e6, 1),
        "build_peak_disk_ratio": round(peak / disk, 3),
        "build_disk_phases_mb": {k: round(v / 1e6, 1) for k, v in report.get("disk_phases", {}).items()},
    }


def _png_markdown(path: Path, alt: str) -> dg.MetadataValue:
    """Dagster has no image metadata type: an embedded data URI in Markdown shows in the UI."""
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{encoded})")


def _finite(x: float, digits: int = 4) -> float | str:
    """Rounded for reading; NaN/inf as text so the UI shows them instead of failing to."""
    return round(x, digits) if math.isfinite(x) else str(x)


def _samples_table(samples: tuple[tuple[str, str], ...]) -> dg.MetadataValue:
    """One row per prompt; newlines shown as a return sign so each sample stays one row."""
    return _md_table(["prompt", "continuation"], [[f"**{_cell(p)}**", _cell(t, " ⏎ ")] for p, t in samples])


def trained_model(result: "TrainResult") -> dict[str, Any]:
    """The documented keys first (README: trained_model metadata), then what else helps judge the run."""
    metadata: dict[str, Any] = {
        "device": result.device,
        "precision": result.precision,
        "preset": result.preset,
        "parameters": result.parameters,
        "batch_size": result.batch_size,
        "train_tokens": result.train_tokens,
        "tokens_per_second": round(result.tokens_per_second, 1),
        "train_loss": _finite(result.train_loss),
        "eval_loss": _finite(result.eval_loss),
        "perplexity": _finite(result.perplexity, 2),
        "resumed_from_step": result.resumed_from_step,
        "world_size": result.world_size,
        "model_dir": dg.MetadataValue.path(str(result.model_dir)),
        "eval_bpb": _finite(result.eval_bpb),
        "best_step": result.best_step,
        "stopped_early": result.stopped_early,
        "optimizer": result.optimizer,
        "epochs": round(result.epochs, 3),
        "time_budget_minutes": result.time_budget_minutes,
        "time_used_seconds": round(result.time_used_seconds, 2),
        "checkpoints_disk_mb": round(result.checkpoints_bytes / 1e6, 1),
        "freed_disk_mb": round(result.freed_bytes / 1e6, 1),
        "global_step": result.global_step,
        "warmup_steps": result.warmup_steps,
        "wall_seconds": round(result.wall_seconds, 2),
        "train_seconds": round(result.train_seconds, 2),
        "fell_back_to_cpu": result.fell_back_to_cpu,
        "schedule_note": result.schedule_note or "none",
        "run_dir": dg.MetadataValue.path(str(result.run_dir)),
        "samples": _samples_table(result.samples),
    }
    if result.loss_curve_png and Path(result.loss_curve_png).is_file():
        metadata["loss_curve"] = _png_markdown(Path(result.loss_curve_png), "loss curve")
    return metadata
