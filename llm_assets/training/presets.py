"""Named model sizes with the training settings that suit them.

A preset is a run configuration, not just a shape: the batch, learning rate and warm-up that go
with a model size travel together, so ``preset: tiny`` is a complete smoke run and
``preset: gpt2-small`` reproduces the seed's ~124M model without anyone tuning anything. The
warm-up is a share of the run, capped, so a short run still reaches its peak and decays.
"""

from __future__ import annotations

from dataclasses import dataclass

EMBEDDING_MULTIPLE = 64
"""The embedding is padded to a multiple of this: matmuls on multiples of 64 use the fast kernels
(nanoGPT's 50257 -> 50304 trick); the extra rows are never targets, so they learn to stay silent."""


@dataclass(frozen=True)
class ModelPreset:
    """Shape of a GPT-2 model plus the optimiser settings that train it well."""

    name: str
    n_layer: int
    n_head: int
    n_embd: int
    n_positions: int
    batch_size: int  # sequences per optimizer step in one process
    gradient_accumulation_steps: int  # micro-batches that batch is split into
    learning_rate: float
    max_warmup_steps: int  # the warm-up is warmup_fraction of the run, but never longer than this
    cuda_micro_batch_tokens: int  # on CUDA, the default micro-batch in tokens (see cuda_micro_batch)
    warmup_fraction: float = 0.05
    weight_decay: float = 0.1
    max_grad_norm: float = 1.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.95
    dropout: float = 0.0
    description: str = ""

    def cuda_micro_batch(self, context_length: int) -> int:
        """Sequences per micro-batch on a CUDA GPU when the user left the batch at 0.

        The CPU presets' 16 sequences of 128 tokens leave a data-centre GPU mostly idle; a micro-batch
        of ``cuda_micro_batch_tokens`` keeps its matrix units busy while its activations (the logits
        dominate) stay within a 24 GB card. A step then holds more tokens on CUDA than on a laptop;
        the batch_size metadata records which."""
        return max(1, self.cuda_micro_batch_tokens // context_length)

    def parameter_count(self, vocab_size: int) -> int:
        """Parameters of the GPT-2 model this preset builds (tied embeddings), without building it."""
        vocab = padded_vocab_size(vocab_size)
        e = self.n_embd
        per_layer = 12 * e * e + 13 * e  # attention (4e^2+4e) + MLP (8e^2+5e) + two layer norms (4e)
        return vocab * e + self.n_positions * e + self.n_layer * per_layer + 2 * e

    def flops_per_token(self, context_length: int, vocab_size: int) -> float:
        """Training FLOPs per token (PaLM appendix B, as in nanoGPT's estimate_mfu)."""
        n = self.parameter_count(vocab_size) - self.n_positions * self.n_embd
        return 6.0 * n + 12.0 * self.n_layer * self.n_embd * context_length


def padded_vocab_size(vocab_size: int, multiple: int = EMBEDDING_MULTIPLE) -> int:
    """The model's vocabulary: the tokenizer's length rounded up to ``multiple``."""
    return ((vocab_size + multiple - 1) // multiple) * multiple


PRESETS: dict[str, ModelPreset] = {
    p.name: p
    for p in (
        ModelPreset(
            name="gpt2-small",
            n_layer=12,
            n_head=12,
            n_embd=768,
            n_positions=1024,
            batch_size=32,
            gradient_accumulation_steps=2,
            learning_rate=6e-4,
            max_warmup_steps=2000,
            cuda_micro_batch_tokens=16384,
            description="the seed's GPT-2 small (~124M parameters with a 50257 vocabulary); wants a GPU",
        ),
        ModelPreset(
            name="gpt2-medium",
            n_layer=24,
            n_head=16,
            n_embd=1024,
            n_positions=1024,
            batch_size=32,
            gradient_accumulation_steps=4,
            learning_rate=3e-4,
            max_warmup_steps=2000,
            cuda_micro_batch_tokens=8192,
            description="GPT-2 medium (~355M parameters); a GPU with 24 GB or more",
        ),
        ModelPreset(
            name="mini",
            n_layer=6,
            n_head=6,
            n_embd=384,
            n_positions=512,
            batch_size=16,
            gradient_accumulation_steps=1,
            learning_rate=1e-3,
            max_warmup_steps=500,
            cuda_micro_batch_tokens=32768,
            description="a mid-size model (~10M parameters plus embeddings) for laptops and the CPU benchmark",
        ),
        ModelPreset(
            name="tiny",
            n_layer=2,
            n_head=2,
            n_embd=128,
            n_positions=256,
            batch_size=16,
            gradient_accumulation_steps=1,
            learning_rate=3e-3,
            max_warmup_steps=100,
            cuda_micro_batch_tokens=32768,
            description="a smoke-test model: a few seconds of training on a CPU",
        ),
    )
}


AUTO = "auto"
# preset: auto, per device: the size that gives the best model in a first run of minutes to an hour
# (benchmarks/QUALITY.md): gpt2-small fills a CUDA GPU; on a laptop's CPU or MPS it trains too few
# tokens in that time, and mini learns more.
AUTO_BY_DEVICE = {"cuda": "gpt2-small"}
AUTO_DEFAULT = "mini"


def resolve_preset(name: str, device: str) -> str:
    """``auto`` becomes the device's preset; any other name stays."""
    return AUTO_BY_DEVICE.get(device, AUTO_DEFAULT) if name == AUTO else name


def get_preset(name: str) -> ModelPreset:
    """Look a preset up by name; an unknown name fails with the choices, before any work."""
    try:
        return PRESETS[name]
    except KeyError:
        choices = ", ".join([*sorted(PRESETS), AUTO])
        raise ValueError(
            f"Config key `preset`: unknown preset {name!r}. Choose one of: {choices}."
        ) from None
