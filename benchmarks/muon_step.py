"""What one optimizer step costs on this machine: AdamW, PyTorch's Muon (bf16 iterations) and ours (fp32).

    python benchmarks/muon_step.py --presets tiny,mini,gpt2-small --repeats 5

Builds the preset's GPT-2 (vocabulary 8192), gives every parameter a random gradient, and times
``optimizer.step()`` for: the Trainer's fused AdamW on all parameters; ``muon_with_adamw`` with
PyTorch's own Muon step (Newton-Schulz in bf16); and with ours (the same update, iterations in
fp32, what ``optimizer: muon`` uses off CUDA). Median of ``--repeats`` steps after one warm-up step,
in one process, at the machine's default threads; ratios against AdamW in the same run. Figures:
benchmarks/QUALITY.md ("Optimizer").
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from transformers import GPT2Config, GPT2LMHeadModel

from llm_assets.training.devices import fused_adamw_supported
from llm_assets.training.optimizers import muon_with_adamw
from llm_assets.training.presets import get_preset, padded_vocab_size


def model_for(preset_name: str) -> GPT2LMHeadModel:
    preset = get_preset(preset_name)
    config = GPT2Config(vocab_size=padded_vocab_size(8192), n_positions=preset.n_positions, n_embd=preset.n_embd,
                        n_layer=preset.n_layer, n_head=preset.n_head)
    model = GPT2LMHeadModel(config)
    for param in model.parameters():
        param.grad = torch.randn_like(param) * 1e-3
    return model


def median_step(optimizer: torch.optim.Optimizer, repeats: int) -> float:
    optimizer.step()  # state allocated, caches warm
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        optimizer.step()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="tiny,mini,gpt2-small")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    fused = fused_adamw_supported("cpu")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| preset | AdamW step | Muon, PyTorch's bf16 iterations | Muon, fp32 iterations (ours) |")
    print("| --- | ---: | ---: | ---: |")
    for name in args.presets.split(","):
        model = model_for(name)
        preset = get_preset(name)
        adamw = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused or None)
        base = median_step(adamw, args.repeats)
        cells = []
        for device_like in ("cuda", "cpu"):  # "cuda" picks the bf16 iterations: PyTorch's own step
            muon = muon_with_adamw(model, lr=1e-3, weight_decay=0.1, betas=(preset.adam_beta1, preset.adam_beta2),
                                   device=device_like, fused_adamw=fused)
            seconds = median_step(muon, args.repeats)
            cells.append(f"{seconds * 1e3:,.1f} ms ({seconds / base:.1f}x)")
        print(f"| {name} | {base * 1e3:,.1f} ms | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
