"""The optimizers: AdamW (the Trainer's own) or Muon for the hidden matrices with AdamW for the rest.

Muon (``torch.optim.Muon``) replaces each hidden weight matrix's update by its nearest
orthogonal matrix (a few Newton-Schulz iterations), so every direction of the matrix learns at
the same rate; it learns more per step than AdamW on GPT-2 (benchmarks/QUALITY.md). It is only
defined for 2-D hidden weights: the embeddings (which are also the tied output head), positions,
norms and biases stay with AdamW, one optimizer object holding both so that the Trainer's single
schedule, gradient clipping and checkpoint file cover everything.

PyTorch runs the iterations in bf16, which GPUs compute fastest but CPUs without AMX compute
about three times slower than fp32; ``Muon`` below runs them in a dtype chosen per device.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

MUON_MOMENTUM = 0.95
# Muon's step is scaled to AdamW's update size (0.2 * sqrt(max(rows, cols)), "Muon is Scalable for
# LLM Training"), so the preset's AdamW learning rate and weight decay carry over unchanged.
MUON_LR_ADJUSTMENT = "match_rms_adamw"

def muon_available() -> bool:
    return hasattr(torch.optim, "Muon")


def newton_schulz_dtype(device: str) -> torch.dtype:
    """bf16 where matrix units compute it natively (CUDA), fp32 elsewhere: on a CPU without AMX
    bf16 matmuls are ~3x slower than fp32, and MPS gains nothing from it for matrices this size."""
    return torch.bfloat16 if device == "cuda" else torch.float32


def orthogonalize(update: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float,
                  dtype: torch.dtype) -> torch.Tensor:
    """An approximately orthogonal matrix with ``update``'s singular vectors (Muon's core step).

    Scaled to spectral norm at most 1 (by the Frobenius norm), then the odd quintic
    ``X <- a X + b (X X^T) X + c (X X^T)^2 X`` pushes every singular value towards 1; working on
    the wide orientation keeps ``X X^T`` the smaller Gram matrix."""
    a, b, c = coefficients
    x = update.to(dtype)
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    return x.T if tall else x


class Muon(getattr(torch.optim, "Muon", torch.optim.Optimizer)):  # before 2.9: muon_with_adamw says so
    """``torch.optim.Muon`` with the Newton-Schulz iterations in ``ns_dtype``.

    bf16 (or None) is PyTorch's own step, untouched. Any other dtype runs the same update (Nesterov
    momentum, orthogonalization, decoupled weight decay, the learning-rate adjustment for the
    matrix's shape) with the iterations in that dtype. The state is PyTorch's (one
    ``momentum_buffer`` per matrix), so a checkpoint moves between devices either way.
    """

    def __init__(self, params: Iterable[Any], *, ns_dtype: torch.dtype | None = None, **kwargs: Any) -> None:
        super().__init__(params, **kwargs)
        self.ns_dtype = ns_dtype

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001
        if self.ns_dtype in (None, torch.bfloat16):
            return super().step(closure)
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, decay, momentum = group["lr"], group["weight_decay"], group["momentum"]
            for param in group["params"]:
                if param.grad is None:
                    continue
                state = self.state[param]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(param.grad)
                buffer = state["momentum_buffer"]
                buffer.lerp_(param.grad, 1 - momentum)
                update = param.grad.lerp(buffer, momentum) if group["nesterov"] else buffer
                direction = orthogonalize(update, group["ns_coefficients"], group["ns_steps"], group["eps"],
                                          self.ns_dtype)
                param.mul_(1 - lr * decay)
                param.add_(direction.to(param.dtype), alpha=-lr * _shape_factor(group["adjust_lr_fn"], param))
        return loss


def _shape_factor(adjust: str | None, param: torch.Tensor) -> float:
    """The learning-rate multiplier ``torch.optim.Muon`` documents for each ``adjust_lr_fn``."""
    rows, cols = param.shape[:2]
    if adjust == MUON_LR_ADJUSTMENT:
        return 0.2 * max(rows, cols) ** 0.5
    return max(1.0, rows / cols) ** 0.5


class MuonWithAdamW(torch.optim.Optimizer):
    """One optimizer over two: Muon for the hidden matrices, AdamW for everything else.

    Their parameter groups are shared (the learning-rate scheduler sets both), ``step`` steps
    both, and the state dict holds both under their own keys (tensors and numbers only, so it
    loads with ``weights_only``)."""

    def __init__(self, muon: Muon, adamw: torch.optim.AdamW) -> None:
        self.muon, self.adamw = muon, adamw
        super().__init__([p for opt in (muon, adamw) for g in opt.param_groups for p in g["params"]], {})
        self.param_groups = [*muon.param_groups, *adamw.param_groups]
        self.state = ChainMap(muon.state, adamw.state)  # type: ignore[assignment]

    @torch.no_grad()
    def step(self, closure=None):  # noqa: ANN001
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        self.muon.step()
        self.adamw.step()
        return loss

    def state_dict(self) -> dict[str, Any]:
        return {"muon": self.muon.state_dict(), "adamw": self.adamw.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if set(state_dict) != {"muon", "adamw"}:
            raise ValueError(
                "This checkpoint's optimizer state is not Muon's (it was trained with `optimizer: adamw`): "
                "continue it with `optimizer: adamw`, or start a new run."
            )
        self.muon.load_state_dict(state_dict["muon"])
        self.adamw.load_state_dict(state_dict["adamw"])


def is_hidden_matrix(name: str, param: nn.Parameter) -> bool:
    """The weights Muon is defined for: the 2-D matrices inside the transformer blocks (GPT-2's
    ``transformer.h.<i>.*``), not the token/position embeddings nor the output head tied to them."""
    return param.ndim == 2 and ".h." in f".{name}"


def muon_with_adamw(
    model: nn.Module, *, lr: float, weight_decay: float, betas: tuple[float, float], device: str,
    fused_adamw: bool,
) -> MuonWithAdamW:
    """Muon on the hidden matrices; AdamW with weight decay on the embeddings, none on norms and
    biases (as the Trainer decays): the same peak learning rate for both."""
    if not muon_available():
        raise ValueError(
            f"Config key `optimizer`: muon needs PyTorch 2.9 or newer (torch.optim.Muon); this is "
            f"PyTorch {torch.__version__}. Upgrade torch, or set optimizer: adamw."
        )
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    hidden = [p for n, p in named if is_hidden_matrix(n, p)]
    decayed = [p for n, p in named if not is_hidden_matrix(n, p) and p.ndim >= 2]
    plain = [p for n, p in named if p.ndim < 2]
    muon = Muon(hidden, lr=lr, weight_decay=weight_decay, momentum=MUON_MOMENTUM, nesterov=True,
                adjust_lr_fn=MUON_LR_ADJUSTMENT, ns_dtype=newton_schulz_dtype(device))
    adamw = torch.optim.AdamW(
        [{"params": decayed, "weight_decay": weight_decay}, {"params": plain, "weight_decay": 0.0}],
        lr=lr, betas=betas, fused=fused_adamw or None,
    )
    return MuonWithAdamW(muon, adamw)
