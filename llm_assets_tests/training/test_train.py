"""The training stage on real (tiny) data: validation, publish, resume, fallback, torchrun."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from llm_assets_tests.training.conftest import TinyData, build_dataset, tiny_config
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from llm_assets.training.checkpoints import find_resume_checkpoint, is_complete_checkpoint, run_dir_for
from llm_assets.training.config import TrainConfig
from llm_assets.training.failures import TrainingOutOfMemoryError
from llm_assets.training.launch import torchrun_command
from llm_assets.training.plan import plan_training
from llm_assets.training.presets import padded_vocab_size
from llm_assets.training.publish import publish_model
from llm_assets.training.train import TrainResult, train_model


def validate_config(dataset_dir: Path, tokenizer_dir: Path, config: TrainConfig, world_size: int = 1):
    return plan_training(dataset_dir, tokenizer_dir, config, world_size=world_size)


def run_dir(data: TinyData, checkpoint_dir: Path, config: TrainConfig, world_size: int = 1) -> Path:
    plan = validate_config(data.dataset_dir, data.tokenizer_dir, config, world_size)
    return run_dir_for(checkpoint_dir / "runs", plan, data.dataset_dir, data.tokenizer_dir)

MPS_MESSAGE = "Placeholder storage has not been allocated on MPS device!"


def subprocess_env() -> dict[str, str]:
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"  # see conftest.one_thread_per_process
    env.pop("DAGSTER_PIPES_CONTEXT", None)
    return env


def kill_when_saved(data: TinyData, checkpoint_dir: Path, config: TrainConfig, checkpoint: Path) -> None:
    """Train in a child process (the torchrun entry point) and kill -9 it once ``checkpoint`` is complete."""
    command = [
        sys.executable, "-m", "llm_assets.training.launch",
        "--dataset-dir", str(data.dataset_dir), "--tokenizer-dir", str(data.tokenizer_dir),
        "--checkpoint-dir", str(checkpoint_dir), "--device", "cpu", "--config-json", config.model_dump_json(),
    ]  # fmt: skip
    child = subprocess.Popen(command, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    state = checkpoint / "trainer_state.json"  # written last: the checkpoint is complete
    deadline = time.monotonic() + 120
    while not state.exists() and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    _, stderr = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL, stderr.decode()[-2000:]


class RaiseOnceAtStep(TrainerCallback):
    """A real exception thrown from inside the Trainer's loop, as a failing kernel would."""

    def __init__(self, step: int, error: BaseException) -> None:
        self.step = step
        self.error = error
        self.raised = False

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step and not self.raised:
            self.raised = True
            raise self.error


# ---- configuration ---------------------------------------------------------------------------


def test_config_round_trips_through_json():
    config = tiny_config(learning_rate=3e-4, sample_prompts=["a", "b"])
    assert TrainConfig.model_validate_json(config.model_dump_json()) == config


def test_unknown_config_key_is_named():
    with pytest.raises(ValueError, match="max_step\n.*Extra inputs are not permitted"):
        TrainConfig.model_validate_json('{"max_step": 5}')


def test_unknown_preset_fails_before_training():
    with pytest.raises(ValueError, match="`preset`.*'huge'"):
        tiny_config(preset="huge")


@pytest.mark.parametrize(
    ("key", "value"),
    [("max_steps", 0), ("save_steps", 0), ("save_total_limit", 0), ("batch_size", -1), ("logging_steps", 0),
     ("warmup_steps", -2), ("learning_rate", float("nan")), ("precision", "fp8"), ("report_to", "wandb,"),
     ("time_budget_minutes", -1), ("decay_fraction", 1.0), ("optimizer", "sgd"), ("early_stopping_patience", -1)],
)
def test_bad_values_name_their_key(key: str, value: object):
    with pytest.raises(ValueError, match=f"(?m)^{key}$"):
        tiny_config(**{key: value})


def test_batch_must_split_into_equal_micro_batches(tiny_data: TinyData):
    with pytest.raises(ValueError, match="`batch_size`=8 and `gradient_accumulation_steps`=3"):
        validate_config(tiny_data.dataset_dir, tiny_data.tokenizer_dir, tiny_config(gradient_accumulation_steps=3))


def test_context_longer_than_the_model_names_context_length(tiny_data: TinyData, tmp_path: Path):
    dataset_dir = tmp_path / "long"
    build_dataset(list(range(300)) * 6, dataset_dir, context=300, validation_rows=1)  # tiny has 256 positions
    with pytest.raises(ValueError, match="`context_length`=300.*256 positions"):
        validate_config(dataset_dir, tiny_data.tokenizer_dir, tiny_config())


def test_dataset_from_another_tokenizer_is_refused(tiny_data: TinyData, tmp_path: Path):
    dataset_dir = tmp_path / "foreign"
    ids = list(np.random.default_rng(0).integers(0, 5000, size=64 * 8))
    build_dataset(ids, dataset_dir, context=64, validation_rows=2)
    with pytest.raises(ValueError, match="`vocab_size`.*tokenizer"):
        validate_config(dataset_dir, tiny_data.tokenizer_dir, tiny_config())


def test_plan_resolves_the_preset_defaults(tiny_data: TinyData):
    plan = validate_config(tiny_data.dataset_dir, tiny_data.tokenizer_dir, tiny_config(batch_size=0), world_size=1)
    assert plan.batch_size == 16 and plan.gradient_accumulation_steps == 1 and plan.micro_batch_size == 16
    assert plan.context_length == tiny_data.context_length
    assert plan.model_vocab == padded_vocab_size(tiny_data.vocab)
    assert plan.total_steps == 8 and plan.schedule.warmup_steps == 3  # a short run: 40% of it



def test_a_cuda_gpu_gets_a_larger_default_batch_unless_the_user_sets_one(tiny_data: TinyData):
    """The planner alone decides this, so it is checked here without a GPU (the CUDA run itself is
    in test_cuda.py)."""
    ctx = tiny_data.context_length
    gpu = plan_training(tiny_data.dataset_dir, tiny_data.tokenizer_dir, tiny_config(batch_size=0), device="cuda")
    assert (gpu.batch_size, gpu.gradient_accumulation_steps) == (32768 // ctx, 1)  # tiny: 32K tokens a micro-batch
    split = plan_training(tiny_data.dataset_dir, tiny_data.tokenizer_dir,
                          tiny_config(batch_size=0, gradient_accumulation_steps=4), device="cuda")
    assert split.micro_batch_size == 32768 // ctx and split.batch_size == 4 * (32768 // ctx)
    chosen = plan_training(tiny_data.dataset_dir, tiny_data.tokenizer_dir, tiny_config(batch_size=8), device="cuda")
    assert chosen.batch_size == 8
    small = plan_training(tiny_data.dataset_dir, tiny_data.tokenizer_dir, tiny_config(batch_size=0), device="mps")
    assert small.batch_size == 16

# ---- a real run ------------------------------------------------------------------------------


def test_trained_model_loads_from_latest_as_safetensors(trained):
    result: TrainResult = trained.result
    latest = trained.checkpoint_dir / "latest"
    assert result.model_dir == latest
    assert (latest / "model.safetensors").is_file()
    assert not list(latest.glob("*.bin"))
    model = AutoModelForCausalLM.from_pretrained(latest)
    tokenizer = AutoTokenizer.from_pretrained(latest)
    assert len(tokenizer) == trained.data.vocab
    assert model.config.vocab_size == padded_vocab_size(len(tokenizer))  # follows the tokenizer, padded
    ids = torch.tensor([tokenizer("The old captain").input_ids])
    with torch.no_grad():
        loss = model(input_ids=ids, labels=ids).loss
    assert math.isfinite(loss.item())


def test_result_carries_the_spec_metadata(trained):
    r: TrainResult = trained.result
    assert (r.device, r.precision, r.preset, r.world_size, r.resumed_from_step) == ("cpu", "fp32", "tiny", 1, 0)
    assert r.global_step == 8
    assert r.batch_size == 8
    assert r.train_tokens == 8 * 8 * trained.data.context_length
    assert r.tokens_per_second > 0 and r.train_seconds <= r.wall_seconds
    assert math.isfinite(r.eval_loss) and r.perplexity == pytest.approx(math.exp(r.eval_loss))
    assert r.parameters == AutoModelForCausalLM.from_pretrained(r.model_dir).num_parameters()
    # It learned: the last logged training loss is below the first, and below uniform guessing.
    assert r.loss_history[-1][1] < r.loss_history[0][1]
    assert r.eval_loss < math.log(trained.data.vocab)
    assert [step for step, _ in r.eval_history] == [4, 8]
    assert [prompt for prompt, _ in r.samples] == ["The old captain", "Elizabeth"]
    assert r.loss_curve_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert TrainResult.model_validate_json(r.model_dump_json()) == r



@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="torch.compile on CPU needs a C++ compiler")
def test_compiled_training_matches_eager_and_publishes_plain_weights(trained, tmp_path: Path):
    """`compile: true` trains the same model (the same losses as eager, to float tolerance) and the
    published weights carry no `_orig_mod.` prefixes, so they load like any other model."""
    from torch._dynamo.utils import counters

    counters.clear()
    r = train_model(trained.data.dataset_dir, trained.data.tokenizer_dir, tmp_path, tiny_config(compile=True), device="cpu")
    assert counters["stats"]["unique_graphs"] > 0  # dynamo really compiled the model
    eager: TrainResult = trained.result
    assert [s for s, _ in r.loss_history] == [s for s, _ in eager.loss_history]
    assert [v for _, v in r.loss_history] == pytest.approx([v for _, v in eager.loss_history], rel=1e-4)
    assert r.eval_loss == pytest.approx(eager.eval_loss, rel=1e-4)
    model, info = AutoModelForCausalLM.from_pretrained(r.model_dir, output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


def test_progress_reports_step_loss_rate_and_eta(trained):
    kinds = [u.kind for u in trained.progress]
    assert kinds[0] == "notice" and "eval" in kinds and kinds[-1] == "notice"
    assert "holding" not in trained.progress[0].message  # nobody else trains here: no wait reported
    train_updates = [u for u in trained.progress if u.kind == "train"]
    assert [u.step for u in train_updates] == [1, 2, 4, 6, 8]
    last = train_updates[-1]
    assert last.max_steps == 8 and last.tokens_per_second > 0 and last.eta_seconds == 0
    assert "step 8/8" in last.message and "tok/s" in last.message and "ETA" in last.message


def test_checkpoints_are_trainer_checkpoints_in_a_run_folder(trained):
    run_dir = trained.result.run_dir
    assert run_dir.parent == trained.checkpoint_dir / "runs"
    # The finished run keeps its last and its best checkpoint (retention.py); checkpoint-4 was one.
    kept = {p.name for p in run_dir.glob("checkpoint-*")}
    assert kept == {"checkpoint-8", f"checkpoint-{trained.result.best_step}"}
    assert all(is_complete_checkpoint(p) for p in run_dir.glob("checkpoint-*"))
    assert json.loads((run_dir / "checkpoint-8" / "trainer_state.json").read_text())["global_step"] == 8


# ---- run folders -----------------------------------------------------------------------------


def test_run_folder_follows_data_and_training_settings_only(tiny_data: TinyData, tmp_path: Path):
    base = run_dir(tiny_data, tmp_path, tiny_config())
    same = [
        tiny_config(save_steps=100, logging_steps=7, eval_steps=4, precision="fp32", sample_prompts=[],
                    time_budget_minutes=1, max_steps=-1, early_stopping_patience=2, decay_fraction=0.3),
        tiny_config(gradient_accumulation_steps=2),  # the same batch in two micro-batches: resumable
        tiny_config(max_steps=9, warmup_steps=3),  # a longer run continues the shorter one
    ]
    for config in same:
        assert run_dir(tiny_data, tmp_path, config) == base
    different = [tiny_config(learning_rate=1e-4), tiny_config(batch_size=4), tiny_config(seed=1),
                 tiny_config(optimizer="adamw" if plan_training(tiny_data.dataset_dir, tiny_data.tokenizer_dir,
                                                                tiny_config()).optimizer == "muon" else "muon")]
    for config in different:
        assert run_dir(tiny_data, tmp_path, config) != base
    assert run_dir(tiny_data, tmp_path, tiny_config(), world_size=2) != base
    other_data = tmp_path / "other"
    shutil.copytree(tiny_data.dataset_dir, other_data)
    copy = dataclasses.replace(tiny_data, dataset_dir=other_data)
    assert run_dir(copy, tmp_path, tiny_config()) == base  # same bytes
    shutil.rmtree(other_data)
    build_dataset(list(range(64)) * 10, other_data, context=64, validation_rows=2)
    assert run_dir(copy, tmp_path, tiny_config()) != base


def test_truncated_state_is_not_a_complete_checkpoint(trained, tmp_path: Path):
    copy = tmp_path / "checkpoint-8"
    shutil.copytree(trained.result.run_dir / "checkpoint-8", copy)
    assert is_complete_checkpoint(copy)
    state = copy / "trainer_state.json"
    state.write_text(state.read_text()[:40])
    assert not is_complete_checkpoint(copy)
    state.unlink()
    assert not is_complete_checkpoint(copy)


# ---- resume ----------------------------------------------------------------------------------


def test_run_killed_after_its_second_checkpoint_resumes_there(tiny_data: TinyData, tmp_path: Path):
    checkpoint_dir = tmp_path / "checkpoints"
    config = tiny_config(max_steps=60, save_steps=2, save_total_limit=3, logging_steps=10)
    folder = run_dir(tiny_data, checkpoint_dir, config)
    kill_when_saved(tiny_data, checkpoint_dir, config, folder / "checkpoint-4")
    assert not (checkpoint_dir / "latest").exists()
    resume = find_resume_checkpoint(folder)
    assert resume is not None
    killed_at = int(resume.name.split("-")[1])
    assert 4 <= killed_at < 60

    # Materialize again, with a sparser save cadence (not part of the run's identity).
    result = train_model(
        tiny_data.dataset_dir, tiny_data.tokenizer_dir, checkpoint_dir,
        config.model_copy(update={"save_steps": 100, "sample_prompts": []}),
        device="cpu",
    )  # fmt: skip
    assert result.resumed_from_step == killed_at
    assert result.global_step == 60
    assert result.loss_history[0][0] < killed_at  # the history from before the kill was kept
    assert AutoModelForCausalLM.from_pretrained(result.model_dir).num_parameters() == result.parameters


def test_half_written_checkpoint_is_ignored(tiny_data: TinyData, tmp_path: Path):
    checkpoint_dir = tmp_path / "checkpoints"
    config = tiny_config(max_steps=6, save_steps=2, sample_prompts=[])
    folder = run_dir(tiny_data, checkpoint_dir, config)
    with pytest.raises(RuntimeError, match="died"):  # a run that stops at step 5, two checkpoints written
        train_model(tiny_data.dataset_dir, tiny_data.tokenizer_dir, checkpoint_dir, config, device="cpu",
                    callbacks=[RaiseOnceAtStep(5, RuntimeError("died"))])
    # Make it look as if the run died while writing checkpoint-4, after checkpoint-2 was complete.
    (folder / "checkpoint-4" / "trainer_state.json").unlink()
    updates = []
    second = train_model(
        tiny_data.dataset_dir, tiny_data.tokenizer_dir, checkpoint_dir, config, device="cpu", progress=updates.append
    )
    assert second.resumed_from_step == 2
    assert second.global_step == 6
    assert any("half-written checkpoint checkpoint-4" in u.message for u in updates)
    assert is_complete_checkpoint(second.run_dir / "checkpoint-6")  # finished (4 was written again, then tidied)


def test_incompatible_configuration_starts_fresh(trained):
    data = trained.data
    other = train_model(
        data.dataset_dir,
        data.tokenizer_dir,
        trained.checkpoint_dir,
        tiny_config(max_steps=2, save_steps=2, learning_rate=5e-4, sample_prompts=[]),
        device="cpu",
    )
    assert other.resumed_from_step == 0
    assert other.run_dir != trained.result.run_dir
    assert other.global_step == 2


# ---- failures --------------------------------------------------------------------------------


def test_mps_runtime_error_continues_on_cpu_from_last_checkpoint(tiny_data: TinyData, tmp_path: Path):
    # No MPS here: the fault is a real RuntimeError with the seed's MPS message, thrown from inside
    # the Trainer's loop of a CPU run at step 3; the fallback path is the one a Mac would take.
    fault = RaiseOnceAtStep(3, RuntimeError(MPS_MESSAGE))
    updates = []
    result = train_model(
        tiny_data.dataset_dir,
        tiny_data.tokenizer_dir,
        tmp_path / "checkpoints",
        tiny_config(max_steps=6, save_steps=2, sample_prompts=[]),
        device="cpu",
        progress=updates.append,
        callbacks=[fault],
    )
    assert fault.raised
    assert result.fell_back_to_cpu and result.device == "cpu"
    assert result.fallback_resumed_from_step == 2
    assert result.global_step == 6
    assert any("continuing on cpu from checkpoint step 2" in u.message for u in updates)


def test_mps_error_is_raised_when_fallback_is_off(tiny_data: TinyData, tmp_path: Path):
    with pytest.raises(RuntimeError, match="Placeholder storage"):
        train_model(
            tiny_data.dataset_dir,
            tiny_data.tokenizer_dir,
            tmp_path / "checkpoints",
            tiny_config(max_steps=4, save_steps=2, fallback_to_cpu=False, sample_prompts=[]),
            device="cpu",
            callbacks=[RaiseOnceAtStep(3, RuntimeError(MPS_MESSAGE))],
        )


def test_out_of_memory_is_reported_with_advice_and_checkpoints_kept(tiny_data: TinyData, tmp_path: Path):
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    config = tiny_config(max_steps=6, save_steps=2, sample_prompts=[])
    with pytest.raises(TrainingOutOfMemoryError) as caught:
        train_model(
            tiny_data.dataset_dir, tiny_data.tokenizer_dir, tmp_path / "checkpoints", config,
            device="cpu", callbacks=[RaiseOnceAtStep(3, oom)],
        )  # fmt: skip
    message = str(caught.value)
    assert "`gradient_accumulation_steps`: 2" in message and "micro-batches of 4" in message
    assert "step 2" in message
    assert is_complete_checkpoint(run_dir(tiny_data, tmp_path / "checkpoints", config) / "checkpoint-2")
    # Following the advice keeps the run's identity, so it resumes from the kept checkpoint.
    advised = tiny_config(max_steps=6, save_steps=2, sample_prompts=[], gradient_accumulation_steps=2)
    resumed = train_model(tiny_data.dataset_dir, tiny_data.tokenizer_dir, tmp_path / "checkpoints", advised, device="cpu")
    assert resumed.resumed_from_step == 2 and resumed.global_step == 6


# ---- publishing ------------------------------------------------------------------------------


def test_publish_swaps_latest_atomically_and_keeps_the_previous(trained, tmp_path: Path):
    model = AutoModelForCausalLM.from_pretrained(trained.checkpoint_dir / "latest")
    tokenizer = AutoTokenizer.from_pretrained(trained.checkpoint_dir / "latest")
    target = tmp_path / "ck"
    first = publish_model(model, tokenizer, target).resolve()
    time.sleep(0.01)
    latest = publish_model(model, tokenizer, target)
    second = latest.resolve()
    assert latest == target / "latest" and latest.is_symlink()
    assert first != second and first.is_dir()  # a reader still holding the old version can finish
    assert (second / "model.safetensors").is_file() and (second / "tokenizer.json").is_file()
    versions = target / ".latest.versions"
    assert not list(versions.glob(".tmp-*")) and not list(target.glob(".latest.link-*"))
    publish_model(model, tokenizer, target)
    assert len(list(versions.iterdir())) == 2 and not first.exists()  # older versions pruned


def test_publish_replaces_a_plain_latest_folder(trained, tmp_path: Path):
    target = tmp_path / "ck"
    (target / "latest").mkdir(parents=True)
    (target / "latest" / "old.txt").write_text("from an earlier layout")
    model = AutoModelForCausalLM.from_pretrained(trained.checkpoint_dir / "latest")
    tokenizer = AutoTokenizer.from_pretrained(trained.checkpoint_dir / "latest")
    latest = publish_model(model, tokenizer, target)
    assert (latest / "config.json").is_file() and not (latest / "old.txt").exists()


# ---- data-parallel ---------------------------------------------------------------------------


def test_torchrun_with_two_cpu_processes_reports_world_size_2(tiny_data: TinyData, tmp_path: Path):
    checkpoint_dir = tmp_path / "checkpoints"
    result_path = tmp_path / "result.json"
    config = tiny_config(max_steps=4, save_steps=2, batch_size=4, sample_prompts=["The old captain"],
                         report_to="tensorboard")
    command = torchrun_command(
        2, tiny_data.dataset_dir, tiny_data.tokenizer_dir, checkpoint_dir, config, "cpu", result_path
    )
    assert command[:4] == [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    done = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = TrainResult.model_validate_json(result_path.read_text())
    assert result.world_size == 2
    assert result.batch_size == 4  # per process
    assert result.train_tokens == 4 * 4 * 2 * tiny_data.context_length
    assert result.global_step == 4
    assert "step 4/4" in done.stdout  # rank 0's progress lines
    assert len(list((result.run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 1  # rank 0's only
    assert AutoModelForCausalLM.from_pretrained(checkpoint_dir / "latest").num_parameters() == result.parameters


def test_torchrun_multi_node_options_replace_standalone(tiny_data: TinyData, tmp_path: Path):
    command = torchrun_command(
        4, tiny_data.dataset_dir, tiny_data.tokenizer_dir, tmp_path, tiny_config(), "cuda", tmp_path / "r.json",
        extra_torchrun_args=["--nnodes", "2", "--rdzv_backend", "c10d", "--rdzv_endpoint", "host0:29400"],
    )  # fmt: skip
    assert "--standalone" not in command
    assert command[command.index("--nproc_per_node") + 1] == "4"
    assert TrainConfig.model_validate_json(command[command.index("--config-json") + 1]) == tiny_config()


# ---- the learning-rate schedule -------------------------------------------------------------


class RecordLearningRate(TrainerCallback):
    """The learning rate each optimizer step actually trains with."""

    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_step_begin(self, args, state, control, optimizer=None, **kwargs):
        self.rates.append(optimizer.param_groups[0]["lr"])


def test_the_learning_rate_warms_up_to_its_peak_and_decays_to_its_floor_by_the_last_step(
    tiny_data: TinyData, tmp_path: Path
):
    record = RecordLearningRate()
    config = tiny_config(max_steps=40, save_steps=40, learning_rate=1e-3, sample_prompts=[])
    result = train_model(tiny_data.dataset_dir, tiny_data.tokenizer_dir, tmp_path, config, device="cpu",
                         callbacks=[record])
    assert result.warmup_steps == 16  # a short run: 40% of it (5% would leave Adam unsettled)
    assert len(record.rates) == 40
    assert record.rates[:2] == pytest.approx([1e-3 / 16, 2e-3 / 16])  # no step wasted at zero
    assert record.rates[15] == pytest.approx(1e-3)  # the peak on the last warm-up step
    assert max(record.rates) == pytest.approx(1e-3)
    assert record.rates[-1] == pytest.approx(1e-4)  # a tenth of the peak, on the last step
    assert all(a >= b for a, b in zip(record.rates[15:], record.rates[16:]))  # decays all the way


def test_an_explicit_warmup_overrides_the_presets_share(tiny_data: TinyData):
    plan = validate_config(tiny_data.dataset_dir, tiny_data.tokenizer_dir, tiny_config(max_steps=100, warmup_steps=30))
    assert plan.schedule.warmup_steps == 30
    long_run = validate_config(tiny_data.dataset_dir, tiny_data.tokenizer_dir, tiny_config(max_steps=100_000))
    assert long_run.schedule.warmup_steps == 100  # 5% capped at the tiny preset's 100 steps
    medium = validate_config(tiny_data.dataset_dir, tiny_data.tokenizer_dir, tiny_config(max_steps=600))
    assert medium.schedule.warmup_steps == 50  # 5% would be 30: Adam's settling time sets the floor


def test_a_longer_run_continues_the_shorter_one_and_says_so(tiny_data: TinyData, tmp_path: Path):
    short = train_model(tiny_data.dataset_dir, tiny_data.tokenizer_dir, tmp_path,
                        tiny_config(max_steps=6, save_steps=3, sample_prompts=[]), device="cpu")
    updates: list = []
    longer = train_model(tiny_data.dataset_dir, tiny_data.tokenizer_dir, tmp_path,
                         tiny_config(max_steps=10, save_steps=5, sample_prompts=[]), device="cpu",
                         progress=updates.append)
    assert longer.run_dir == short.run_dir and longer.resumed_from_step == 6 and longer.global_step == 10
    assert "continuing a run planned for 6 steps from step 6 to 10 steps" in longer.schedule_note
    assert any(longer.schedule_note == u.message for u in updates)  # in the log, not only the metadata
    # Asking for fewer steps than were trained starts a run of that length in a folder of its own.
    shorter = train_model(tiny_data.dataset_dir, tiny_data.tokenizer_dir, tmp_path,
                          tiny_config(max_steps=4, save_steps=4, sample_prompts=[]), device="cpu")
    assert shorter.resumed_from_step == 0 and shorter.global_step == 4
    assert shorter.run_dir.name == f"{short.run_dir.name}-4steps"


# ---- TensorBoard ------------------------------------------------------------------------------


def test_report_to_tensorboard_writes_the_loss_scalars_into_the_run_folder(tiny_data: TinyData, tmp_path: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    updates: list = []
    config = tiny_config(max_steps=8, save_steps=4, logging_steps=2, report_to="tensorboard", sample_prompts=[])
    result = train_model(tiny_data.dataset_dir, tiny_data.tokenizer_dir, tmp_path, config, device="cpu",
                         progress=updates.append)
    logdir = result.run_dir / "tensorboard"
    assert any(f"tensorboard --logdir {logdir}" in u.message for u in updates)  # the command, in the log
    (events,) = logdir.glob("events.out.tfevents.*")
    scalars = EventAccumulator(str(events)).Reload()
    losses = scalars.Scalars("train/loss")
    assert [s.step for s in losses] == [1, 2, 4, 6, 8]
    assert [round(s.value, 4) for s in losses] == [round(v, 4) for _, v in result.loss_history]
    assert [s.step for s in scalars.Scalars("eval/loss")] == [4, 8]
