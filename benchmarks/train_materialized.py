"""`trained_model` as users run it, beside a bare PyTorch loop: tokens/s at the machine's default threads.

Each measurement is a fresh process. ``trained_model``: a real `dagster asset materialize --select
trained_model` in a project folder (its own instance), with checkpoints, evaluation and logging on;
its figure is the ``tokens_per_second`` metadata (tokens over the seconds spent in training steps).
The bare loop (forward, backward, clipping, fused AdamW; `train_throughput.py`'s) trains the same
model on the same blocks with the same batch, in its own process. The two alternate, so a
neighbour's burst of load hits both alike.

    python benchmarks/train_materialized.py --presets tiny,mini --steps 400 --save-steps 100 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import dagster as dg

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))
from train_throughput import bare_loop, build_inputs  # noqa: E402

from llm_assets.instance import INSTANCE_DIR, init_instance  # noqa: E402
from llm_assets.training.config import TrainConfig  # noqa: E402


def materialized(project: Path, preset: str, steps: int, save_steps: int, checkpoints: Path) -> float:
    """tokens_per_second of one real materialization of trained_model (fresh checkpoint folder)."""
    config = {"ops": {"trained_model": {"config": {
        "preset": preset, "max_steps": steps, "save_steps": save_steps, "logging_steps": 10,
        "optimizer": "adamw",  # the bare loop it is compared with runs fused AdamW
        "sample_prompts": ["The"], "sample_max_new_tokens": 8}}}}
    env = {k: v for k, v in os.environ.items() if k != "DAGSTER_HOME"}
    env.update(LLM_ASSETS_CHECKPOINT_DIR=str(checkpoints), LLM_DEVICE="cpu")
    done = subprocess.run(
        [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "llm_assets", "--select", "trained_model",
         "--config-json", json.dumps(config)], cwd=project, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"materialize failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    instance = dg.DagsterInstance.from_config(str(project / INSTANCE_DIR))
    try:
        event = instance.get_latest_materialization_event(dg.AssetKey("trained_model"))
        return float(event.asset_materialization.metadata["tokens_per_second"].value)
    finally:
        instance.dispose()


def bare(dataset_dir: Path, tokenizer_dir: Path, preset: str, steps: int) -> float:
    """The bare loop's tokens/s, in a process of its own."""
    done = subprocess.run([sys.executable, __file__, "--bare-child", preset, "--steps", str(steps),
                           "--dataset-dir", str(dataset_dir), "--tokenizer-dir", str(tokenizer_dir)],
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny,mini")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--save-steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=2048)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--bare-child", help=argparse.SUPPRESS)
    parser.add_argument("--dataset-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--tokenizer-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_child:
        config = TrainConfig(preset=args.bare_child, max_steps=args.steps, sample_prompts=[], optimizer="adamw")
        print(bare_loop(args.dataset_dir, args.tokenizer_dir, config, args.steps, "cpu").mean)
        return

    import torch

    print(f"{os.cpu_count()} cpus, torch {torch.__version__} default threads {torch.get_num_threads()}, "
          f"vocab {args.vocab}, context {args.context}, {args.steps} steps, checkpoint and evaluation every "
          f"{args.save_steps}", flush=True)
    with tempfile.TemporaryDirectory(prefix="train-materialized-") as tmp:
        root = Path(tmp)
        tokenizer_dir, dataset_dir = build_inputs(root / "inputs", args.vocab, args.context, rows=4000)
        project = root / "project"
        (project / "data").mkdir(parents=True)
        shutil.copytree(tokenizer_dir, project / "data" / "tokenizer")
        shutil.copytree(dataset_dir, project / "data" / "processed_dataset")
        init_instance(project)
        for preset in args.presets.split(","):
            ours, plain = [], []
            for repeat in range(args.repeats):
                run = lambda: ours.append(materialized(project, preset, args.steps, args.save_steps,  # noqa: E731
                                                       root / f"ck-{preset}-{repeat}"))
                loop = lambda: plain.append(bare(dataset_dir, tokenizer_dir, preset, args.steps))  # noqa: E731
                for measure in ((run, loop) if repeat % 2 == 0 else (loop, run)):
                    measure()
            ratios = [o / b for o, b in zip(ours, plain)]
            print(f"{preset:>6}: trained_model {', '.join(f'{x:,.0f}' for x in ours)} tok/s | bare loop "
                  f"{', '.join(f'{x:,.0f}' for x in plain)} tok/s | ratio {', '.join(f'{r:.3f}' for r in ratios)} "
                  f"(median {statistics.median(ratios):.3f})", flush=True)


if __name__ == "__main__":
    main()
