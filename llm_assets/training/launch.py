"""Training as a command: what torchrun runs on every process, and the torchrun line that runs it.

    python -m torch.distributed.run --standalone --nproc_per_node 2 -m llm_assets.training.launch \\
        --dataset-dir data/processed_dataset --tokenizer-dir data/tokenizer \\
        --checkpoint-dir checkpoints --config-json '{"preset": "tiny"}' --device cpu

Multi-node works with torchrun's rendezvous options (``--nnodes``, ``--rdzv_backend c10d``,
``--rdzv_endpoint``, ``--rdzv_id``) when ``--checkpoint-dir`` is on storage every node shares.
Under Dagster Pipes, rank 0 sends its progress to the orchestrator (``dagster_pipes``, imported
only then: this module never imports dagster).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from llm_assets.atomic import atomic_write
from llm_assets.training.config import TrainConfig
from llm_assets.training.distributed import Distributed
from llm_assets.training.progress import TrainProgress
from llm_assets.training.train import train_model

_STANDALONE_CONFLICTS = ("--nnodes", "--rdzv", "--master", "--node_rank", "--node-rank", "--standalone")


def torchrun_command(
    nproc_per_node: int,
    dataset_dir: Path,
    tokenizer_dir: Path,
    checkpoint_dir: Path,
    config: TrainConfig,
    device: str,
    result_path: Path,
    extra_torchrun_args: Sequence[str] = (),
    lock: bool = True,
) -> list[str]:
    """The command line that trains with ``nproc_per_node`` processes under torchrun.

    Single node by default (``--standalone``); pass rendezvous options in ``extra_torchrun_args``
    for multi-node, and ``--standalone`` is left out. ``lock=False`` when the caller already holds
    the training lock.
    """
    if nproc_per_node < 1:
        raise ValueError(f"Config key `nproc_per_node`={nproc_per_node}: must be at least 1.")
    extra = list(extra_torchrun_args)
    standalone = [] if any(a.startswith(_STANDALONE_CONFLICTS) for a in extra) else ["--standalone"]
    return [
        sys.executable, "-m", "torch.distributed.run", *standalone,
        "--nproc_per_node", str(nproc_per_node), *extra,
        "-m", "llm_assets.training.launch",
        "--dataset-dir", str(dataset_dir),
        "--tokenizer-dir", str(tokenizer_dir),
        "--checkpoint-dir", str(checkpoint_dir),
        "--device", device,
        "--config-json", config.model_dump_json(),
        "--result-json", str(result_path),
        *([] if lock else ["--no-lock"]),
    ]  # fmt: skip


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m llm_assets.training.launch",
        description="Train GPT-2 on a tokenized dataset (one process, or each rank of a torchrun job).",
    )
    parser.add_argument("--dataset-dir", type=Path, required=True)
    parser.add_argument("--tokenizer-dir", type=Path, required=True)
    parser.add_argument("--checkpoint-dir", type=Path, required=True)
    parser.add_argument("--device", default="cpu", help="a concrete device: cpu, cuda or mps")
    parser.add_argument("--config-json", default="{}", help="the training configuration as JSON (the asset's keys)")
    parser.add_argument("--result-json", type=Path, help="where rank 0 writes the result as JSON")
    parser.add_argument("--no-lock", action="store_true", help="the caller already holds the training lock")
    return parser.parse_args(argv)


def _print_progress(update: TrainProgress) -> None:
    print(update.message, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    config = TrainConfig.model_validate_json(args.config_json)
    dist = Distributed.from_env()

    def train(progress) -> object:  # noqa: ANN001
        return train_model(args.dataset_dir, args.tokenizer_dir, args.checkpoint_dir, config,
                           device=args.device, progress=progress, lock=not args.no_lock)

    if dist.is_main and os.environ.get("DAGSTER_PIPES_CONTEXT"):
        from dagster_pipes import open_dagster_pipes

        with open_dagster_pipes() as pipes:  # every report goes to the asset, which logs and charts it
            result = train(lambda update: pipes.report_custom_message(dataclasses.asdict(update)))
    else:
        result = train(_print_progress if dist.is_main else None)
    if dist.is_main and args.result_json is not None:
        atomic_write(args.result_json, result.model_dump_json(indent=2))
    # One line per rank: every rank resumed where rank 0 decided.
    print(f"rank {dist.rank} of {dist.world_size}: resumed from step {result.resumed_from_step}, "
          f"finished at step {result.global_step}", flush=True)
    if dist.world_size > 1:
        import torch.distributed

        if torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()  # a live gloo group can abort the interpreter at exit
    return 0


if __name__ == "__main__":
    sys.exit(main())
