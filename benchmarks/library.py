"""A reader's library: a thousand books from a real-size catalog, through the CLI, as a user runs it.

    python benchmarks/library.py [--books 1000] [--vocab 8192] [--reruns 3] [--keep DIR] [--no-webui]

Serves, from a local HTTP server on 127.0.0.1, a mirror of ``--books`` books (the shared Gutenberg
books, or the shipped ones, repeated under new ids) and a 77,000-row catalog in the real
``pg_catalog.csv`` format (``catalog_tick.generate_catalog``) whose ``Category: Novels`` shelf holds
exactly those books. In a fresh project (``llm-assets init``) with the book list

    books:
      - bookshelf: "Category: Novels"
        limit: 1000

it runs the four data stages with ``dagster asset materialize -m llm_assets --select
raw_books,corpus,tokenizer,tokenized_dataset`` (vocabulary 8192, default threads) and reports:

- the wall time of the command, the CPU time of all its processes (from /proc: on a shared machine
  the figure that does not depend on what else runs), and the run's span from its event log;
- each stage's time (Dagster's step durations, from the run's event log), peak memory (the step
  process's ``VmHWM``; the largest sum of RSS over the step and the processes it started; and the
  largest sum of their private memory, i.e. without the pages a forked step shares with the fork
  server; sampled from /proc every 0.25 s by ``process_probe``), and the disk used under data/;
- the dataset build's peak disk (measured by the build itself at every phase boundary, and the
  largest staging folder the probe saw) against the finished dataset;
- re-runs with nothing changed (the digest caches hold every output's identity), alternating with
  the baseline in the same invocation, re-runs after deleting the digest caches (every output and
  book hashed in full once, as before identity caching); medians;
- the size of raw_books' materialization record in the event log (every stage's, for scale);
- the corpus cleaned by ``write_corpus`` with one worker and with the machine's cores, each in a
  fresh process (time, and whether the bytes are the same);
- the time the web UI's asset page for raw_books takes to show its metadata, in headless Chromium
  (``dagster dev`` on the project's history; skipped with a message when Chromium is missing).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import dagster as dg  # noqa: E402
from catalog_tick import generate_catalog  # noqa: E402
from process_probe import Probe, disk_used  # noqa: E402
from library_webui import time_asset_page  # noqa: E402

from llm_assets.instance import INSTANCE_DIR  # noqa: E402
from llm_assets_tests.gutenberg_server import GutenbergMirror  # noqa: E402

STAGES = ("raw_books", "corpus", "tokenizer", "tokenized_dataset")
SHELF = "Category: Novels"
SHARED = Path(os.environ.get("LLM_ASSETS_SHARED", "/work/shared")) / "gutenberg" / "mirror"
SHIPPED = REPO / "llm_assets_tests" / "mirror"
MB = 1e6


def source_books() -> list[bytes]:
    """The shared Gutenberg books (18, 5.9 MB) where present, else the five shipped ones."""
    folder = SHARED if SHARED.is_dir() else SHIPPED
    return [p.read_bytes() for p in sorted((folder / "cache" / "epub").glob("*/pg*.txt"))]


def library_ids(count: int, rows: int) -> list[int]:
    """``count`` catalog ids spread over the catalog (none among the newest, uncatalogued rows)."""
    step = (rows - 1000) // count
    return [70 + step * k for k in range(count)]


def shelve(catalog: bytes, ids: set[int]) -> bytes:
    """The catalog with ``SHELF`` on exactly ``ids`` (English texts) and on no other row."""
    rows = list(csv.reader(io.StringIO(catalog.decode("utf-8"))))
    header = rows[0]
    col = {name: header.index(name) for name in ("Text#", "Type", "Language", "Bookshelves")}
    for row in rows[1:]:
        shelves = [s for s in row[col["Bookshelves"]].split("; ") if s and s != SHELF]
        if int(row[col["Text#"]]) in ids:
            row[col["Type"]], row[col["Language"]] = "Text", "en"
            shelves = sorted([*shelves, SHELF])
        row[col["Bookshelves"]] = "; ".join(shelves)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue().encode("utf-8")


def materialize(
    project: Path, env: dict[str, str], config: dict, probe_folders: dict[str, Path]
) -> tuple[float, float, Probe]:
    """One ``dagster asset materialize`` of the four stages, probed: its wall time, the CPU time of
    its whole process tree (summed from /proc by the probe), and the probe."""
    command = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "llm_assets",
               "--select", ",".join(STAGES), "--config-json", json.dumps(config)]
    log = project / f"materialize-{time.time_ns()}.log"
    started = time.perf_counter()
    with open(log, "wb") as out:
        process = subprocess.Popen(command, cwd=project, env=env, stdout=out, stderr=subprocess.STDOUT)
        with Probe(process.pid, folders=probe_folders) as probe:
            code = process.wait()
    wall = time.perf_counter() - started
    if code != 0:
        raise SystemExit(f"materialize failed ({code}):\n{log.read_text(errors='replace')[-5000:]}")
    return wall, probe.cpu_seconds(), probe


def latest_run(instance: dg.DagsterInstance) -> dict:
    """Per step of the latest run: seconds (Dagster's duration), pid, start and end times; and the run's span."""
    run = instance.get_runs(limit=1)[0]
    steps: dict[str, dict] = {}
    span = []
    for record in instance.get_records_for_run(run.run_id).records:
        entry = record.event_log_entry
        event = entry.dagster_event
        if event is None:
            continue
        kind = event.event_type
        if kind in (dg.DagsterEventType.RUN_START, dg.DagsterEventType.RUN_SUCCESS):
            span.append(entry.timestamp)
        step = steps.setdefault(event.step_key, {}) if event.step_key else None
        if step is None:
            continue
        if kind == dg.DagsterEventType.STEP_WORKER_STARTED:
            step["pid"] = int(event.event_specific_data.metadata["pid"].value)
        elif kind == dg.DagsterEventType.STEP_START:
            step["start"] = entry.timestamp
        elif kind == dg.DagsterEventType.STEP_SUCCESS:
            step["end"] = entry.timestamp
            step["seconds"] = event.event_specific_data.duration_ms / 1000
    return {"steps": steps, "run_seconds": span[-1] - span[0] if len(span) == 2 else float("nan")}


def record_sizes(instance: dg.DagsterInstance) -> dict[str, int]:
    """Bytes of each stage's latest materialization event as the instance stores it."""
    return {stage: len(dg.serialize_value(instance.get_latest_materialization_event(dg.AssetKey(stage))))
            for stage in STAGES}


def metadata(instance: dg.DagsterInstance, stage: str) -> dict:
    event = instance.get_latest_materialization_event(dg.AssetKey(stage))
    return {k: v.value for k, v in event.asset_materialization.metadata.items()}


def report_run(title: str, wall: float, cpu: float, run: dict, probe: Probe | None) -> float:
    steps = run["steps"]
    inside = sum(steps[s].get("seconds", 0.0) for s in STAGES)
    print(f"\n{title}: {wall:.1f} s wall, {cpu:.1f} s CPU (the command's processes); the run itself, start to "
          f"success: {run['run_seconds']:.1f} s; inside the four steps: {inside:.1f} s")
    for stage in STAGES:
        step = steps.get(stage, {})
        line = f"  {stage:<18} {step.get('seconds', float('nan')):7.1f} s"
        if probe is not None and "pid" in step:
            pid = step["pid"]
            workers = len(probe.tree(pid)) - 1
            disk = probe.peak_disk("data", step.get("start", 0), step.get("end", 1e18))
            line += (f" | peak RSS {probe.peak_rss(pid) / MB:5.0f} MB (step), {probe.peak_tree_rss(pid) / MB:5.0f} MB "
                     f"with its {workers} child processes, private {probe.peak_tree_private(pid) / MB:5.0f} MB"
                     f" | data/ at most {disk / MB:5.0f} MB")
        print(line)
    return inside


CLEAN = """
import hashlib, json, sys, time
from pathlib import Path
from llm_assets.books.corpus import write_corpus
from llm_assets.books.downloads import snapshot_selection
raw, out, workers = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
began = time.perf_counter()
write_corpus(snapshot_selection(raw), raw, out / "all_books.txt", workers=workers)
seconds = time.perf_counter() - began
digest = hashlib.sha256((out / "all_books.txt").read_bytes() + (out / "all_books.index.json").read_bytes())
print(json.dumps({"seconds": seconds, "sha256": digest.hexdigest()}))
"""


def corpus_workers(raw_dir: Path, out: Path) -> None:
    """The corpus cleaned with one worker, then with the machine's cores, each in a fresh process
    (the stage's own ``write_corpus``, without Dagster): time, and whether the bytes are the same."""
    cores = len(os.sched_getaffinity(0))
    found = {}
    for workers in (1, cores):
        folder = out / f"workers-{workers}"
        folder.mkdir(parents=True)
        done = subprocess.run([sys.executable, "-c", CLEAN, str(raw_dir), str(folder), str(workers)],
                              cwd=REPO, check=True, capture_output=True, text=True)
        found[workers] = json.loads(done.stdout.strip().splitlines()[-1])
        shutil.rmtree(folder)
    same = "byte-identical" if found[1]["sha256"] == found[cores]["sha256"] else "DIFFERENT"
    print(f"\ncorpus cleaning (write_corpus in its own process): 1 worker {found[1]['seconds']:.1f} s, "
          f"{cores} workers {found[cores]['seconds']:.1f} s ({found[1]['seconds'] / found[cores]['seconds']:.2f}x); "
          f"text and index {same}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--books", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=77_000, help="catalog rows")
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (default: a temporary one)")
    parser.add_argument("--reruns", type=int, default=3,
                        help="re-runs with nothing changed (and, alternating, one fewer without the digest caches)")
    parser.add_argument("--no-webui", action="store_true", help="skip the browser check of raw_books' page")
    parser.add_argument("--no-corpus-workers", action="store_true", help="skip the in-process corpus comparison")
    args = parser.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="library-"))
    if args.keep and work.exists():
        shutil.rmtree(work)
    project = work / "project"
    data = project / "data"
    data.mkdir(parents=True)
    books = source_books()
    ids = library_ids(args.books, args.rows)
    catalog = shelve(generate_catalog(args.rows), set(ids))
    (data / "books.yaml").write_text(f'books:\n  - bookshelf: "{SHELF}"\n    limit: {args.books}\n')
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME" and not k.startswith("LLM_ASSETS_")}
    subprocess.run(["llm-assets", "init"], cwd=project, env=env, check=True, capture_output=True)
    config = {"ops": {"tokenizer": {"config": {"vocab_size": args.vocab}}}}
    folders = {"data": data, "staging": data / ".processed_dataset.versions"}
    cores = len(os.sched_getaffinity(0))
    print(f"load average at the start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(f"library: {args.books} books ({sum(len(books[k % len(books)]) for k in range(args.books)) / MB:.0f} MB "
          f"raw, {len(books)} distinct books repeated), a {args.rows:,}-row catalog ({len(catalog) / MB:.1f} MB), "
          f"vocabulary {args.vocab}, {cores} cores; project {project}")
    with GutenbergMirror() as mirror:
        for k, book_id in enumerate(ids):
            mirror.add_book(book_id, books[k % len(books)])
        mirror.add_catalog(catalog)
        env["GUTENBERG_MIRROR"] = mirror.url
        first_wall, first_cpu, first_probe = materialize(project, env, config, folders)
        with dg.DagsterInstance.from_config(str(project / INSTANCE_DIR)) as instance:
            first = latest_run(instance)
            selected = [b["id"] for b in json.loads((data / "raw" / "books.json").read_text())["books"]]
            assert selected == ids, f"the shelf selected {len(selected)} books, not the {len(ids)} served"
            dataset = json.loads((data / ".stamps" / "tokenized_dataset.json").read_text())["report"]
            text_mb = metadata(instance, "corpus")["total_bytes"] / MB
        requests_before = len(mirror.requests)
        warm, cold = [], []  # re-runs with the digest caches, and after deleting them, alternating
        for n in range(2 * args.reruns - 1):
            caches = sorted((data / ".stamps").glob("*.digests.json"))
            if n % 2:
                for cache in caches:
                    cache.unlink()
            wall, cpu, probe = materialize(project, env, config, folders)
            with dg.DagsterInstance.from_config(str(project / INSTANCE_DIR)) as instance:
                (cold if n % 2 else warm).append((wall, cpu, latest_run(instance), probe))
                reused = {s: metadata(instance, s).get("reused_previous_output") for s in STAGES[1:]}
                assert all(reused.values()), f"a re-run with nothing changed rebuilt something: {reused}"
        requests_again = len(mirror.requests) - requests_before
        with dg.DagsterInstance.from_config(str(project / INSTANCE_DIR)) as instance:
            sizes = record_sizes(instance)
    print(f"the shelf selected all {len(selected)} books, in catalog order; corpus {text_mb:.0f} MB of text")
    first_inside = report_run("first run, four stages", first_wall, first_cpu, first, first_probe)
    for n, (wall, cpu, run, probe) in enumerate(warm, start=1):
        report_run(f"re-run {n} with nothing changed", wall, cpu, run, probe)
    for n, (wall, cpu, run, probe) in enumerate(cold, start=1):
        report_run(f"re-run {n} after deleting the digest caches (baseline: every output and book hashed)",
                   wall, cpu, run, None)

    def median(runs: list, pick) -> float:
        return statistics.median(pick(r) for r in runs)

    w_wall, w_cpu, w_in = (median(warm, lambda r: r[0]), median(warm, lambda r: r[1]),
                           median(warm, lambda r: sum(r[2]["steps"][s]["seconds"] for s in STAGES)))
    c_wall, c_cpu, c_in = (median(cold, lambda r: r[0]), median(cold, lambda r: r[1]),
                           median(cold, lambda r: sum(r[2]["steps"][s]["seconds"] for s in STAGES)))
    w_run = median(warm, lambda r: r[2]["run_seconds"])
    print(f"\nre-run with nothing changed (median of {len(warm)}): {w_wall:.1f} s wall, {w_run:.1f} s from the run's "
          f"start to its success, {w_in:.1f} s in the four steps, {w_cpu:.1f} s CPU; against the cache-less re-run "
          f"(median of {len(cold)}): {c_wall:.1f} s wall ({c_wall / w_wall:.2f}x), {c_in:.1f} s in the steps "
          f"({c_in / w_in:.2f}x), {c_cpu:.1f} s CPU ({c_cpu / w_cpu:.2f}x); first run {first_wall:.1f} s wall "
          f"({first_inside:.1f} s in the steps, {first_cpu:.0f} s CPU); HTTP requests in the re-runs: {requests_again}")
    peak, final, phases = dataset["peak_disk_bytes"], dataset["disk_bytes"], dataset["disk_phases"]
    print(f"\ntokenized_dataset: {dataset['total_tokens']:,} tokens, finished dataset {final / MB:.0f} MB on disk; "
          f"build peak {peak / MB:.0f} MB = {peak / final:.2f}x (measured by the build at each phase end: "
          + ", ".join(f"{k} {v / MB:.0f} MB" for k, v in phases.items())
          + f"); largest staging folder the probe saw {first_probe.peak_disk('staging') / MB:.0f} MB; "
          f"had the flat token file stayed to the end, as before: {(phases['saved'] + phases['tokens']) / MB:.0f} MB "
          f"= {(phases['saved'] + phases['tokens']) / final:.2f}x")
    print(f"data/ after the first run {disk_used(data) / MB:.0f} MB: "
          + ", ".join(f"{p.name} {disk_used(p) / MB:.0f} MB" for p in sorted(data.iterdir())
                      if p.is_dir() and not p.is_symlink()))
    print("\nmaterialization records in the event log: "
          + ", ".join(f"{s} {n / 1000:.1f} KB" for s, n in sizes.items()))
    per_book = [data / "raw" / "index.json", data / "raw" / "books.json",
                *sorted((data / "raw" / "resolutions").glob("*.json")),
                data / "all_books.index.json", *sorted((data / ".stamps").glob("*.json"))]
    print(f"files that grow with the list ({args.books} books): "
          + ", ".join(f"{p.relative_to(data)} {p.stat().st_size / 1000:.0f} KB" for p in per_book if p.exists()))
    if not args.no_corpus_workers:
        corpus_workers(data / "raw", work / "corpus-workers")
    if not args.no_webui:
        time_asset_page(project, env, "raw_books", work / "dagster-dev.log")
    print(f"\nload average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
