"""Training across processes (``torchrun --nproc-per-node N -m mm_deepz train ...``).

torchrun starts one process per device and tells each its place (``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``). Every process draws the same global batch (same seed, same step) and trains on
its share; DistributedDataParallel averages the gradients, so N processes take the steps one
process takes with the whole batch (docs/scaling.md). The main process validates, writes the
checkpoints and the model; the others follow its decisions.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from ..errors import DeepZError

T = TypeVar("T")


@dataclass(frozen=True)
class Ranks:
    """This process's place among the training's processes (one process: rank 0 of 1)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls) -> Ranks:
        """The place torchrun gives (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``); alone without them."""
        try:
            return cls(
                int(os.environ.get("RANK", "0")),
                int(os.environ.get("WORLD_SIZE", "1")),
                int(os.environ.get("LOCAL_RANK", "0")),
            )
        except ValueError as e:
            raise DeepZError(f"torchrun's RANK / WORLD_SIZE / LOCAL_RANK are not numbers ({e}).") from None

    @property
    def main(self) -> bool:
        """Whether this process validates and writes (rank 0)."""
        return self.rank == 0

    @property
    def several(self) -> bool:
        """Whether the training runs in more than one process."""
        return self.world_size > 1

    def device(self, device: torch.device) -> torch.device:
        """This process's device: its own GPU (``cuda:LOCAL_RANK``) when training on GPUs, always with its
        index (torch 2.11's ``set_device`` and ``get_device_name`` refuse a bare ``cuda``)."""
        if device.type != "cuda":
            return device
        if not self.several:
            return torch.device(
                "cuda", device.index if device.index is not None else torch.cuda.current_device()
            )
        if self.local_rank >= torch.cuda.device_count():
            raise DeepZError(
                f"Process {self.rank} wants GPU {self.local_rank} but this machine has "
                f"{torch.cuda.device_count()}: start at most that many processes per node."
            )
        return torch.device("cuda", self.local_rank)

    def share(self, batch_size: int) -> slice:
        """This process's part of a global batch of ``batch_size`` (refused unless it divides evenly)."""
        if batch_size % self.world_size:
            raise DeepZError(
                f"The batch of {batch_size} does not split evenly over {self.world_size} processes: use a "
                f"--batch-size that is a multiple of {self.world_size}."
            )
        part = batch_size // self.world_size
        return slice(self.rank * part, (self.rank + 1) * part)

    def mean(self, value: float) -> float:
        """``value`` averaged over the processes."""
        if not self.several:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def from_main(self, value: T) -> T:
        """The main process's ``value``, in every process."""
        if not self.several:
            return value
        box: list[Any] = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]  # type: ignore[no-any-return]

    def gather(self, value: T) -> list[T]:
        """Every process's ``value``, in rank order."""
        if not self.several:
            return [value]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, value)
        return out

    def wrap(self, module: torch.nn.Module) -> torch.nn.Module:
        """``module`` whose gradients are averaged over the processes (DDP), or itself alone."""
        if not self.several:
            return module
        from torch.nn.parallel import DistributedDataParallel

        device = next(module.parameters()).device
        return DistributedDataParallel(module, device_ids=[device] if device.type == "cuda" else None)


@contextmanager
def process_group(ranks: Ranks, device: torch.device) -> Iterator[None]:
    """The processes joined for the training (nccl on GPUs, gloo on the CPU); nothing alone."""
    if not ranks.several or dist.is_initialized():
        yield
        return
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()
