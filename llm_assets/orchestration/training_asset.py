"""The trained_model asset: GPT-2 trained on the tokenized dataset, in this step or under torchrun."""


import os
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import dagster as dg
from pydantic import Field

from llm_assets.orchestration import checks
from llm_assets.orchestration import metadata as md
from llm_assets.orchestration.data_assets import GROUP, tokenized_dataset
from llm_assets.orchestration.resources import DeviceResource, PathsResource
from llm_assets.atomic import hold_version
from llm_assets.instance import TRAINING_POOL
from llm_assets.settings import Paths
from llm_assets.training.checkpoints import training_lock
from llm_assets.training.config import TrainConfig



class TrainedModelConfig(dg.Config, TrainConfig):
    """The training configuration (see ``training/config.py``) plus how this asset runs it."""

    nproc_per_node: int = Field(
        default=1, ge=1, description="Processes per node; more than 1 trains data-parallel with torchrun."
    )
    progress_interval_seconds: float = Field(
        default=2.0, ge=0,
        description="At most one training progress line (and live-chart point) per this many seconds in "
        "the Dagster log; evaluations and the last step always show. 0: one every logging_steps.",
    )
    training_lock: bool = Field(
        default=True,
        description="Hold checkpoints/.training.lock while training, so one training at a time writes "
        "checkpoints. Turn off only where Dagster's pool alone keeps trainings apart (a PostgreSQL instance).",
    )

    def train_config(self) -> TrainConfig:
        """The training keys alone: the asset-only keys above never reach the run's identity."""
        asset_only = set(type(self).model_fields) - set(TrainConfig.model_fields)
        return TrainConfig.model_validate(self.model_dump(exclude=asset_only))


@dg.asset(
    group_name=GROUP,
    deps=[tokenized_dataset],
    code_version="2",
    kinds={"pytorch"},
    pool=TRAINING_POOL,
    check_specs=checks.TRAINED_MODEL,
    description=(
        "GPT-2 trained from scratch with the Hugging Face Trainer on the tokenized dataset. "
        "Checkpoints go under checkpoints/runs/<dataset+config fingerprint>/ and a re-run resumes "
        "from the latest complete one; the final model and tokenizer are published to "
        "checkpoints/latest/ (safetensors)."
    ),
)
def trained_model(
    context: dg.AssetExecutionContext, config: TrainedModelConfig, paths: PathsResource, device: DeviceResource
) -> Iterator[dg.MaterializeResult]:
    # PyTorch and transformers load here, not when the code location loads (the UI, the CLI and the
    # data steps never need them; the executor's fork server has them imported already).
    from llm_assets.text.dataset import unigram_entropy
    from llm_assets.training.generate import generate_text, load_model
    from llm_assets.training.progress import ChartPoints, Throttle, TrainProgress, chart_values
    from llm_assets.training.train import train_model

    charted, paced = ChartPoints(), Throttle(config.progress_interval_seconds)

    def report(update: TrainProgress) -> None:
        """A progress line in the log; every so often a point of the live loss chart (an observation)."""
        if not paced(update):
            return
        context.log.info(update.message)
        if charted(update):
            context.log_event(dg.AssetObservation(asset_key=context.asset_key, metadata=chart_values(update)))

    p = paths.paths()
    where = device.resolve()  # fails fast, naming the device, before any work
    train_config = config.train_config()
    processes = config.nproc_per_node
    context.log.info(f"training preset {train_config.preset} on {where} "
                     f"({processes} process{'es' if processes > 1 else ''})")
    lock = training_lock(p.checkpoint_dir, on_wait=context.log.warning) if config.training_lock else nullcontext()
    # The dataset and tokenizer versions this run trains on, resolved once and held until it ends:
    # the data stages may publish new ones meanwhile, and pruning never deletes a held version.
    with lock as held, hold_version(p.dataset_dir) as dataset, hold_version(p.tokenizer_dir) as tokenizer:
        context.log.info(f"holding the training lock {held}" if held else
                         "training without the training lock (training_lock: false)")
        trained_on = _trained_on(context, p, dataset, tokenizer)
        if processes == 1:
            result = train_model(dataset, tokenizer, p.checkpoint_dir, train_config, device=where,
                                 progress=report, lock=False)
        else:
            result = _train_with_torchrun(context, p, dataset, tokenizer, train_config, where, processes, report)
        for prompt, text in result.samples:
            context.log.info(f"sample: {prompt!r} -> {text!r}")
        model, tokenizer = load_model(result.model_dir, device="cpu")
        yield dg.MaterializeResult(
            metadata={**md.trained_model(result), **trained_on},
            check_results=[
                checks.model_learned(result.eval_loss, unigram_entropy(dataset)),
                checks.model_reloads_and_generates(
                    generate_text(model, tokenizer, "The", max_new_tokens=20, seed=0),
                    sorted(f.name for f in result.model_dir.glob("*.safetensors")),
                ),
            ],
        )
        context.log.info("releasing the training lock" if held else "training done")


def _trained_on(context: dg.AssetExecutionContext, p: Paths, dataset: Path, tokenizer: Path) -> dict[str, Any]:
    """The held versions as metadata, and a warning if a publish slipped in between the run's start
    (when Dagster noted tokenized_dataset's data version as this run's input) and the hold.

    The digest comes from the dataset stage's digest cache, read and never written here (the stage
    is its only writer): the files it hashed when it published are not read again, so a gigabyte
    dataset costs a ``stat`` per file, not a full read, at every training start."""
    from llm_assets.digests import DigestCache

    digests = DigestCache(p.stamps_dir / "tokenized_dataset.digests.json")
    digest = digests.digest_tree(dataset, "*.arrow")  # tokenized_dataset's data version
    context.log.info(f"dataset digest: {digests.summary()}")
    event = context.instance.get_latest_materialization_event(tokenized_dataset.key)
    recorded = (event.tags or {}).get("dagster/data_version") if event is not None else None
    if recorded and recorded != digest:
        context.log.warning(f"training on {dataset} (data version {digest[:12]}), not the dataset last recorded "
                            f"({recorded[:12]}): it was published while this run started")
    context.log.info(f"training on {dataset} and {tokenizer}, held until the run ends")
    return {"dataset_version": dg.MetadataValue.path(str(dataset)), "dataset_data_version": digest,
            "tokenizer_version": dg.MetadataValue.path(str(tokenizer))}


def _train_with_torchrun(
    context: dg.AssetExecutionContext,
    p: Paths,
    dataset: Path,
    tokenizer: Path,
    train_config: TrainConfig,
    device: str,
    nproc_per_node: int,
    report: Callable[[Any], None],
):  # -> TrainResult
    """Launch data-parallel training under torchrun; rank 0 streams its progress through Dagster Pipes.

    The plan is made here first, so a bad key fails in seconds with its name rather than in every
    worker after torchrun has started them. Rank 0's reports arrive as Pipes messages while it
    trains and go through ``report`` as they come, so the log and the live chart keep up.
    """
    from llm_assets.training.launch import torchrun_command
    from llm_assets.training.plan import plan_training
    from llm_assets.training.progress import TrainProgress
    from llm_assets.training.train import TrainResult

    plan_training(dataset, tokenizer, train_config, world_size=nproc_per_node, device=device)
    with tempfile.TemporaryDirectory(prefix="llm-assets-train-") as tmp:
        result_path = Path(tmp) / "result.json"
        command = torchrun_command(nproc_per_node, dataset, tokenizer, p.checkpoint_dir,
                                   train_config, device, result_path, lock=False)
        context.log.info("launching: " + " ".join(command[:8]) + " ...")
        seen = 0

        def relay(session: dg.PipesSession) -> None:
            nonlocal seen
            messages = session.get_custom_messages()
            for message in messages[seen:]:
                report(TrainProgress(**message))
            seen = len(messages)

        with dg.open_pipes_session(
            context=context,
            context_injector=dg.PipesTempFileContextInjector(),
            message_reader=dg.PipesTempFileMessageReader(),
        ) as session:
            process = subprocess.Popen(command, env={**os.environ, **session.get_bootstrap_env_vars()})
            while process.poll() is None:
                time.sleep(0.5)
                relay(session)
        relay(session)
        if process.returncode != 0:
            raise dg.Failure(f"torchrun exited with code {process.returncode}; its output is in the step's log. "
                             f"Checkpoints written so far are kept under {p.runs_dir}.")
        return TrainResult.model_validate_json(result_path.read_text(encoding="utf-8"))
