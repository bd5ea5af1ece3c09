"""What holds gpt2-small's MFU at context 1024 on a CUDA GPU: the same bare loop, one change at a time.

    python benchmarks/cuda_mfu.py --json mfu.json
    python benchmarks/cuda_mfu.py --variants hf,hf-96 --steps 20

Needs only torch and transformers (no dataset, no project install), so it runs on a bare GPU box.
Every variant trains gpt2-small (vocabulary 50257 padded to 50304, no dropout) in bf16 autocast
with TF32 on, fused AdamW and gradient clipping, on random token ids, and reports the median step's
tokens/s and MFU (nanoGPT's 6N + 12 L d T per token, against a bf16 8192^3 matmul timed here):

- ``hf``: Hugging Face's GPT2LMHeadModel under torch.compile, 64 x 1024 (the best figure so far);
- ``hf-96``: the same with 96 x 1024, to see whether the GPU is still filling;
- ``hf-ce``: the model's trunk and head compiled, the loss computed by us on bf16 logits without
  transformers' float32 upcast, to see what the loss costs;
- ``hf-autotune``: ``mode="max-autotune-no-cudagraphs"`` (Triton GEMM templates tried per shape);
- ``nano``: a nanoGPT-style model of the same shape (plain Linear layers, SDPA causal), compiled,
  to see how much is left in the model code rather than in the GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

LAYERS, HEADS, EMBD, CONTEXT, VOCAB = 12, 12, 768, 1024, 50304


def flops_per_token() -> float:
    n = VOCAB * EMBD + LAYERS * (12 * EMBD * EMBD + 13 * EMBD) + 2 * EMBD
    return 6.0 * n + 12.0 * LAYERS * EMBD * CONTEXT


def peak_bf16_tflops(n: int = 8192, repeats: int = 20) -> float:
    """The MFU denominator: a large bf16 matmul on this GPU (random data; zeros run faster)."""
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.ln_1, self.ln_2 = nn.LayerNorm(EMBD), nn.LayerNorm(EMBD)
        self.qkv, self.proj = nn.Linear(EMBD, 3 * EMBD), nn.Linear(EMBD, EMBD)
        self.fc, self.out = nn.Linear(EMBD, 4 * EMBD), nn.Linear(4 * EMBD, EMBD)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(self.ln_1(x)).split(EMBD, dim=2)
        q, k, v = (y.view(b, t, HEADS, c // HEADS).transpose(1, 2) for y in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).contiguous().view(b, t, c)
        x = x + self.proj(y)
        return x + self.out(F.gelu(self.fc(self.ln_2(x)), approximate="tanh"))


class NanoGPT(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.wte, self.wpe = nn.Embedding(VOCAB, EMBD), nn.Embedding(CONTEXT, EMBD)
        self.blocks = nn.ModuleList(Block() for _ in range(LAYERS))
        self.ln_f = nn.LayerNorm(EMBD)
        self.head = nn.Linear(EMBD, VOCAB, bias=False)
        self.head.weight = self.wte.weight
        for module in self.modules():  # GPT-2's initialisation, so the loss starts near ln(vocab)
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1], device=ids.device))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits[:, :-1].reshape(-1, VOCAB).float(), ids[:, 1:].reshape(-1))


def hf_model() -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=VOCAB, n_positions=CONTEXT, n_embd=EMBD, n_layer=LAYERS, n_head=HEADS,
                        resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, activation_function="gelu_pytorch_tanh",
                        use_cache=False)
    model = GPT2LMHeadModel(config)
    model.loss_type = "ForCausalLM"
    return model


def variant(name: str) -> tuple[nn.Module, Callable[[nn.Module, torch.Tensor], torch.Tensor], int, str]:
    """(model, loss of a batch, micro-batch, compile mode)"""
    if name == "nano":
        return NanoGPT(), lambda m, ids: m(ids), 64, "default"
    model = hf_model()
    micro = 96 if name == "hf-96" else 64
    mode = "max-autotune-no-cudagraphs" if name == "hf-autotune" else "default"
    if name == "hf-ce":
        def own_loss(m: nn.Module, ids: torch.Tensor) -> torch.Tensor:
            hidden = m.transformer(input_ids=ids).last_hidden_state
            logits = m.lm_head(hidden[:, :-1])
            return F.cross_entropy(logits.reshape(-1, VOCAB), ids[:, 1:].reshape(-1))
        return model, own_loss, micro, mode
    return model, lambda m, ids: m(input_ids=ids, labels=ids).loss, micro, mode


def measure(name: str, steps: int, peak: float) -> dict:
    torch.manual_seed(0)
    model, loss_of, micro, mode = variant(name)
    model = model.cuda().train()
    compiled = torch.compile(lambda ids: loss_of(model, ids), mode=mode)  # the loss inside the graph too
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4, betas=(0.9, 0.95), weight_decay=0.1, fused=True)
    generator = torch.Generator(device="cuda").manual_seed(0)
    torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    seconds, losses = [], []
    for step in range(steps):
        mark = time.perf_counter()
        ids = torch.randint(0, 50257, (micro, CONTEXT), device="cuda", generator=generator)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = compiled(ids)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        seconds.append(time.perf_counter() - mark)
        losses.append(loss.item())
        if step == 0:
            first = time.perf_counter() - start
    tokens = micro * CONTEXT / statistics.median(seconds[1:])
    mfu = tokens * flops_per_token() / (peak * 1e12)
    return {"variant": name, "micro_batch": micro, "mode": mode, "tokens_per_second": tokens, "mfu": mfu,
            "first_step_s": first, "peak_gib": torch.cuda.max_memory_allocated() / 2**30,
            "loss_first_last": [losses[0], losses[-1]], "finite": all(math.isfinite(x) for x in losses)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="hf,hf-ce,nano,hf-96,hf-autotune")
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA GPU here", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    peak = peak_bf16_tflops()
    rows: list[dict] = [{"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "peak_tflops": peak}]
    print(f"{rows[0]['gpu']}, torch {torch.__version__}, bf16 8192^3 matmul {peak:.0f} TFLOP/s", flush=True)
    for name in args.variants.split(","):
        try:
            row = measure(name, args.steps, peak)
        except torch.OutOfMemoryError:
            row = {"variant": name, "oom": True}
        torch.cuda.empty_cache()
        rows.append(row)
        if args.json:
            args.json.write_text(json.dumps(rows, indent=2))
        if row.get("oom"):
            print(f"{name:>12}: out of memory", flush=True)
            continue
        print(f"{name:>12}: {row['micro_batch']} x {CONTEXT} {row['tokens_per_second']:>9,.0f} tok/s  MFU "
              f"{row['mfu']:.1%}  first step {row['first_step_s']:.0f} s  peak {row['peak_gib']:.1f} GiB  "
              f"loss {row['loss_first_last'][0]:.2f} -> {row['loss_first_last'][1]:.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
