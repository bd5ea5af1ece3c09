"""This process's place in a torchrun job, and the one way its ranks agree on a decision.

Every decision that reads the disk (which run folder, which checkpoint to resume, whether the run
is already finished) is made by rank 0 alone and sent to the others: on shared storage two ranks
can see different things, and ranks that took different branches would hang in the next collective.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Distributed:
    """Rank 0 of 1 when run alone."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_env(cls) -> Distributed:
        env = os.environ
        return cls(
            rank=int(env.get("RANK", "0")),
            world_size=int(env.get("WORLD_SIZE", "1")),
            local_rank=int(env.get("LOCAL_RANK", "0")),
        )


def backend_for(device: str) -> str:
    return "nccl" if device == "cuda" else "gloo"


def decided_by_main(dist: Distributed, device: str, value: Any) -> Any:
    """Rank 0's ``value`` (JSON-able), on every rank; the others pass anything. Alone, returned as is.

    Sent as JSON bytes, not pickled: no rank ever unpickles what another sent.
    """
    if dist.world_size == 1:
        return value
    import torch
    import torch.distributed as torch_dist

    on = torch.device("cuda", dist.local_rank) if device == "cuda" else torch.device("cpu")
    if not torch_dist.is_initialized():
        # The Trainer would start the group later; it finds and uses this one.
        if device == "cuda":
            torch.cuda.set_device(on)
        torch_dist.init_process_group(backend=backend_for(device))
    payload = json.dumps(value).encode() if dist.is_main else b""
    size = torch.tensor([len(payload)], dtype=torch.long, device=on)
    torch_dist.broadcast(size, src=0)
    data = torch.zeros(int(size.item()), dtype=torch.uint8, device=on)
    if dist.is_main:
        data.copy_(torch.frombuffer(bytearray(payload), dtype=torch.uint8))
    torch_dist.broadcast(data, src=0)
    return json.loads(bytes(data.cpu().tolist()))


def same_on_every_rank(dist: Distributed, device: str, value: float) -> bool:
    """Whether every rank holds the same ``value`` (a checksum): its smallest and largest agree."""
    if dist.world_size == 1:
        return True
    import torch
    import torch.distributed as torch_dist

    on = torch.device("cuda", dist.local_rank) if device == "cuda" else torch.device("cpu")
    low = torch.tensor([value], dtype=torch.float64, device=on)
    high = low.clone()
    torch_dist.all_reduce(low, op=torch_dist.ReduceOp.MIN)
    torch_dist.all_reduce(high, op=torch_dist.ReduceOp.MAX)
    return bool(low.item() == high.item())
