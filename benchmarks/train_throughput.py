"""Training tokens/s of `trained_model` (the Trainer path) beside a bare PyTorch loop.

Both run in this process on the same model, batch, precision and data: the bare loop is
forward, backward, gradient clipping and fused AdamW, nothing else (no Trainer, no accelerate,
no callbacks). The ratio is the Trainer's overhead; the goal is >= 0.95, the floor 0.85.

    python benchmarks/train_throughput.py                      # tiny and mini presets, CPU
    python benchmarks/train_throughput.py --presets mini --steps 30 --repeats 3 --vocab 8192
    python benchmarks/train_throughput.py --compile             # both sides under torch.compile

Figures go in benchmarks/TRAINING.md. The two are interleaved (bare, trainer, trainer, bare, ...)
so that a neighbour's load hits both alike; each line shows every repeat and the median ratio.
Data: random token ids (throughput does not depend on the text) and a word-level tokenizer of
``--vocab`` entries, written to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from llm_assets.training.config import TrainConfig
from llm_assets.training.devices import choose_precision, fused_adamw_supported
from llm_assets.training.hf_trainer import build_model
from llm_assets.training.host_memory import steady_host_memory
from llm_assets.training.plan import plan_training
from llm_assets.training.train import train_model


def build_inputs(root: Path, vocab: int, context: int, rows: int) -> tuple[Path, Path]:
    """A tokenizer with exactly ``vocab`` tokens and a DatasetDict of random uint16 blocks."""
    from datasets import Dataset, DatasetDict, Features, Sequence, Value
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {"<|endoftext|>": 0, **{f"w{i}": i for i in range(1, vocab)}}
    tok = Tokenizer(models.WordLevel(words, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>", pad_token="<|endoftext|>"
    )
    tokenizer_dir = root / "tokenizer"
    fast.save_pretrained(tokenizer_dir)
    rng = np.random.default_rng(0)
    blocks = rng.integers(0, vocab, size=(rows, context), dtype=np.uint16)
    features = Features({"input_ids": Sequence(Value("uint16"), length=context)})
    dataset_dir = root / "processed_dataset"
    DatasetDict(
        {
            "train": Dataset.from_dict({"input_ids": blocks[16:].tolist()}, features=features),
            "validation": Dataset.from_dict({"input_ids": blocks[:16].tolist()}, features=features),
        }
    ).save_to_disk(str(dataset_dir))
    return tokenizer_dir, dataset_dir


@dataclass(frozen=True)
class Measured:
    """Tokens/s two ways: over the whole run (the metadata's figure) and from the median step,
    which a neighbour's burst of load on a shared machine cannot drag down."""

    mean: float
    median_step: float


def _median_rate(step_seconds: list[float], tokens_per_step: int) -> float:
    return tokens_per_step / statistics.median(step_seconds)


def bare_loop(dataset_dir: Path, tokenizer_dir: Path, config: TrainConfig, steps: int, device: str) -> Measured:
    """Tokens/s of the plainest loop that trains the same model on the same batches."""
    from datasets import load_from_disk
    from transformers import AutoTokenizer

    plan = plan_training(dataset_dir, tokenizer_dir, config, device=device)
    precision = choose_precision(device, config.precision)
    model = build_model(plan, AutoTokenizer.from_pretrained(tokenizer_dir)).to(device)
    model.train()
    def loss_of(ids: torch.Tensor) -> torch.Tensor:  # only the loss leaves the (compiled) graph
        return model(input_ids=ids, labels=ids).loss

    forward = torch.compile(loss_of) if config.compile else loss_of
    optimizer = torch.optim.AdamW(
        model.parameters(),
        lr=plan.learning_rate,
        betas=(plan.preset.adam_beta1, plan.preset.adam_beta2),
        weight_decay=plan.preset.weight_decay,
        fused=fused_adamw_supported(device),
    )
    data = np.asarray(load_from_disk(str(dataset_dir))["train"].with_format("numpy")["input_ids"])
    order = np.random.default_rng(0).permutation(len(data))
    micro, accumulation = plan.micro_batch_size, plan.gradient_accumulation_steps
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    # The same allocator settings as train_model on a CPU, so the two differ only in the loop.
    with steady_host_memory() if device == "cpu" else nullcontext():
        position = 0
        start = mark = time.perf_counter()
        step_seconds = []
        for _ in range(steps):
            for _ in range(accumulation):
                if position + micro > len(order):
                    position = 0
                ids = torch.from_numpy(data[order[position : position + micro]].astype(np.int64)).to(device)
                position += micro
                with torch.autocast(device_type=device, dtype=dtype or torch.float32, enabled=dtype is not None):
                    loss = forward(ids) / accumulation
                loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), plan.preset.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if device == "cuda":
                torch.cuda.synchronize()
            now = time.perf_counter()
            step_seconds.append(now - mark)
            mark = now
        seconds = time.perf_counter() - start
    return Measured(steps * plan.tokens_per_step / seconds, _median_rate(step_seconds, plan.tokens_per_step))


def trainer_run(root: Path, dataset_dir: Path, tokenizer_dir: Path, config: TrainConfig, device: str) -> Measured:
    """`trained_model`'s own figure (tokens over seconds in training steps, as in the metadata),
    plus the median step timed by a callback from one step's end to the next."""
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.step_seconds: list[float] = []
            self.mark = 0.0

        def on_train_begin(self, args, state, control, **kwargs):  # noqa: ANN001
            self.mark = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001
            now = time.perf_counter()
            self.step_seconds.append(now - self.mark)
            self.mark = now

    timer = StepTimer()
    result = train_model(
        dataset_dir, tokenizer_dir, root / f"ck-{time.monotonic_ns()}", config, device=device, callbacks=[timer]
    )
    tokens_per_step = result.batch_size * plan_training(dataset_dir, tokenizer_dir, config, device=device).context_length
    return Measured(result.tokens_per_second, _median_rate(timer.step_seconds, tokens_per_step))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny,mini")
    parser.add_argument("--steps", type=int, default=40, help="optimizer steps per measurement")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--context", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=0, help="0: the preset's")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--compile", action="store_true", help="torch.compile both (the `compile` config key)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    rows = []
    with tempfile.TemporaryDirectory(prefix="train-bench-") as tmp:
        root = Path(tmp)
        tokenizer_dir, dataset_dir = build_inputs(root, args.vocab, args.context, rows=2000)
        print(
            f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {args.device}, "
            f"vocab {args.vocab}, context {args.context}, {args.steps} steps x {args.repeats} repeats"
            f"{', torch.compile' if args.compile else ''}",
            flush=True,
        )
        for name in args.presets.split(","):
            config = TrainConfig(
                preset=name,
                max_steps=args.steps,
                save_steps=10**9,  # one checkpoint at the end, as a short real run would write
                logging_steps=10,
                batch_size=args.batch_size,
                precision=args.precision,
                compile=args.compile,
                sample_prompts=[],
            )
            bare, trainer = [], []
            for repeat in range(args.repeats):
                # Alternate which goes first, so a warm cache or a neighbour's burst favours neither.
                if repeat % 2:
                    trainer.append(trainer_run(root, dataset_dir, tokenizer_dir, config, args.device))
                    bare.append(bare_loop(dataset_dir, tokenizer_dir, config, args.steps, args.device))
                else:
                    bare.append(bare_loop(dataset_dir, tokenizer_dir, config, args.steps, args.device))
                    trainer.append(trainer_run(root, dataset_dir, tokenizer_dir, config, args.device))
            precision = choose_precision(args.device, args.precision)
            for kind in ("mean", "median_step"):
                b = [getattr(m, kind) for m in bare]
                t = [getattr(m, kind) for m in trainer]
                ratios = [x / y for x, y in zip(t, b)]
                row = {
                    "preset": name,
                    "precision": precision,
                    "figure": kind,
                    "bare_tokens_per_second": b,
                    "trainer_tokens_per_second": t,
                    "ratios": ratios,
                    "median_ratio": statistics.median(ratios),
                }
                rows.append(row)
                print(
                    f"{name:>6} {precision} {kind:>11}: bare {', '.join(f'{x:,.0f}' for x in b)} tok/s | "
                    f"trained_model {', '.join(f'{x:,.0f}' for x in t)} tok/s | "
                    f"ratio {', '.join(f'{r:.3f}' for r in ratios)} (median {row['median_ratio']:.3f})",
                    flush=True,
                )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
