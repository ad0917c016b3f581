"""Multi-GPU / multi-node training with torchrun and DistributedDataParallel.

Launch (one process per GPU; torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT):

    torchrun --nproc_per_node=4 -m mot_reid.cli train --config configs/reid/<recipe>.yaml --data ROOT
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=8 --rdzv_backend=c10d \\
             --rdzv_endpoint=HOST:29500 -m mot_reid.cli train ...        # on every node

Design:
- Batches: the recipe's P x K is the GLOBAL batch (the size the paper's LR was tuned for); each
  rank trains on P/world whole identities x K images of it, so the batch-hard triplet loss sees
  complete identities (K-1 positives per anchor) on every rank. All ranks draw the same global
  schedule from (seed, epoch), so they stay in step and together cover the epoch that `data.sampler`
  defines (each identity once, or the reference code's chunks of K images).
- Gradients are averaged by DDP; because every rank's batch has the same size, the averaged ID and
  center-loss gradients equal the single-process ones over the global batch. The center loss's
  centers are not in the DDP model: average their gradients with `average_gradients` before the
  center optimizer steps (or the ranks' centers drift apart).
- BatchNorm: on CUDA with more than one rank, `prepare_model` converts every BatchNorm (backbone
  and BNNeck) to SyncBatchNorm, so statistics come from the global batch as on one GPU; the BNNeck
  would otherwise normalise with P/world x K samples per rank (8 at P=16 on 8 GPUs). Its frozen bias
  stays frozen (the conversion reuses the same Parameter). gloo/CPU has no SyncBatchNorm kernel:
  there each rank normalises its own batch and DDP broadcasts rank 0's running statistics.
- Checkpoints: rank 0 writes (`save_on_main`), every rank waits, and every rank can load the file;
  augmentations are reseeded from (seed, rank, epoch) so a resume needs no per-rank RNG states.
- Logged losses are averaged over ranks (`all_reduce_mean`, once per epoch). Evaluation runs on
  rank 0 alone (a Market-1501-sized test set takes seconds on one GPU); the other ranks wait for it
  in their next collective. If one rank fails, the others wait until the backend's timeout (NCCL
  10 min, gloo 30 min) unless torchrun, seeing the failed process, ends them first (it does).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from mot_reid.atomic import atomic_path
from mot_reid.errors import UserError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None
    owns_group: bool = False  # this process group was started here (by `init_from_env`): `cleanup` ends it

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise UserError(f"environment variable {name}={value!r} is not an integer") from None


def init_from_env(device_type: str | None = None) -> DistContext:
    """Join the process group torchrun describes in the environment (RANK, WORLD_SIZE, LOCAL_RANK);
    a plain single process when WORLD_SIZE is unset or 1.

    Backend: nccl when the training device is CUDA, gloo otherwise. `device_type` defaults to cuda
    when it is available. On CUDA the process binds to GPU `LOCAL_RANK`.
    """
    world_size = _env_int("WORLD_SIZE", 1)
    local_rank = _env_int("LOCAL_RANK", 0)
    if world_size <= 1:
        return DistContext()
    if dist.is_initialized():  # the caller's group (a launcher or a test): use it, leave it running
        return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, dist.get_backend())
    if device_type is None:
        device_type = "cuda" if torch.cuda.is_available() else "cpu"
    if device_type == "cuda":
        if not torch.cuda.is_available():
            raise UserError("distributed training on CUDA was asked for, but CUDA is not available here")
        if local_rank >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK {local_rank} but only {torch.cuda.device_count()} GPU(s) here; "
                            "lower --nproc_per_node")
        torch.cuda.set_device(local_rank)
        dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank))
    else:
        dist.init_process_group("gloo")  # rank and world size come from RANK / WORLD_SIZE (env://)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, dist.get_backend(), owns_group=True)


def launched_rank() -> int:
    """The rank torchrun gave this process (0 when not launched by it); readable after `cleanup`."""
    return _env_int("RANK", 0)


def device_for(ctx: DistContext, name: str = "auto") -> torch.device:
    """The training device of this rank: `cuda:LOCAL_RANK` for CUDA under DDP, else `name` resolved."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda" and ctx.distributed:
        return torch.device("cuda", ctx.local_rank)
    return device


def cleanup(ctx: DistContext) -> None:
    """End the process group if `init_from_env` started it."""
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def _active() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if _active() else 0


def get_world_size() -> int:
    return dist.get_world_size() if _active() else 1


def is_main_process() -> bool:
    """True on rank 0 (and in a plain single process): the one that logs, evaluates and writes files."""
    return get_rank() == 0


def barrier() -> None:
    if _active() and get_world_size() > 1:
        dist.barrier()


# ---------------------------------------------------------------- batches

def ids_per_rank(ids_per_batch: int, world_size: int) -> int:
    """P per rank for a global P: whole identities only, and at least 2 (batch-hard mining needs negatives)."""
    if ids_per_batch % world_size:
        raise UserError(f"data.ids_per_batch={ids_per_batch} cannot be split into whole identities over "
                        f"{world_size} processes; use a multiple of {world_size}")
    per_rank = ids_per_batch // world_size
    if per_rank < 2:
        raise UserError(f"data.ids_per_batch={ids_per_batch} over {world_size} processes leaves {per_rank} "
                        "identity per process; the triplet loss needs at least 2: raise data.ids_per_batch")
    return per_rank


def rank_pk_sampler(pids: Sequence[int], ids_per_batch: int, images_per_id: int, seed: int = 0,
                    rank: int = 0, world_size: int = 1, mode: str = "identity"):
    """The PK batch sampler of one rank: `ids_per_batch / world_size` whole identities x K images of
    each global batch (the same global schedule on every rank, from seed and epoch). `mode` is the
    recipe's `data.sampler` (identity or reference epochs)."""
    from mot_reid.reid.sampler import PKSampler

    return PKSampler(pids, ids_per_rank(ids_per_batch, world_size), images_per_id, seed=seed,
                     world_size=world_size, rank=rank, mode=mode)


# ---------------------------------------------------------------- collectives

def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of `tensor` over ranks (the logged losses of the global batch); a copy, the input is left alone."""
    out = tensor.detach().clone()
    if _active() and get_world_size() > 1:
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        out /= get_world_size()
    return out


def average_gradients(params: Iterable[nn.Parameter]) -> None:
    """Average `.grad` over ranks in place (parameters outside DDP, e.g. the center loss's centers)."""
    if not _active() or get_world_size() == 1:
        return
    world = get_world_size()
    for param in params:
        if param.grad is not None:
            dist.all_reduce(param.grad, op=dist.ReduceOp.SUM)
            param.grad /= world


# ---------------------------------------------------------------- model

def prepare_model(model: nn.Module, ctx: DistContext, device: torch.device, sync_bn: str = "auto",
                  find_unused_parameters: bool = False) -> nn.Module:
    """Wrap `model` (already on `device`, channels_last/compiled as wanted) in DDP when distributed.

    sync_bn: auto = SyncBatchNorm on CUDA with world > 1; on / off force it (on needs CUDA).
    find_unused_parameters: some parameters get no gradient (costs a graph walk per step).
    Keep a reference to the unwrapped model: its state_dict keys have no `module.` prefix.
    """
    if not ctx.distributed:
        return model
    if sync_bn not in ("auto", "on", "off"):
        raise UserError(f"sync_bn must be auto, on or off, got {sync_bn!r}")
    if sync_bn == "on" or (sync_bn == "auto" and device.type == "cuda"):
        if device.type != "cuda":
            raise UserError("SyncBatchNorm needs CUDA; use sync_bn=off on CPU")
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=device_ids, gradient_as_bucket_view=True,
                                               find_unused_parameters=find_unused_parameters)


# ---------------------------------------------------------------- checkpoints

def save_on_main(obj, path: str | os.PathLike) -> bool:
    """`torch.save` on rank 0 only (the one process when not distributed), through a temp file and a
    rename, so a kill mid-write leaves the previous file intact; every rank then waits until the file
    is complete. Returns True on the rank that wrote."""
    wrote = False
    if is_main_process():
        with atomic_path(Path(path)) as tmp:
            torch.save(obj, tmp)
        wrote = True
    barrier()
    return wrote
