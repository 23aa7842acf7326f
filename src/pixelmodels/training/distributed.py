"""DistributedDataParallel plumbing: process group from torchrun's environment, data sharding, exact NLL sums.

Usage (shell, see docs/scaling.md)::

    torchrun --nproc_per_node=4 -m pixelmodels train --preset pixelcnn-cifar10 --out runs/c10     # one node, 4 GPUs
    torchrun --nnodes=2 --nproc_per_node=8 --rdzv-backend=c10d --rdzv-endpoint=host0:29400 --rdzv-id=c10 \\
        -m pixelmodels train --preset pixelcnn-cifar10 --out /shared/runs/c10                      # two nodes

``init_distributed`` reads ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` (set by torchrun); without them the
run is a plain single process and nothing here does any communication. The backend is NCCL when the device
is a GPU (one GPU per process, ``cuda:LOCAL_RANK``) and gloo on the CPU. Every collective has the process
group's timeout (``train.dist_timeout_s``), so a rank that dies or hangs ends the others with an error instead
of a silent hang; torchrun then stops the remaining workers and exits non-zero.

``train.batch_size`` stays the *global* batch: each of the N ranks takes ``batch_size / N`` images of the same
seeded permutation, so N ranks step exactly like one process with the full batch (DDP averages gradients).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from pixelmodels.evaluate import NLLResult, bits_per_dim, dataset_nll

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world_size`` (1 and 0 without torchrun), its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def env_world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def init_distributed(device: torch.device, timeout_s: float) -> DistContext:
    """Join torchrun's process group when ``WORLD_SIZE`` > 1; else a single-process context on ``device``.

    ``device`` is the resolved ``train.device``: on CUDA each process uses ``cuda:LOCAL_RANK`` and NCCL,
    otherwise gloo. Calling this again while a group is up returns the current context.
    """
    world = env_world_size()
    if world <= 1:
        return DistContext(0, 1, 0, device)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        if torch.cuda.device_count() <= local_rank:
            raise ValueError(f"LOCAL_RANK {local_rank} has no GPU: this node has {torch.cuda.device_count()}")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
        logger.info("rank %d of %d joined (%s, %s, timeout %.0f s)", rank, world, backend, device, timeout_s)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, device)


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_main_process() -> bool:
    """True on the process that writes files: rank 0, or the only process."""
    return not (dist.is_available() and dist.is_initialized()) or dist.get_rank() == 0


def local_batch_size(global_batch: int, world_size: int) -> int:
    if global_batch % world_size:
        raise ValueError(
            f"data.batch_size ({global_batch}) is the global batch and must be divisible by the number of "
            f"processes ({world_size}); e.g. data.batch_size={global_batch // world_size * world_size or world_size}"
        )
    return global_batch // world_size


def shard_of_batch(global_indices: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """This rank's part of one global batch: every ``world_size``-th index from ``rank`` (DistributedSampler's
    interleaving), so the union over ranks is exactly the global batch."""
    return global_indices[rank::world_size]


def mean_over_ranks(value: torch.Tensor) -> torch.Tensor:
    """Average a tensor over all ranks (identity in a single process)."""
    if not (dist.is_available() and dist.is_initialized()):
        return value
    value = value.detach().clone()
    dist.all_reduce(value, op=dist.ReduceOp.SUM)
    return value / dist.get_world_size()


def distributed_nll(
    model, images: torch.Tensor, labels: torch.Tensor | None, batch_size: int, ctx: DistContext
) -> NLLResult:
    """Exact mean NLL of ``images`` with each rank scoring a contiguous slice; the float64 NLL sum and the
    image count are all-reduced, so the result equals ``dataset_nll`` on one process (to float64 rounding)."""
    if not ctx.enabled:
        return dataset_nll(model, images, labels, batch_size)
    n = len(images)
    if n == 0:
        raise ValueError("cannot evaluate on an empty set of images")
    start, stop = n * ctx.rank // ctx.world_size, n * (ctx.rank + 1) // ctx.world_size
    total = torch.zeros(2, dtype=torch.float64, device=ctx.device)  # [NLL sum in nats, images]
    if stop > start:
        part = dataset_nll(model, images[start:stop], None if labels is None else labels[start:stop], batch_size)
        total[0], total[1] = part.nll_nats * part.num_images, part.num_images
    dist.all_reduce(total, op=dist.ReduceOp.SUM)
    nats, count = total[0].item() / total[1].item(), int(total[1].item())
    return NLLResult(nll_nats=nats, bits_per_dim=bits_per_dim(nats, model.num_dims), num_images=count)
