"""Validation loss of `trained_model`'s recipe beside a textbook GPT recipe, on the same blocks.

    OMP_NUM_THREADS=1 python benchmarks/quality.py --presets tiny,mini --steps 120,480 --seeds 1,2,3
    OMP_NUM_THREADS=1 python benchmarks/quality.py --presets mini --steps 120 --trained-model-warmup own

Both sides train the same model shape (the preset's), on the same tokenized blocks in the same
order (a permutation of the train split drawn from the seed, as the Trainer's sampler does), with
the same sequences per step, number of steps and peak learning rate, and both report the mean
per-token cross-entropy over the whole validation split:

- ``trained_model``: :func:`llm_assets.training.train.train_model` (the Hugging Face Trainer
  path the asset runs), fresh checkpoint folder per run, the loss read from ``.eval_loss``;
- ``reference``: a plain PyTorch loop over a nanoGPT-style model written here: N(0, 0.02) init
  with residual projections scaled by 1/sqrt(2 n_layer), exact GELU, tied head; AdamW(0.9, 0.95,
  eps 1e-8) with weight decay 0.1 on matrices only; clipping at 1.0; linear warm-up to the peak,
  then cosine decay to a tenth of it at the last step.

Warm-up: the reference's is 5% of the steps (``--warmup-fraction``, or ``--warmup-steps``), and
trained_model gets the same length through ``TrainConfig.warmup_steps``; ``--trained-model-warmup
own`` leaves trained_model its built-in rule instead (what the asset does when not told).

Data: the 18 books of ``/work/shared/gutenberg`` go through the project's own stages (download
from a local HTTP server, corpus, BPE of 8192 tokens, 128-token blocks), built once and cached in
``--work-dir``. Every run is also appended to ``runs.jsonl`` there. Figures: benchmarks/QUALITY.md.
"""

from __future__ import annotations

import argparse
import functools
import http.server
import json
import math
import shutil
import statistics
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from llm_assets.training.config import TrainConfig
from llm_assets.training.devices import fused_adamw_supported
from llm_assets.training.plan import plan_training
from llm_assets.training.presets import ModelPreset, get_preset, padded_vocab_size
from llm_assets.training.train import train_model

SHARED = Path("/work/shared/gutenberg")
DEFAULT_WORK_DIR = Path(__file__).resolve().parent / "results" / "quality"
VOCAB_SIZE = 8192
CONTEXT_LENGTH = 128
RECIPES = ("trained_model", "reference")


# --------------------------------------------------------------------------------------------
# Data: the project's own stages, from a local mirror, cached
# --------------------------------------------------------------------------------------------


@contextmanager
def serve_directory(root: Path) -> Iterator[str]:
    """Serve ``root`` over HTTP on 127.0.0.1 (a free port) in a thread; yield its base URL.

    The download stage only speaks HTTP, so the shared mirror is served rather than copied: the
    books then go through the same client, validation and cache as in the asset.
    """

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def prepare_data(work_dir: Path, mirror: Path, manifest: Path) -> tuple[Path, Path]:
    """(dataset_dir, tokenizer_dir) of the manifest's books, built once with the project's stages."""
    data = work_dir / "data"
    dataset_dir, tokenizer_dir = data / "processed_dataset", data / "tokenizer"
    if (dataset_dir / "dataset_dict.json").is_file() and (tokenizer_dir / "tokenizer.json").is_file():
        return dataset_dir, tokenizer_dir
    from llm_assets.books.corpus import build_corpus, resolve_corpus
    from llm_assets.books.downloads import download_books
    from llm_assets.books.gutenberg import GutenbergClient
    from llm_assets.text.dataset import build_dataset
    from llm_assets.text.tokenizer import train_tokenizer

    rows = manifest.read_text(encoding="utf-8").splitlines()[1:]
    ids = [int(row.split("\t", 1)[0]) for row in rows if row.strip()]
    with serve_directory(mirror) as url:
        client = GutenbergClient(url)
        try:
            download_books(ids, data / "raw", client)
        finally:
            client.close()
    corpus = data / "all_books.txt"
    build_corpus(data / "raw", corpus)
    text = resolve_corpus(corpus).text
    train_tokenizer(text, tokenizer_dir, vocab_size=VOCAB_SIZE)
    report = build_dataset(text, tokenizer_dir, dataset_dir, context_length=CONTEXT_LENGTH)
    print(f"data: {len(ids)} books, {report.train_blocks} train / {report.validation_blocks} validation "
          f"blocks of {CONTEXT_LENGTH} tokens", flush=True)
    return dataset_dir, tokenizer_dir


# --------------------------------------------------------------------------------------------
# trained_model's recipe
# --------------------------------------------------------------------------------------------


def builtin_warmup(dataset_dir: Path, tokenizer_dir: Path, preset: str, steps: int) -> int:
    """The warm-up trained_model picks by itself (training/schedule.py), asked before the run."""
    config = TrainConfig(preset=preset, max_steps=steps, save_steps=steps, sample_prompts=[])
    return plan_training(dataset_dir, tokenizer_dir, config).schedule.warmup_steps


def run_trained_model(
    dataset_dir: Path,
    tokenizer_dir: Path,
    checkpoint_dir: Path,
    preset: ModelPreset,
    steps: int,
    seed: int,
    warmup: int | None,
) -> tuple[float, int | None, int]:
    """(validation loss, warm-up if reported, sequences per step) of trained_model's recipe: the
    asset's code, one evaluation at the end. ``warmup`` None leaves trained_model its own rule."""
    extra = {"warmup_steps": warmup} if warmup is not None else {}
    config = TrainConfig(
        preset=preset.name,
        max_steps=steps,
        save_steps=steps,
        eval_steps=steps,
        logging_steps=max(1, steps // 4),
        batch_size=preset.batch_size,
        gradient_accumulation_steps=preset.gradient_accumulation_steps,
        learning_rate=preset.learning_rate,
        seed=seed,
        sample_prompts=[],
        optimizer="adamw",  # the same recipe as the reference; budget_quality.py compares the optimizers
        **extra,
    )
    result = train_model(dataset_dir, tokenizer_dir, checkpoint_dir, config, device="cpu")
    return result.eval_loss, getattr(result, "warmup_steps", warmup), result.batch_size


# --------------------------------------------------------------------------------------------
# The reference: a textbook GPT and a plain loop
# --------------------------------------------------------------------------------------------


class Block(nn.Module):
    """Pre-LN transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, n_embd: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.ln_1 = nn.LayerNorm(n_embd)
        self.qkv = nn.Linear(n_embd, 3 * n_embd)
        self.attn_proj = nn.Linear(n_embd, n_embd)
        self.ln_2 = nn.LayerNorm(n_embd)
        self.fc = nn.Linear(n_embd, 4 * n_embd)
        self.mlp_proj = nn.Linear(4 * n_embd, n_embd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2) for z in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.attn_proj(y.transpose(1, 2).reshape(b, t, c))
        return x + self.mlp_proj(F.gelu(self.fc(self.ln_2(x))))


class GPT(nn.Module):
    """Token + position embeddings, pre-LN blocks, final LN, head tied to the token embedding."""

    def __init__(self, vocab: int, n_positions: int, n_layer: int, n_head: int, n_embd: int) -> None:
        super().__init__()
        self.wte = nn.Embedding(vocab, n_embd)
        self.wpe = nn.Embedding(n_positions, n_embd)
        self.blocks = nn.ModuleList(Block(n_embd, n_head) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(n_embd)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear):
                nn.init.zeros_(module.bias)
        # GPT-2's residual scaling: each block adds two projections to the stream.
        for block in self.blocks:
            for proj in (block.attn_proj, block.mlp_proj):
                nn.init.normal_(proj.weight, mean=0.0, std=0.02 / math.sqrt(2 * n_layer))

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(idx.shape[1], device=idx.device)
        x = self.wte(idx) + self.wpe(positions)
        for block in self.blocks:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.T


def reference_lr(step: int, steps: int, warmup: int, peak: float) -> float:
    """Linear warm-up reaching ``peak`` on step ``warmup - 1``, then cosine to peak / 10 at the last step."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - 1 - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


def load_blocks(dataset_dir: Path, split: str) -> torch.Tensor:
    from datasets import load_from_disk

    ids = load_from_disk(str(dataset_dir))[split].with_format("numpy")["input_ids"]
    return torch.from_numpy(np.asarray(ids).astype(np.int64))


def next_token_loss(model: nn.Module, blocks: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of each block's tokens 2..T given the ones before (127 targets per 128-token
    block, exactly what GPT2LMHeadModel scores when labels are the inputs)."""
    logits = model(blocks[:, :-1])
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), blocks[:, 1:].reshape(-1), reduction=reduction)


@torch.no_grad()
def evaluate(model: nn.Module, blocks: torch.Tensor, batch: int = 64) -> float:
    """Mean per-token cross-entropy over every validation block."""
    model.eval()
    total = sum(float(next_token_loss(model, blocks[i : i + batch], "sum")) for i in range(0, len(blocks), batch))
    model.train()
    return total / (len(blocks) * (blocks.shape[1] - 1))


def sequences_per_step(preset: ModelPreset) -> int:
    """The preset's batch as the pre-refactor code reads it (batch_size per micro-batch). The two
    presets measured here have no accumulation, so any reading gives 16; main() checks the figure
    trained_model reports against it."""
    return preset.batch_size * preset.gradient_accumulation_steps


def run_reference(dataset_dir: Path, tokenizer_dir: Path, preset: ModelPreset, steps: int, seed: int, warmup: int,
                  lr: float = 0.0) -> float:
    """Validation loss of the textbook recipe on the same blocks, batch, steps, peak LR (``lr``, or
    the preset's) and warm-up."""
    peak = lr or preset.learning_rate
    from transformers import AutoTokenizer

    vocab = padded_vocab_size(len(AutoTokenizer.from_pretrained(tokenizer_dir)))
    train, validation = load_blocks(dataset_dir, "train"), load_blocks(dataset_dir, "validation")
    torch.manual_seed(seed)
    model = GPT(vocab, preset.n_positions, preset.n_layer, preset.n_head, preset.n_embd)
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": preset.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(
        groups, lr=peak, betas=(preset.adam_beta1, preset.adam_beta2), eps=1e-8,
        fused=fused_adamw_supported("cpu"),
    )
    batch = sequences_per_step(preset)
    queue, epoch = torch.empty(0, dtype=torch.int64), 0
    model.train()
    for step in range(steps):
        if len(queue) < batch:
            # Epoch e is a permutation seeded with seed + e: the order accelerate's seedable sampler
            # gives the Trainer, so both recipes see the same blocks (up to the epoch's short batch).
            queue = torch.cat([queue, torch.randperm(len(train), generator=torch.Generator().manual_seed(seed + epoch))])
            epoch += 1
        rows, queue = queue[:batch], queue[batch:]
        for group in optimizer.param_groups:
            group["lr"] = reference_lr(step, steps, warmup, peak)
        loss = next_token_loss(model, train[rows])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), preset.max_grad_norm)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    return evaluate(model, validation)


# --------------------------------------------------------------------------------------------
# Runs and the summary
# --------------------------------------------------------------------------------------------


Results = dict[tuple[str, int, str, str], dict[int, float]]
"""(preset, steps, recipe, warm-up) -> {seed: validation loss}."""


def spread(values: list[float]) -> tuple[float, float, float]:
    """(mean, max - min, sample standard deviation)."""
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return statistics.fmean(values), max(values) - min(values), std


def summarize(results: Results) -> None:
    """One row per preset, length and recipe, then each gap against the larger seed spread."""
    print("\n| preset | steps | recipe | warm-up | mean | max-min | std | per seed |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    verdicts: list[str] = []
    for preset, steps in sorted({key[:2] for key in results}):
        stats = {}
        for (p, n, recipe, warmup), by_seed in sorted(results.items(), key=lambda kv: RECIPES.index(kv[0][2])):
            if (p, n) != (preset, steps):
                continue
            stats[recipe] = spread(list(by_seed.values()))
            mean, width, std = stats[recipe]
            seeds = " / ".join(f"{by_seed[s]:.3f}" for s in sorted(by_seed))
            print(f"| {preset} | {steps} | {recipe} | {warmup} | {mean:.3f} | {width:.3f} | {std:.3f} | {seeds} |")
        if len(stats) == 2:
            gap = stats["trained_model"][0] - stats["reference"][0]
            allowed = max(stats["trained_model"][1], stats["reference"][1])
            verdict = "ok" if gap <= allowed else "BEHIND"
            verdicts.append(f"{preset} {steps} steps: trained_model - reference = {gap:+.3f} "
                            f"(larger seed spread {allowed:.3f}): {verdict}")
    print("\n" + "\n".join(verdicts))


def _names(text: str) -> list[str]:
    return [x for x in text.split(",") if x]


def _ints(text: str) -> list[int]:
    return [int(x) for x in _names(text)]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", default="tiny,mini", type=_names)
    parser.add_argument("--steps", default="120,480", type=_ints)
    parser.add_argument("--seeds", default="1,2,3", type=_ints)
    parser.add_argument("--recipes", default=",".join(RECIPES), type=_names)
    parser.add_argument("--warmup-fraction", type=float, default=0.05,
                        help="the reference's warm-up as a fraction of the steps (default 5%%)")
    parser.add_argument("--warmup-steps", type=int, default=0, help="a fixed warm-up length instead of the fraction")
    parser.add_argument("--trained-model-warmup", choices=("same", "own"), default="same",
                        help="same: trained_model warms up as long as the reference; own: its built-in rule")
    parser.add_argument("--work-dir", type=Path, default=DEFAULT_WORK_DIR)
    parser.add_argument("--tag", default="", help="a label stored with each run in runs.jsonl")
    parser.add_argument("--mirror", type=Path, default=SHARED / "mirror")
    parser.add_argument("--manifest", type=Path, default=SHARED / "MANIFEST.tsv")
    args = parser.parse_args()
    if unknown := set(args.recipes) - set(RECIPES):
        parser.error(f"unknown recipe(s) {sorted(unknown)}; choose from {RECIPES}")
    return args


def warmups(args: argparse.Namespace, dataset_dir: Path, tokenizer_dir: Path, preset: str, steps: int) -> dict[str, int | None]:
    """The warm-up each recipe is given for one run length (None: trained_model's own rule).

    The reference warms up over ``--warmup-fraction`` of the steps (or ``--warmup-steps``), and
    trained_model gets the same length through ``TrainConfig.warmup_steps``; with
    ``--trained-model-warmup own`` it keeps its built-in rule (what the asset does when not told).
    """
    reference = args.warmup_steps or max(1, round(args.warmup_fraction * steps))
    if args.trained_model_warmup == "own":
        return {"trained_model": None, "reference": reference}
    return {"trained_model": reference, "reference": reference}


def run_one(args: argparse.Namespace, data: tuple[Path, Path], preset: ModelPreset, steps: int, seed: int,
            recipe: str, warmup: int | None) -> tuple[float, int | None]:
    """(validation loss, warm-up used) of one recipe, seed and length."""
    dataset_dir, tokenizer_dir = data
    if recipe == "reference":
        assert warmup is not None
        return run_reference(dataset_dir, tokenizer_dir, preset, steps, seed, warmup), warmup
    checkpoints = args.work_dir / "checkpoints" / f"{preset.name}-{steps}-{seed}-{time.time_ns()}"
    try:
        loss, used, batch = run_trained_model(dataset_dir, tokenizer_dir, checkpoints, preset, steps, seed, warmup)
    finally:
        shutil.rmtree(checkpoints, ignore_errors=True)
    if batch != sequences_per_step(preset):
        print(f"WARNING: trained_model trained {batch} sequences per step, the reference {sequences_per_step(preset)}")
    if used is None:
        used = builtin_warmup(dataset_dir, tokenizer_dir, preset.name, steps)
    return loss, used


def main() -> None:
    args = parse_args()
    torch.set_num_threads(1)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    data = prepare_data(args.work_dir, args.mirror, args.manifest)
    results: Results = {}
    for name in args.presets:
        preset = get_preset(name)
        for steps in args.steps:
            given = warmups(args, *data, name, steps)
            for seed in args.seeds:
                for recipe in args.recipes:
                    started = time.perf_counter()
                    loss, warmup = run_one(args, data, preset, steps, seed, recipe, given[recipe])
                    seconds = time.perf_counter() - started
                    label = "?" if warmup is None else str(warmup)
                    results.setdefault((name, steps, recipe, label), {})[seed] = loss
                    record = {"tag": args.tag, "preset": name, "steps": steps, "warmup": warmup, "recipe": recipe,
                              "seed": seed, "eval_loss": loss, "seconds": round(seconds, 1)}
                    with open(args.work_dir / "runs.jsonl", "a", encoding="utf-8") as log:
                        log.write(json.dumps(record) + "\n")
                    print(f"{name} {steps} steps (warm-up {label}) seed {seed} {recipe}: "
                          f"val loss {loss:.4f} ({seconds:.0f} s)", flush=True)
    summarize(results)


if __name__ == "__main__":
    main()
