"""The CUDA path, run where a CUDA GPU is present (skipped elsewhere): bf16 training, a resumed
run, fp16 with its loss scaler, and generation. Everything else about training is device-blind and
tested on the CPU."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from llm_assets.training.devices import choose_precision, resolve_device
from llm_assets.training.generate import generate_text, load_model
from llm_assets.training.train import train_model
from llm_assets_tests.training.conftest import TinyData, tiny_config

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU here")


def test_auto_trains_on_the_gpu_in_bf16_and_resumes(tiny_data: TinyData, tmp_path: Path):
    device = resolve_device("auto")
    assert device == "cuda"
    assert choose_precision(device, "auto") == ("bf16" if torch.cuda.is_bf16_supported() else "fp32")
    first = train_model(tiny_data.dataset_dir, tiny_data.tokenizer_dir, tmp_path, tiny_config(), device=device)
    assert (first.device, first.global_step) == ("cuda", 8)
    assert first.precision == choose_precision(device, "auto")
    assert math.isfinite(first.eval_loss) and first.eval_loss < math.log(tiny_data.vocab)
    longer = train_model(
        tiny_data.dataset_dir, tiny_data.tokenizer_dir, tmp_path, tiny_config(max_steps=12), device=device
    )
    assert (longer.resumed_from_step, longer.global_step) == (8, 12)
    assert longer.eval_loss < first.eval_loss + 0.05  # continued, not restarted from scratch


def test_fp16_trains_with_its_loss_scaler(tiny_data: TinyData, tmp_path: Path):
    result = train_model(
        tiny_data.dataset_dir, tiny_data.tokenizer_dir, tmp_path, tiny_config(precision="fp16"), device="cuda"
    )
    assert result.precision == "fp16"
    assert math.isfinite(result.train_loss) and math.isfinite(result.eval_loss)


def test_generation_on_the_gpu_repeats_with_a_seed_and_leaves_the_rng_alone(trained):
    model, tokenizer = load_model(trained.checkpoint_dir / "latest", device="cuda")
    assert model.device.type == "cuda"
    torch.cuda.manual_seed(123)
    before = torch.cuda.get_rng_state()
    first = generate_text(model, tokenizer, "The old captain", max_new_tokens=12, seed=7)
    assert torch.equal(torch.cuda.get_rng_state(), before)
    assert generate_text(model, tokenizer, "The old captain", max_new_tokens=12, seed=7) == first
    assert first.strip()
