"""Benchmark the text stage (tokenizer + tokenized dataset) against two baselines.

    python benchmarks/data_prep.py --sizes 6,50,500

For each size it repeats the books of a local Gutenberg mirror (``--mirror``; by default the five
real books shipped in ``llm_assets_tests/mirror``) into a corpus of that many MB (with the
byte-offset index the books stage writes), then runs, each in a fresh child process so process
start is counted and peak memory is the child's own:

- ``ours``: ``train_tokenizer`` + ``build_dataset`` (what the two assets do), output on disk;
- ``tokenizers``: the floor, the Rust library alone: ``train_from_iterator`` over batches of
  lines, ``encode_batch`` over batches of lines, numpy concatenation, reshape to blocks (in
  memory, nothing saved);
- ``usual``: ``ByteLevelBPETokenizer.train`` on the file, ``datasets.map(batched=True)`` with the
  fast tokenizer, then ``run_clm``'s ``group_texts`` (nothing saved beyond datasets' cache).

It prints seconds (wall, process start included; and the train / encode split each child
measured), MB/s of encoding, peak RSS, and the ratios ours / tokenizers and usual / ours. With
``--check-determinism`` it also builds ours twice at the first size and compares every byte.
"""

from __future__ import annotations

import argparse
import filecmp
import itertools
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

DEFAULT_MIRROR = Path(__file__).resolve().parents[1] / "llm_assets_tests" / "mirror"
METHODS = ("ours", "tokenizers", "usual")
LINES_PER_BATCH = 1000


@dataclass(frozen=True)
class Result:
    method: str
    size_mb: float
    wall_s: float
    train_s: float
    encode_s: float
    tokens: int
    peak_rss_mb: float


def read_book(path: Path) -> str:
    """Raw Gutenberg text as-is (boilerplate included); some Gutenberg files are Latin-1."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.replace("\r\n", "\n")


def build_corpus(mirror: Path, size_mb: float, corpus: Path, index: Path) -> int:
    """Repeat the mirror's books, blank line between, to ``size_mb``; return the bytes written."""
    paths = sorted((mirror / "cache" / "epub").glob("*/pg*.txt"),
                   key=lambda p: int(p.parent.name))
    if not paths:
        raise SystemExit(f"No books under {mirror}/cache/epub: pass --mirror.")
    books = [(int(p.parent.name), read_book(p).encode("utf-8")) for p in paths]
    target = int(size_mb * 1e6)
    entries, position = [], 0
    with open(corpus, "wb") as out:
        for book_id, data in itertools.cycle(books):
            # Stop at the target or just short of it: "6" gives the 18 books once, not 18 and a bit.
            if position >= target or (entries and position >= 0.95 * target
                                      and position + len(data) > target):
                break
            if entries:
                out.write(b"\n\n")
                position += 2
            out.write(data)
            entries.append({"id": book_id, "start": position, "end": position + len(data)})
            position += len(data)
    index.write_text(json.dumps({"books": entries}), encoding="utf-8")
    return position


# ---- the three methods, each run in its own child process (``--child METHOD``) ----


def run_ours(corpus: Path, index: Path, out: Path, vocab_size: int, context_length: int) -> dict:
    from llm_assets.text.dataset import build_dataset
    from llm_assets.text.tokenizer import train_tokenizer

    started = time.perf_counter()
    train_tokenizer(corpus, out / "tokenizer", vocab_size=vocab_size)
    trained = time.perf_counter()
    report = build_dataset(corpus, out / "tokenizer", out / "processed_dataset", context_length=context_length)
    return {
        "train_s": trained - started,
        "encode_s": time.perf_counter() - trained,
        "tokens": (report.train_blocks + report.validation_blocks) * context_length,
    }


def _line_batches(corpus: Path):
    with open(corpus, encoding="utf-8") as f:
        batch = []
        for line in f:
            batch.append(line)
            if len(batch) == LINES_PER_BATCH:
                yield batch
                batch = []
        if batch:
            yield batch


def run_tokenizers(
    corpus: Path, index: Path, out: Path, vocab_size: int, context_length: int
) -> dict:
    import numpy as np
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    started = time.perf_counter()
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_line_batches(corpus), trainer=trainer)
    trained = time.perf_counter()
    parts = []
    for batch in _line_batches(corpus):
        ids = [np.array(e.ids, dtype=np.uint16) for e in tokenizer.encode_batch(batch)]
        parts.append(np.concatenate(ids))
    stream = np.concatenate(parts)
    blocks = stream[: len(stream) // context_length * context_length].reshape(-1, context_length)
    return {
        "train_s": trained - started,
        "encode_s": time.perf_counter() - trained,
        "tokens": int(blocks.size),
    }


def run_usual(corpus: Path, index: Path, out: Path, vocab_size: int, context_length: int) -> dict:
    from datasets import load_dataset
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    started = time.perf_counter()
    bpe = ByteLevelBPETokenizer()
    bpe.train(
        files=[str(corpus)], vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, eos_token="<|endoftext|>")
    trained = time.perf_counter()
    raw = load_dataset("text", data_files=str(corpus), cache_dir=str(out / "cache"))["train"]
    tokenized = raw.map(
        lambda b: tokenizer(b["text"]), batched=True, remove_columns=["text"]
    )

    def group_texts(examples: dict) -> dict:  # run_clm.py's, verbatim in spirit
        concatenated = {k: sum(examples[k], []) for k in examples}
        total = len(concatenated["input_ids"]) // context_length * context_length
        return {
            k: [t[i : i + context_length] for i in range(0, total, context_length)]
            for k, t in concatenated.items()
        }

    grouped = tokenized.map(group_texts, batched=True)
    return {
        "train_s": trained - started,
        "encode_s": time.perf_counter() - trained,
        "tokens": len(grouped) * context_length,
    }


RUNNERS = {"ours": run_ours, "tokenizers": run_tokenizers, "usual": run_usual}


def child_main(args: argparse.Namespace) -> None:
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    measured = RUNNERS[args.child](
        Path(args.corpus), Path(args.index), Path(args.out), args.vocab_size, args.context_length
    )
    measured["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(measured))


def run_child(method: str, corpus: Path, index: Path, out: Path, args: argparse.Namespace) -> dict:
    command = [
        sys.executable, __file__, "--child", method, "--corpus", str(corpus), "--index",
        str(index), "--out", str(out), "--vocab-size", str(args.vocab_size),
        "--context-length", str(args.context_length),
    ]
    env = {k: v for k, v in os.environ.items() if k != "TOKENIZERS_PARALLELISM"}
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{method} failed:\n{done.stderr}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    measured["wall_s"] = wall
    return measured


def same_tree(a: Path, b: Path) -> bool:
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    return files_a == files_b and all(
        filecmp.cmp(a / f, b / f, shallow=False) for f in files_a
    )


def table(results: list[Result]) -> str:
    lines = [
        "| corpus | method | wall s | train s | encode+chunk s | encode MB/s | peak RSS MB "
        "| vs tokenizers | usual / ours |",
        "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    by_key = {(r.size_mb, r.method): r for r in results}
    for r in results:
        floor = by_key.get((r.size_mb, "tokenizers"))
        ours = by_key.get((r.size_mb, "ours"))
        vs_floor = f"{r.wall_s / floor.wall_s:.2f}x" if floor else ""
        usual = f"{r.wall_s / ours.wall_s:.2f}x" if ours and r.method == "usual" else ""
        lines.append(
            f"| {r.size_mb:g} MB | {r.method} | {r.wall_s:.1f} | {r.train_s:.1f} "
            f"| {r.encode_s:.1f} "
            f"| {r.size_mb / r.encode_s:.1f} | {r.peak_rss_mb:.0f} | {vs_floor} | {usual} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="6",
                        help="corpus sizes in MB, comma-separated (6,50,500)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="subset of " + ",".join(METHODS))
    parser.add_argument("--vocab-size", type=int, default=50257)
    parser.add_argument("--context-length", type=int, default=128)
    parser.add_argument("--mirror", type=Path, default=DEFAULT_MIRROR)
    parser.add_argument("--work-dir", type=Path,
                        help="keep corpora and outputs here (default: a temp dir, removed)")
    parser.add_argument("--check-determinism", action="store_true",
                        help="build ours twice at the first size and compare every byte")
    parser.add_argument("--child", choices=METHODS, help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--index", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="data_prep_bench_"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"cpus: {os.cpu_count()}, load average at start: {os.getloadavg()[0]:.1f}", flush=True)
    results: list[Result] = []
    try:
        for size in [float(s) for s in args.sizes.split(",")]:
            folder = work / f"corpus_{size:g}MB"
            folder.mkdir(exist_ok=True)
            corpus, index = folder / "all_books.txt", folder / "all_books.index.json"  # the corpus stage's layout
            written = build_corpus(args.mirror, size, corpus, index)
            size_mb = written / 1e6
            for method in args.methods.split(","):
                out = work / f"{method}_{size:g}MB"
                shutil.rmtree(out, ignore_errors=True)
                out.mkdir()
                m = run_child(method, corpus, index, out, args)
                results.append(Result(method, round(size_mb, 1), m["wall_s"], m["train_s"],
                                      m["encode_s"], m["tokens"], m["peak_rss_mb"]))
                r = results[-1]
                print(f"{r.size_mb:g} MB {method}: wall {r.wall_s:.1f} s (train {r.train_s:.1f} s, "
                      f"encode+chunk {r.encode_s:.1f} s), {r.tokens} tokens in blocks, "
                      f"peak RSS {r.peak_rss_mb:.0f} MB; load {os.getloadavg()[0]:.1f}", flush=True)
                if method != "ours":
                    shutil.rmtree(out, ignore_errors=True)
            if args.check_determinism and size == float(args.sizes.split(",")[0]):
                again = work / f"ours_{size:g}MB_again"
                shutil.rmtree(again, ignore_errors=True)
                again.mkdir()
                run_child("ours", corpus, index, again, args)
                first = work / f"ours_{size:g}MB"
                same = all(same_tree((first / name).resolve(), (again / name).resolve())
                           for name in ("tokenizer", "processed_dataset"))
                print(f"determinism at {size:g} MB: outputs byte-identical: {same}", flush=True)
        print()
        print(table(results))
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
