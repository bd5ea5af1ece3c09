"""trained_model at equal wall time and at equal steps: against the tuned reference, and AdamW vs Muon.

    # equal wall time: the reference (best of 0.5x / 1x / 2x the preset's peak LR) for N steps,
    # and trained_model with its defaults given the reference's measured time as its budget
    OMP_NUM_THREADS=1 python benchmarks/budget_quality.py equal-time --preset tiny --steps 600 --seeds 1,2,3
    # the optimizers, trained_model at equal steps (and, with --budget-seconds, at equal time)
    OMP_NUM_THREADS=1 python benchmarks/budget_quality.py optimizers --preset tiny --steps 600 --seeds 1,2,3

Both recipes train the preset's shape on the same blocks (benchmarks/quality.py builds them from the
shared Gutenberg books: BPE 8192, 128-token blocks) with the preset's batch, one thread each, and
are scored on the whole validation split, as loss per token and in bits per byte (eval_bpb). The
reference is quality.py's nanoGPT-style loop (AdamW, 5% warm-up, cosine to a tenth). "Equal wall
time" gives trained_model, per seed, the time the reference took for its N steps at the first
``--reference-lrs`` multiplier (model build, training and its final evaluation), counted as the
reference's CPU seconds: one thread, so that is its wall time on a core of its own, whatever else
ran meanwhile. trained_model gets it as a wall-time budget, which also pays for its own
evaluations, checkpoints, samples and publish, and which a busy machine only shortens. Every run is appended to ``budget_runs.jsonl`` in ``--work-dir``.
Figures: benchmarks/QUALITY.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import DEFAULT_WORK_DIR, SHARED, prepare_data, run_reference  # noqa: E402

from llm_assets.text.byte_counts import validation_target_bytes  # noqa: E402
from llm_assets.training.config import TrainConfig  # noqa: E402
from llm_assets.training.presets import get_preset  # noqa: E402
from llm_assets.training.train import train_model  # noqa: E402

def reference(data: tuple[Path, Path], preset: str, steps: int, seed: int, multiplier: float) -> dict[str, Any]:
    shape = get_preset(preset)
    started, cpu = time.perf_counter(), time.process_time()
    loss = run_reference(*data, shape, steps, seed, max(1, round(0.05 * steps)), lr=shape.learning_rate * multiplier)
    return {"recipe": f"reference {multiplier:g}x lr", "eval_loss": loss, "seconds": time.perf_counter() - started,
            "cpu_seconds": time.process_time() - cpu, "steps": steps}


def trained_model(data: tuple[Path, Path], work: Path, preset: str, seed: int, **keys: Any) -> dict[str, Any]:
    """trained_model's own code with its defaults, but for the preset, the seed and ``keys``."""
    checkpoints = work / "checkpoints" / f"{preset}-{seed}-{time.time_ns()}"
    config = TrainConfig(preset=preset, seed=seed, **keys)
    started = time.perf_counter()
    try:
        result = train_model(*data, checkpoints, config, device="cpu")
    finally:
        shutil.rmtree(checkpoints, ignore_errors=True)
    label = "trained_model " + " ".join(f"{k}={v}" for k, v in sorted(keys.items()))
    return {"recipe": label, "eval_loss": result.eval_loss, "seconds": time.perf_counter() - started,
            "steps": result.global_step, "optimizer": result.optimizer, "best_step": result.best_step}


def record(args: argparse.Namespace, seed: int, run: dict[str, Any], bytes_factor: Any) -> dict[str, Any]:
    run = {**run, "preset": args.preset, "seed": seed, "tag": args.tag,
           "eval_bpb": bytes_factor.bits_per_byte(run["eval_loss"])}
    with open(args.work_dir / "budget_runs.jsonl", "a", encoding="utf-8") as log:
        log.write(json.dumps(run) + "\n")
    print(f"{args.preset} seed {seed} {run['recipe']}: val loss {run['eval_loss']:.4f} "
          f"({run['eval_bpb']:.4f} bits/byte), {run['steps']} steps, {run['seconds']:.1f} s", flush=True)
    return run


def summarize(runs: list[dict[str, Any]]) -> None:
    """Mean, spread (max - min) and per-seed values of each recipe; the reference's best LR first."""
    by_recipe: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        by_recipe.setdefault(run["recipe"], []).append(run)
    print("\n| recipe | val loss, mean (spread) | bits/byte, mean | steps, mean | seconds, mean | per seed |")
    print("| --- | --- | --- | ---: | ---: | --- |")
    means = {}
    for recipe, rows in by_recipe.items():
        losses = [r["eval_loss"] for r in rows]
        means[recipe] = statistics.fmean(losses)
        print(f"| {recipe} | {means[recipe]:.3f} ({max(losses) - min(losses):.3f}) | "
              f"{statistics.fmean(r['eval_bpb'] for r in rows):.3f} | {statistics.fmean(r['steps'] for r in rows):.0f} | "
              f"{statistics.fmean(r['seconds'] for r in rows):.1f} | {' / '.join(f'{v:.3f}' for v in losses)} |")
    references = {k: v for k, v in means.items() if k.startswith("reference")}
    if references:
        best = min(references, key=references.get)
        for recipe, mean in means.items():
            if not recipe.startswith("reference"):
                print(f"{recipe} - best reference ({best}) = {mean - references[best]:+.3f}")


def equal_time(args: argparse.Namespace, data: tuple[Path, Path], factor: Any) -> list[dict[str, Any]]:
    runs = []
    for seed in args.seeds:
        timed = [record(args, seed, reference(data, args.preset, args.steps, seed, m), factor)
                 for m in args.reference_lrs]
        # The reference's CPU seconds (one thread): its wall time on a core of its own, whatever else
        # the machine was doing. trained_model gets them as wall time, so a busy machine only
        # ever shortens trained_model's side.
        budget = timed[0]["cpu_seconds"]
        runs += timed
        for optimizer in args.optimizers:
            runs.append(record(args, seed, trained_model(data, args.work_dir, args.preset, seed, optimizer=optimizer,
                                                         time_budget_minutes=round(budget / 60, 4), **args.keys),
                               factor))
    return runs


def optimizers(args: argparse.Namespace, data: tuple[Path, Path], factor: Any) -> list[dict[str, Any]]:
    runs = []
    for seed in args.seeds:
        for optimizer in args.optimizers:
            length = ({"time_budget_minutes": round(args.budget_seconds / 60, 4)} if args.budget_seconds
                      else {"max_steps": args.steps, "save_steps": args.steps})
            runs.append(record(args, seed, trained_model(data, args.work_dir, args.preset, seed, optimizer=optimizer,
                                                         **length, **args.keys), factor))
    return runs


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("mode", choices=("equal-time", "optimizers"))
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seeds", default="1,2,3", type=lambda s: [int(x) for x in s.split(",") if x])
    parser.add_argument("--reference-lrs", default="1,0.5,2", type=lambda s: [float(x) for x in s.split(",") if x],
                        help="the reference's peak LR multipliers; the first one's time is the budget")
    parser.add_argument("--optimizers", default="auto", type=lambda s: [x for x in s.split(",") if x])
    parser.add_argument("--budget-seconds", type=float, default=0.0, help="optimizers: equal time instead of steps")
    parser.add_argument("--keys", default="{}", type=json.loads,
                        help='more trained_model keys as JSON, e.g. \'{"batch_size": 8}\'')
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--tag", default="")
    parser.add_argument("--mirror", type=Path, default=SHARED / "mirror")
    parser.add_argument("--manifest", type=Path, default=SHARED / "MANIFEST.tsv")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    data = prepare_data(args.work_dir, args.mirror, args.manifest)
    factor = validation_target_bytes(*data)
    runs = (equal_time if args.mode == "equal-time" else optimizers)(args, data, factor)
    summarize(runs)


if __name__ == "__main__":
    main()
