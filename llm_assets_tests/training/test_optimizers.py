"""Muon for the hidden matrices, AdamW for the rest: the update, the split, and an exact resume after kill -9."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from llm_assets_tests.training.conftest import TinyData, tiny_config
from llm_assets_tests.training.test_train import kill_when_saved, run_dir
from safetensors.torch import load_file

from llm_assets.training.config import resolve_optimizer
from llm_assets.training.optimizers import (
    Muon,
    muon_with_adamw,
    newton_schulz_dtype,
    orthogonalize,
)
from llm_assets.training.train import train_model

COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def test_orthogonalize_pushes_every_singular_value_towards_one():
    torch.manual_seed(0)
    matrix = torch.randn(96, 320) * torch.logspace(-3, 1, 320)  # singular values over four decades
    for shape in ((96, 320), (320, 96)):
        result = orthogonalize(matrix if shape == (96, 320) else matrix.T, COEFFICIENTS, 5, 1e-7, torch.float32)
        assert result.shape == shape
        values = torch.linalg.svdvals(result)
        assert values.min() > 0.5 and values.max() < 1.5, values  # Muon's quintic: ~U V^T, values in ~(0.5, 1.5)
        u, _, vt = torch.linalg.svd(matrix if shape == (96, 320) else matrix.T, full_matrices=False)
        alignment = torch.trace((u @ vt).T @ result) / min(shape)
        assert alignment > 0.85  # the same singular vectors as the input


def test_fp32_iterations_take_the_same_step_as_pytorchs_own_muon():
    torch.manual_seed(1)
    ours, theirs = torch.nn.Parameter(torch.randn(48, 160)), torch.nn.Parameter(torch.zeros(48, 160))
    theirs.data.copy_(ours.data)
    mine = Muon([ours], lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw", ns_dtype=torch.float32)
    reference = torch.optim.Muon([theirs], lr=0.02, weight_decay=0.1, adjust_lr_fn="match_rms_adamw")
    start = ours.detach().clone()
    for _ in range(3):
        grad = torch.randn(48, 160)
        ours.grad, theirs.grad = grad.clone(), grad.clone()
        mine.step()
        reference.step()
    moved = (theirs.detach() - start).abs().mean()
    assert moved > 1e-3
    # PyTorch iterates in bf16: the two agree to bf16's precision, a small share of the step.
    assert (ours.detach() - theirs.detach()).abs().mean() < 0.02 * moved
    assert set(mine.state[ours]) == set(reference.state[theirs]) == {"momentum_buffer"}


def test_hidden_matrices_go_to_muon_and_everything_else_to_adamw(tiny_data: TinyData):
    from transformers import GPT2Config, GPT2LMHeadModel

    model = GPT2LMHeadModel(GPT2Config(vocab_size=384, n_positions=64, n_embd=32, n_layer=2, n_head=2))
    optimizer = muon_with_adamw(model, lr=1e-3, weight_decay=0.1, betas=(0.9, 0.95), device="cpu", fused_adamw=False)
    names = {id(p): n for n, p in model.named_parameters()}
    muon = {names[id(p)] for g in optimizer.muon.param_groups for p in g["params"]}
    adamw = {names[id(p)]: g["weight_decay"] for g in optimizer.adamw.param_groups for p in g["params"]}
    assert muon == {f"transformer.h.{i}.{m}.weight" for i in range(2)
                    for m in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")}
    assert adamw["transformer.wte.weight"] == 0.1 and adamw["transformer.wpe.weight"] == 0.1  # embeddings decay
    assert adamw["transformer.h.0.ln_1.weight"] == 0.0 and adamw["transformer.h.1.mlp.c_fc.bias"] == 0.0
    assert len(muon) + len(adamw) == len(names)  # every parameter once (the head is tied to wte)
    assert optimizer.param_groups == [*optimizer.muon.param_groups, *optimizer.adamw.param_groups]
    with pytest.raises(ValueError, match="optimizer: adamw"):
        optimizer.load_state_dict(torch.optim.AdamW(model.parameters()).state_dict())


def test_auto_picks_per_device_and_the_iterations_use_fp32_off_cuda():
    assert resolve_optimizer("adamw", "cpu") == "adamw"
    assert resolve_optimizer("auto", "cpu") in ("adamw", "muon")
    assert newton_schulz_dtype("cpu") == torch.float32 and newton_schulz_dtype("cuda") == torch.bfloat16


def test_a_muon_run_killed_after_a_checkpoint_resumes_to_the_same_model(tiny_data: TinyData, tmp_path: Path):
    """kill -9 mid-run, materialize again: the optimizer state (Muon's momentum, AdamW's moments)
    comes back from the checkpoint, so the resumed run ends with the uninterrupted run's weights."""
    config = tiny_config(max_steps=40, save_steps=4, logging_steps=10, optimizer="muon", sample_prompts=[],
                         early_stopping_patience=0)
    whole = train_model(tiny_data.dataset_dir, tiny_data.tokenizer_dir, tmp_path / "whole", config, device="cpu")

    checkpoint_dir = tmp_path / "killed"
    folder = run_dir(tiny_data, checkpoint_dir, config)
    kill_when_saved(tiny_data, checkpoint_dir, config, folder / "checkpoint-8")
    saved = torch.load(folder / "checkpoint-8" / "optimizer.pt", weights_only=True)
    assert set(saved) == {"muon", "adamw"} and saved["muon"]["state"]  # momentum buffers were saved

    resumed = train_model(tiny_data.dataset_dir, tiny_data.tokenizer_dir, checkpoint_dir, config, device="cpu")
    assert 8 <= resumed.resumed_from_step < 40 and resumed.global_step == 40
    assert resumed.optimizer == whole.optimizer == "muon"
    ours, theirs = (load_file(r.model_dir / "model.safetensors") for r in (resumed, whole))
    for name, tensor in theirs.items():
        assert torch.allclose(ours[name], tensor, atol=1e-5), name
