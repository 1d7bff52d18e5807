"""Multi-process training through torch.distributed (DistributedDataParallel), launched with
``torchrun``. Every rank computes the same seeded epoch indices (so any imbalance strategy's
sampling is identical everywhere) and takes an interleaved shard; the union of the ranks'
batches is exactly the single-process batch. Rank 0 evaluates, checkpoints and writes the run.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class DistContext:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def agree(self, flag: bool) -> bool:
        """Rank 0's decision (stop early, ...) for every rank."""
        if not self.enabled:
            return flag
        box = [flag]
        torch.distributed.broadcast_object_list(box, src=0)
        return bool(box[0])

    def close(self, together: bool = False) -> None:
        """Leave the process group. ``together`` (a run that ended normally): wait for every rank
        first, so a rank that finished early (the others evaluate and write) does not tear down its
        connections under them; a clean-clone CI run once saw rank 1 abort at exit ("terminate
        called without an active exception"). After an error, no rank waits for the others."""
        if self.enabled and torch.distributed.is_initialized():
            if together:
                torch.distributed.barrier()
            torch.distributed.destroy_process_group()


def from_environment() -> DistContext:
    """Join the process group torchrun describes in the environment (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() and torch.distributed.is_nccl_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(local_rank)
        torch.distributed.init_process_group(backend=backend)
    return DistContext(rank, world, local_rank)


def shard(indices: np.ndarray, ctx: DistContext) -> np.ndarray:
    """This rank's interleaved share, padded (by wrapping) so every rank has the same length."""
    if not ctx.enabled:
        return indices
    n = len(indices)
    padded = -(-n // ctx.world) * ctx.world
    if padded > n:
        indices = np.concatenate([indices, indices[: padded - n]])
    return indices[ctx.rank::ctx.world]
