"""The best model a user's time allows: a time budget, the best checkpoint, early stopping, bits per byte."""

from __future__ import annotations

import json
import math
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from llm_assets_tests.training.conftest import TinyData, build_dataset, tiny_config
from llm_assets_tests.training.test_train import kill_when_saved, run_dir, subprocess_env
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

from llm_assets.training.schedule import FLOOR_RATIO, BudgetSchedule
from llm_assets.training.train import train_model

PEAK = 3e-3  # the tiny preset's


def budget_config(minutes: float, **overrides: object):
    # No early stop: on this tiny text the validation loss stalls within a few hundred steps, and
    # these tests are about the budget's own end.
    keys = {"max_steps": -1, "time_budget_minutes": minutes, "save_steps": 40, "logging_steps": 5,
            "early_stopping_patience": 0}
    return tiny_config(**{**keys, **overrides})


def last_learning_rate(run_dir: Path) -> tuple[int, float]:
    checkpoints = sorted(run_dir.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    history = json.loads((checkpoints[-1] / "trainer_state.json").read_text())["log_history"]
    logged = [(entry["step"], entry["learning_rate"]) for entry in history if "learning_rate" in entry]
    return logged[-1]


# ---- the schedule ------------------------------------------------------------------------------


def test_budget_schedule_warms_up_holds_then_decays_to_the_floor_on_the_decided_step():
    schedule = BudgetSchedule(warmup_steps=4)
    assert [schedule.factor(n) for n in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert schedule.factor(500) == 1.0  # no length yet: the peak is held
    schedule.decay(steps_done=100, last_step=120)
    factors = [schedule.factor(n) for n in range(100, 120)]  # steps 101..120
    assert factors[-1] == pytest.approx(FLOOR_RATIO) and all(a > b for a, b in zip(factors, factors[1:]))
    before = schedule.factor(109)  # step 110
    schedule.decay(steps_done=110, last_step=140)  # a correction: the line bends, it does not jump
    assert schedule.factor(110) < before and before - schedule.factor(110) < 0.05
    assert schedule.factor(139) == pytest.approx(FLOOR_RATIO)
    copy = BudgetSchedule(warmup_steps=0)
    copy.restore(schedule.state())
    assert [copy.factor(n) for n in range(130)] == [schedule.factor(n) for n in range(130)]


# ---- a budgeted run ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_dataset(tiny_data: TinyData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Five steps' worth of training blocks: any budget repeats them."""
    from datasets import load_from_disk

    rows = load_from_disk(str(tiny_data.dataset_dir))["train"]["input_ids"][:48]
    out = tmp_path_factory.mktemp("small") / "processed_dataset"
    build_dataset([i for row in rows for i in row], out, context=tiny_data.context_length, validation_rows=8)
    return out


def test_a_small_budget_ends_on_time_with_the_rate_at_its_floor(
    tiny_data: TinyData, small_dataset: Path, tmp_path: Path
):
    budget = 12.0
    updates: list = []
    result = train_model(small_dataset, tiny_data.tokenizer_dir, tmp_path / "checkpoints",
                         budget_config(budget / 60), device="cpu", progress=updates.append)
    # The budget holds everything from the call's start: plan, model, evaluations, checkpoints, publish.
    assert budget * 0.85 <= result.wall_seconds <= budget * 1.1, result.wall_seconds
    assert result.time_used_seconds == pytest.approx(result.wall_seconds)
    assert result.time_budget_minutes == pytest.approx(0.2)
    assert result.epochs > 2 and result.global_step > 10  # repeated the data as needed (5 steps an epoch)
    step, rate = last_learning_rate(result.run_dir)
    assert step == result.global_step and rate == pytest.approx(PEAK * FLOOR_RATIO, rel=1e-6)
    messages = [u.message for u in updates]
    assert messages[0].startswith("training tiny") and "as many steps as fit in 0m12s" in messages[0]
    assert any("ETA" in m for m in messages)
    assert (result.model_dir / "model.safetensors").is_file()


def test_a_budgeted_run_killed_midway_counts_the_time_it_had_used(tiny_data: TinyData, tmp_path: Path):
    budget = 20.0
    config = budget_config(budget / 60, save_steps=10, sample_prompts=[])
    checkpoint_dir = tmp_path / "checkpoints"
    folder = run_dir(tiny_data, checkpoint_dir, config)
    kill_when_saved(tiny_data, checkpoint_dir, config, folder / "checkpoint-30")
    target = folder / "checkpoint-30" / "trainer_state.json"

    saved = json.loads(target.read_text())["stateful_callbacks"]["TimeBudget"]["attributes"]
    assert 0 < saved["spent_seconds"] < budget and not saved["finished"]
    result = train_model(tiny_data.dataset_dir, tiny_data.tokenizer_dir, checkpoint_dir, config, device="cpu")
    assert result.resumed_from_step >= 30
    # This call only had what was left; the whole run, both calls, ends on its budget.
    assert result.wall_seconds <= budget - saved["spent_seconds"] + 0.1 * budget
    assert budget * 0.85 <= result.time_used_seconds <= budget * 1.1, result.time_used_seconds
    step, rate = last_learning_rate(result.run_dir)
    assert step == result.global_step and rate == pytest.approx(PEAK * FLOOR_RATIO, rel=1e-6)
    again = train_model(tiny_data.dataset_dir, tiny_data.tokenizer_dir, checkpoint_dir, config, device="cpu")
    assert again.global_step == result.global_step  # finished: materializing again publishes, no training


# ---- the best checkpoint and early stopping ----------------------------------------------------


class SpoilWeights(TrainerCallback):
    """After step ``step`` the weights are replaced by noise, as a run that diverges: every later
    evaluation is worse than the ones before."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            with torch.no_grad():
                for param in model.parameters():
                    param.copy_(torch.randn_like(param) * 2.0)


def test_the_best_checkpoint_is_published_and_a_stalled_run_stops_early(tiny_data: TinyData, tmp_path: Path):
    config = tiny_config(max_steps=60, save_steps=4, logging_steps=4, early_stopping_patience=2, save_total_limit=2,
                         sample_prompts=[])
    checkpoint_dir = tmp_path / "checkpoints"
    updates: list = []
    result = train_model(tiny_data.dataset_dir, tiny_data.tokenizer_dir, checkpoint_dir, config, device="cpu",
                         progress=updates.append, callbacks=[SpoilWeights(10)])
    assert result.stopped_early and result.global_step == 16  # evaluations at 12 and 16 were no better than 8
    assert result.best_step == 8
    evaluations = dict(result.eval_history)
    assert result.eval_loss == pytest.approx(evaluations[8]) and evaluations[16] > evaluations[8]
    published = load_file(result.model_dir / "model.safetensors")
    best = load_file(result.run_dir / "checkpoint-8" / "model.safetensors")
    assert all(torch.equal(published[name], best[name]) for name in best)
    assert any("stopping early at step 16" in u.message and "best" in u.message for u in updates)
    assert (result.run_dir / "checkpoint-8").is_dir()  # kept by the rotation (limit 2) as the best

    again = train_model(tiny_data.dataset_dir, tiny_data.tokenizer_dir, checkpoint_dir, config, device="cpu")
    assert again.global_step == 16 and again.stopped_early and again.best_step == 8  # not trained on
    assert again.eval_loss == pytest.approx(result.eval_loss, rel=1e-5)


# ---- bits per byte -----------------------------------------------------------------------------


def test_eval_bpb_is_the_loss_over_the_validation_texts_bytes_counted_by_hand(trained):
    """The tiny data is plain ASCII, so each validation block's targets decode to exactly their text."""
    from datasets import load_from_disk

    tokenizer = AutoTokenizer.from_pretrained(trained.data.tokenizer_dir)
    rows = load_from_disk(str(trained.data.dataset_dir))["validation"]["input_ids"]
    text_bytes = sum(len(tokenizer.decode(row[1:]).encode("utf-8")) for row in rows)
    targets = sum(len(row) - 1 for row in rows)
    result = trained.result
    assert text_bytes > targets  # a token spells more than a byte on average
    assert result.eval_bpb == pytest.approx(result.eval_loss * targets / (math.log(2) * text_bytes), rel=1e-9)
    assert any(u.kind == "eval" and u.bpb is not None and "bits/byte" in u.message for u in trained.progress)


# ---- under torchrun ----------------------------------------------------------------------------


def test_under_torchrun_rank_0_decides_and_every_rank_stops_at_the_same_step(tiny_data: TinyData, tmp_path: Path):
    from llm_assets.training.launch import torchrun_command
    from llm_assets.training.train import TrainResult

    result_path = tmp_path / "result.json"
    config = budget_config(0.25, batch_size=4, optimizer="muon", sample_prompts=[])
    command = torchrun_command(2, tiny_data.dataset_dir, tiny_data.tokenizer_dir, tmp_path / "checkpoints", config,
                               "cpu", result_path)
    done = subprocess.run(command, env=subprocess_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = TrainResult.model_validate_json(result_path.read_text())
    finished = sorted(line for line in done.stdout.splitlines() if line.startswith("rank "))
    assert finished == [f"rank {r} of 2: resumed from step 0, finished at step {result.global_step}" for r in (0, 1)]
    assert f"all 2 ranks hold the same weights at step {result.global_step}" in done.stdout  # Muon's updates agree
    step, rate = last_learning_rate(result.run_dir)
    assert step == result.global_step and rate == pytest.approx(PEAK * FLOOR_RATIO, rel=1e-6)
    assert result.optimizer == "muon" and result.world_size == 2


# ---- a disk that does not fill -----------------------------------------------------------------


def test_three_trainings_on_three_datasets_leave_one_run_folder_each_with_its_last_and_best_checkpoints(
    tiny_data: TinyData, tmp_path: Path
):
    from datasets import load_from_disk

    rows = load_from_disk(str(tiny_data.dataset_dir))["train"]["input_ids"]
    checkpoint_dir = tmp_path / "checkpoints"
    config = tiny_config(max_steps=8, save_steps=2, save_total_limit=3, keep_run_folders=2, sample_prompts=[])
    results, messages = [], []
    for n in range(3):  # three datasets: three run folders
        dataset = tmp_path / f"dataset-{n}"
        build_dataset([i for row in rows[: 40 + 8 * n] for i in row], dataset, context=tiny_data.context_length,
                      validation_rows=8)
        results.append(train_model(dataset, tiny_data.tokenizer_dir, checkpoint_dir, config, device="cpu",
                                   progress=lambda u: messages.append(u.message)))
    runs = sorted(p.name for p in (checkpoint_dir / "runs").iterdir())
    assert runs == sorted(r.run_dir.name for r in results[1:])  # the oldest folder went (keep_run_folders: 2)
    for result in results[1:]:
        kept = {p.name for p in result.run_dir.glob("checkpoint-*")}
        assert kept == {"checkpoint-8", f"checkpoint-{result.best_step}"}  # the last and the best, nothing else
    assert not results[0].run_dir.exists()
    assert any(f"removed {results[0].run_dir}" in m and "MB freed" in m for m in messages)
    last = results[-1]
    assert last.freed_bytes > 0 and last.checkpoints_bytes > 0
    assert abs(last.checkpoints_bytes - sum(p.stat().st_size for p in checkpoint_dir.rglob("*")
                                            if p.is_file() and not p.is_symlink())) < 1_000_000


def test_a_publish_killed_midway_leaves_nothing_after_the_next_run(trained, tmp_path: Path):
    from llm_assets.atomic import versions_dir
    from llm_assets.training.publish import publish_model

    checkpoint_dir = tmp_path / "checkpoints"
    script = (
        "import os, sys\n"
        "from transformers import AutoModelForCausalLM, AutoTokenizer\n"
        "from llm_assets.training import publish\n"
        f"model = AutoModelForCausalLM.from_pretrained({str(trained.result.model_dir)!r})\n"
        f"tokenizer = AutoTokenizer.from_pretrained({str(trained.result.model_dir)!r})\n"
        "model.save_pretrained = lambda folder, **k: os.kill(os.getpid(), 9)  # dies while writing\n"
        f"publish.publish_model(model, tokenizer, {str(checkpoint_dir)!r})\n"
    )
    done = subprocess.run([sys.executable, "-c", script], env=subprocess_env(), capture_output=True, timeout=120)
    assert done.returncode == -signal.SIGKILL
    left = list(versions_dir(checkpoint_dir / "latest").iterdir())
    assert left and not (checkpoint_dir / "latest").exists()  # a staging folder, and nothing published

    model = AutoModelForCausalLM.from_pretrained(trained.result.model_dir)
    publish_model(model, AutoTokenizer.from_pretrained(trained.result.model_dir), checkpoint_dir)
    assert not any(p.exists() for p in left)
    assert (checkpoint_dir / "latest" / "model.safetensors").is_file()

