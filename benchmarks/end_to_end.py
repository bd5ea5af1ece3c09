"""What a user waits for: `dagster asset materialize` from a fresh project, and where the time goes.

Two measurements, each a real CLI run in a fresh project folder (`llm-assets init`, its own SQLite
instance), books served from a local mirror, at the machine's default threads:

- ``pipeline``: all five assets (tiny preset, vocabulary 4096, 200 steps by default). Wall time of
  the command, time inside the asset steps (from the run's step events), and the difference: the
  orchestration overhead (process starts, imports, run bookkeeping).
- ``data-prep``: `tokenizer` + `tokenized_dataset` on a corpus of ``--corpus-mb`` (the mirror's books
  repeated under other ids), timed through the CLI, beside the `tokenizers`-alone baseline of
  ``data_prep.py`` (train a BPE, encode, chunk; one process, started from scratch) on the same text.

    python benchmarks/end_to_end.py pipeline --mirror PATH     # PATH: a folder in Gutenberg's mirror layout
    python benchmarks/end_to_end.py pipeline --run-config data/run_config.yaml --mirror PATH   # the README's main command
    python benchmarks/end_to_end.py data-prep --corpus-mb 45 --mirror PATH
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from llm_assets.instance import INSTANCE_DIR, init_instance  # noqa: E402
from llm_assets_tests.gutenberg_server import GutenbergMirror  # noqa: E402

SHIPPED_MIRROR = ROOT / "llm_assets_tests" / "mirror"  # five real books; --mirror for another


def mirror_books(mirror: Path) -> dict[int, bytes]:
    return {int(p.parent.name): p.read_bytes() for p in sorted((mirror / "cache" / "epub").glob("*/pg*.txt"))}


def materialize(project: Path, env: dict[str, str], select: str, config: dict | Path) -> float:
    """Wall seconds of ``dagster asset materialize``; ``config`` a dict, or a run-config file (``-c``)."""
    command = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "llm_assets", "--select", select]
    command += ["-c", str(config)] if isinstance(config, Path) else ["--config-json", json.dumps(config)]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=project, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"materialize {select} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}")
    return wall


def trained_metadata(project: Path) -> dict:
    instance = dg.DagsterInstance.from_config(str(project / INSTANCE_DIR))
    try:
        event = instance.get_latest_materialization_event(dg.AssetKey("trained_model"))
        return {k: v.value for k, v in event.asset_materialization.metadata.items()}
    finally:
        instance.dispose()


def step_seconds(project: Path) -> dict[str, float]:
    """Seconds each step of the latest run spent executing (Dagster's own step durations)."""
    instance = dg.DagsterInstance.from_config(str(project / INSTANCE_DIR))
    try:
        run = instance.get_runs(limit=1)[0]
        records = instance.get_records_for_run(run.run_id, of_type=dg.DagsterEventType.STEP_SUCCESS).records
        return {r.event_log_entry.step_key: r.event_log_entry.dagster_event.event_specific_data.duration_ms / 1000
                for r in records}
    finally:
        instance.dispose()


def new_project(root: Path, ids: list[int], mirror_url: str) -> tuple[Path, dict[str, str]]:
    project = root / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "books.yaml").write_text("books: [" + ", ".join(map(str, ids)) + "]\n")
    init_instance(project)
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME" and not k.startswith("LLM_ASSETS_")}
    env.update(GUTENBERG_MIRROR=mirror_url, LLM_DEVICE="cpu")
    return project, env


def pipeline(args: argparse.Namespace) -> None:
    books = mirror_books(args.mirror)
    config: dict | Path = args.run_config.resolve() if args.run_config else {"ops": {
        "tokenizer": {"config": {"vocab_size": args.vocab}},
        "trained_model": {"config": {"preset": args.preset, "max_steps": args.steps, "save_steps": args.save_steps}}}}
    with tempfile.TemporaryDirectory() as tmp, GutenbergMirror(root=args.mirror) as mirror:
        project, env = new_project(Path(tmp), list(books), mirror.url)
        wall = materialize(project, env, "*", config)
        steps = step_seconds(project)
        trained = trained_metadata(project)
    inside = sum(steps.values())
    what = args.run_config or f"vocab {args.vocab}, {args.preset} x {args.steps} steps"
    print(f"pipeline: {len(books)} books ({sum(map(len, books.values())) / 1e6:.1f} MB), {what}, "
          f"{os.cpu_count()} cpus, load average at the end {os.getloadavg()[0]:.1f}")
    for step, seconds in steps.items():
        print(f"  {step:<20} {seconds:7.1f} s")
    print(f"wall {wall:.1f} s | inside the {len(steps)} steps {inside:.1f} s | orchestration overhead "
          f"{wall - inside:.1f} s")
    print(f"trained_model: {trained['preset']} with {trained.get('optimizer')}, {trained['global_step']} steps "
          f"(best {trained.get('best_step')}), eval loss {trained['eval_loss']}, {trained.get('eval_bpb')} bits/byte, "
          f"perplexity {trained['perplexity']}, {trained['tokens_per_second']:,.0f} tokens/s, "
          f"{trained['parameters']:,} parameters; budget {trained.get('time_budget_minutes')} min, "
          f"{trained.get('time_used_seconds')} s used\nsamples:\n{trained['samples']}")


def data_prep(args: argparse.Namespace) -> None:
    books = mirror_books(args.mirror)
    copies, size, ids = [], 0, []
    while size < args.corpus_mb * 1e6:  # the mirror's books again and again, under new ids
        for book_id, raw in books.items():
            new_id = 100_000 * (len(copies) + 1) + book_id
            copies.append((new_id, raw))
            ids.append(new_id)
            size += len(raw)
    config = {"ops": {"tokenizer": {"config": {"vocab_size": args.vocab}},
                      "tokenized_dataset": {"config": {"context_length": 128}}}}
    with tempfile.TemporaryDirectory() as tmp, GutenbergMirror() as mirror:
        for book_id, raw in copies:
            mirror.add_book(book_id, raw)
        project, env = new_project(Path(tmp), ids, mirror.url)
        materialize(project, env, "raw_books,corpus", {})  # not timed: the corpus to prepare
        corpus = (project / "data" / "all_books.txt").resolve()
        ours = materialize(project, env, "tokenizer,tokenized_dataset", config)
        steps = step_seconds(project)
        floor = run_baseline(corpus, Path(tmp) / "baseline", args.vocab)
        mb = corpus.stat().st_size / 1e6  # inside: the project folder goes with the temporary folder
    print(f"data prep on {mb:.1f} MB, vocab {args.vocab}, context 128, {os.cpu_count()} cpus")
    print(f"  through the CLI: {ours:.1f} s wall (steps: "
          + ", ".join(f"{k} {v:.1f} s" for k, v in steps.items()) + ")")
    print(f"  tokenizers alone (data_prep.py's floor, own process): {floor:.1f} s")
    print(f"  ratio CLI / floor: {ours / floor:.2f}x")


def run_baseline(corpus: Path, out: Path, vocab: int) -> float:
    out.mkdir()
    command = [sys.executable, str(ROOT / "benchmarks" / "data_prep.py"), "--child", "tokenizers", "--corpus",
               str(corpus), "--index", str(corpus.parent / "all_books.index.json"), "--out", str(out),
               "--vocab-size", str(vocab), "--context-length", "128"]
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    p = sub.add_parser("pipeline")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--steps", type=int, default=200, help="-1: one epoch")
    p.add_argument("--save-steps", type=int, default=500)
    p.add_argument("--vocab", type=int, default=4096)
    p.add_argument("--run-config", type=Path, help="a run-config YAML (-c), e.g. data/run_config.yaml: "
                   "replaces --preset, --steps, --save-steps and --vocab")
    d = sub.add_parser("data-prep")
    d.add_argument("--corpus-mb", type=float, default=45)
    d.add_argument("--vocab", type=int, default=50257)
    for command in (p, d):
        command.add_argument("--mirror", type=Path, default=SHIPPED_MIRROR,
                             help="a folder in Gutenberg's mirror layout (cache/epub/<id>/pg<id>.txt)")
    args = parser.parse_args()
    pipeline(args) if args.what == "pipeline" else data_prep(args)


if __name__ == "__main__":
    main()
