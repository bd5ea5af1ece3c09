"""The CUDA path in one run: peak matmul, the default batch, and gpt2-small's tokens/s and MFU.

    python benchmarks/gpu.py --json cuda.json                  # on a machine with a CUDA GPU
    python benchmarks/gpu.py --no-compile --sweep 16,128       # shorter
    python benchmarks/gpu.py --large-1024 64                   # only context 1024 compiled, 64 x 1024

1. The peak: a large bf16 matrix product (8192^3), timed on this GPU. MFU is measured against it,
   not against a datasheet, as nanoGPT's estimate_mfu does against its A100 figure.
2. The default batch: the bare loop (benchmarks/train_throughput.py) on gpt2-small in bf16 at
   context 128 for several micro-batches, with tokens/s, MFU and peak memory, to show where the
   GPU fills and that the CUDA default (ModelPreset.cuda_micro_batch) sits there.
3. gpt2-small bf16 at context 128 (the CUDA default batch) and 1024 (the preset's batch), the bare
   loop beside `trained_model`'s Trainer path, eager and under torch.compile.

MFU = tokens/s x training FLOPs per token (6N + 12 L d T, nanoGPT/PaLM) / the measured peak, from
the median step. Figures go in benchmarks/TRAINING.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch
from cuda_mfu import peak_bf16_tflops
from train_throughput import Measured, bare_loop, build_inputs, trainer_run

from llm_assets.training.config import TrainConfig
from llm_assets.training.presets import get_preset

PRESET = "gpt2-small"
VOCAB = 50257


def mfu(tokens_per_second: float, context: int, peak_tflops: float) -> float:
    return tokens_per_second * get_preset(PRESET).flops_per_token(context, VOCAB) / (peak_tflops * 1e12)


def config(steps: int, context: int, batch: int = 0, accumulation: int = 0, compile: bool = False) -> TrainConfig:
    return TrainConfig(preset=PRESET, max_steps=steps, save_steps=10**9, logging_steps=10, batch_size=batch,
                       gradient_accumulation_steps=accumulation, precision="bf16", compile=compile,
                       sample_prompts=[], optimizer="adamw")  # the bare loop runs fused AdamW


class Report:
    """Prints each figure as it comes and keeps the JSON current, so a run cut short still reports."""

    def __init__(self, path: Path | None) -> None:
        self.path, self.rows = path, []

    def add(self, row: dict, line: str) -> None:
        self.rows.append(row)
        print(line, flush=True)
        if self.path:
            self.path.write_text(json.dumps(self.rows, indent=2))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sweep", default="16,32,64,128,256,512", help="micro-batches at context 128")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--no-compile", action="store_true")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--large-1024", type=int, default=0, metavar="N",
                        help="only context 1024 compiled, bare loop and trained_model, at batch N in one micro-batch")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA GPU here", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = True
    report = Report(args.json)
    peak = peak_bf16_tflops()
    name = torch.cuda.get_device_name()
    report.add({"gpu": name, "torch": torch.__version__, "peak_bf16_tflops": peak},
               f"{name}, torch {torch.__version__}: bf16 8192^3 matmul {peak:.0f} TFLOP/s (the MFU peak)")

    with tempfile.TemporaryDirectory(prefix="cuda-bench-") as tmp:
        root = Path(tmp)
        data = {ctx: build_inputs(root / f"ctx{ctx}", VOCAB, ctx, rows=4096 if ctx == 128 else 2048)
                for ctx in ((1024,) if args.large_1024 else (128, 1024))}

        default_micro = get_preset(PRESET).cuda_micro_batch(128)
        for micro in [] if args.large_1024 else [int(x) for x in args.sweep.split(",") if x]:
            torch.cuda.reset_peak_memory_stats()
            tokenizer_dir, dataset_dir = data[128]
            try:
                m = bare_loop(dataset_dir, tokenizer_dir, config(15, 128, micro, 1), 15, "cuda")
            except torch.OutOfMemoryError:
                report.add({"sweep_micro_batch": micro, "oom": True}, f"micro-batch {micro:>4} x 128: out of memory")
                torch.cuda.empty_cache()
                continue
            gib = torch.cuda.max_memory_allocated() / 2**30
            report.add(
                {"sweep_micro_batch": micro, "tokens_per_second": m.median_step, "mfu": mfu(m.median_step, 128, peak),
                 "peak_gib": gib},
                f"micro-batch {micro:>4} x 128 (bare loop): {m.median_step:>10,.0f} tok/s, "
                f"MFU {mfu(m.median_step, 128, peak):.1%}, peak memory {gib:.1f} GiB"
                + ("   <- the CUDA default micro-batch" if micro == default_micro else ""),
            )
            torch.cuda.empty_cache()

        runs = [(128, False), (1024, False)] + ([] if args.no_compile else [(1024, True), (128, True)])
        if args.large_1024:
            runs = [(1024, True)]
        for ctx, compiled in runs:
            tokenizer_dir, dataset_dir = data[ctx]
            if args.large_1024:  # what an 80 GB card holds: one micro-batch, compiled
                batch, accumulation = args.large_1024, 1
                cfg = config(args.steps, ctx, batch, accumulation, compile=True)
            else:  # batch 0: the CUDA default for this context
                cfg = config(args.steps, ctx, compile=compiled)
                accumulation = get_preset(PRESET).gradient_accumulation_steps
                batch = get_preset(PRESET).cuda_micro_batch(ctx) * accumulation
            torch.cuda.reset_peak_memory_stats()
            bare: Measured = bare_loop(dataset_dir, tokenizer_dir, cfg, args.steps, "cuda")
            torch.cuda.empty_cache()
            trainer: Measured = trainer_run(root, dataset_dir, tokenizer_dir, cfg, "cuda")
            gib = torch.cuda.max_memory_allocated() / 2**30
            torch.cuda.empty_cache()
            row = {"context": ctx, "compile": compiled, "batch_size": batch, "gradient_accumulation_steps": accumulation,
                   "bare_tokens_per_second": bare.median_step, "trainer_tokens_per_second": trainer.median_step,
                   "trainer_mean_tokens_per_second": trainer.mean,
                   "bare_mfu": mfu(bare.median_step, ctx, peak), "trainer_mfu": mfu(trainer.median_step, ctx, peak),
                   "ratio": trainer.median_step / bare.median_step, "peak_gib": gib}
            report.add(row, (
                f"gpt2-small bf16 ctx {ctx:>4} batch {batch}x{ctx} ({accumulation} micro-batches)"
                f"{' compiled' if compiled else ' eager'}: bare {bare.median_step:,.0f} tok/s (MFU {row['bare_mfu']:.1%}) | "
                f"trained_model {trainer.median_step:,.0f} tok/s (MFU {row['trainer_mfu']:.1%}, "
                f"whole run {trainer.mean:,.0f}) | ratio {row['ratio']:.3f} | peak {gib:.1f} GiB"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
