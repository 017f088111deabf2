"""PyTorch's own distributed engine, as launched by ``torchrun``.

``torchrun --nproc-per-node N -m medassist train ...`` sets RANK/WORLD_SIZE/MASTER_ADDR/PORT;
``init_from_env`` joins the process group (gloo on CPU, NCCL on GPU). The Trainer then wraps the
model in DistributedDataParallel, gives each rank an equal slice of every global batch, and only
rank 0 writes checkpoints, reports and bundles.
"""

from __future__ import annotations

import atexit
import gc
import os

import torch
import torch.distributed as dist


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def is_main() -> bool:
    """True on rank 0 (and in a plain single process): the one that writes files."""
    return rank() == 0


def init_from_env() -> bool:
    """Join the process group when launched by torchrun with more than one process."""
    if is_distributed() or int(os.environ.get("WORLD_SIZE", "1")) <= 1 or "RANK" not in os.environ:
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend=backend)
    atexit.register(shutdown)  # also on a run that never calls it (an error, or a command that returns early)
    return True


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def shutdown() -> None:
    """Leave the process group and free the backend's worker threads, and the tensors their finished work
    still holds, while the interpreter is fully alive: a Gloo thread that releases a tensor during
    interpreter shutdown aborts the process ("terminate called without an active exception"), and torchrun
    then reports a finished run as failed. Safe to call twice; no barrier (a rank that died must not hang
    the others here: callers that need one call :func:`barrier` first)."""
    if is_distributed():
        dist.destroy_process_group()
        gc.collect()
