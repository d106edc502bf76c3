"""Data-parallel training on ``torch.distributed``: one process per GPU (NCCL), or several CPU processes (Gloo).

A run is distributed when it runs inside a process group: under ``torchrun`` (the offline training command), or
when the server's Train spawns one process per visible GPU (:func:`spawn`). Every process trains the same network
(``DistributedDataParallel`` averages the gradients) on its own shard of the training cases, so each samples its
own share of patches. Validation is shared out too: each process validates its own cases and MONAI's metrics
gather the Dice of all, so every process keeps the same best weights. Process 0 alone writes the run's stats and
publishes, once, after every process has reached the end of the run (:func:`all_finished`). Decisions that end
training (the time budget) are taken together (:func:`any_process`), so no process waits for a peer that stopped.

A process that dies fails the run: its peers' next collective call fails (Gloo) or times out (NCCL, after
``TIMEOUT``), and ``torchrun`` or :func:`spawn` ends the others, so nothing is published.
"""

from __future__ import annotations

import ctypes
import datetime
import faulthandler
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import ignite.distributed
import torch
import torch.distributed as dist
from monai.data import partition_dataset

logger = logging.getLogger(__name__)

TIMEOUT = datetime.timedelta(minutes=10)  # a collective call waits this long for a silent peer
_PR_SET_PDEATHSIG = 1

T = TypeVar("T")


@dataclass(frozen=True)
class World:
    """Where this process stands in its run's process group.

    Attributes:
        rank: this process's rank, 0 to ``size - 1``; rank 0 validates, writes stats and publishes.
        size: the number of processes training together.
        local_rank: the rank on this machine, which picks this process's GPU.
    """

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.size > 1

    def device(self, device: torch.device) -> torch.device:
        """This process's device: its own GPU in a distributed CUDA run, else ``device``."""
        return torch.device("cuda", self.local_rank) if self.distributed and device.type == "cuda" else device


SINGLE = World()


def current_world() -> World:
    """The process group this process belongs to, or :data:`SINGLE` when it trains alone."""
    if not (dist.is_available() and dist.is_initialized()):
        return SINGLE
    rank = dist.get_rank()
    return World(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)))


def backend(device: torch.device) -> str:
    """NCCL between GPUs, Gloo between CPU processes."""
    return "nccl" if device.type == "cuda" else "gloo"


def join_from_environment(device: torch.device) -> World:
    """Join the process group that ``torchrun`` describes in the environment (``RANK``, ``WORLD_SIZE``,
    ``MASTER_ADDR``...); :data:`SINGLE`, joining nothing, outside ``torchrun`` or with one process."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        return current_world()
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("a distributed CUDA run needs a GPU in every process; use --conf device cpu for Gloo")
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend(device), timeout=TIMEOUT)
    ignite.distributed.sync()  # ignite's own view of the group, made by every process together (MONAI Label does too)
    world = current_world()
    logger.info("Process %d of %d joined the run (%s)", world.rank, world.size, backend(device))
    return world


def leave() -> None:
    """Leave the process group, if this process is in one.

    The run's ``DistributedDataParallel`` wrappers sit in reference cycles (ignite's engines and their handlers) and
    hold the group: collected first, so that Gloo's group and its threads end here, while the interpreter is whole.
    Left to the interpreter's own shutdown they end during finalization, where Gloo can abort the process (SIGABRT,
    "terminate called without an active exception") after a run that succeeded."""
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.destroy_process_group()
        gc.collect()


def _flag(value: bool) -> torch.Tensor:
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    return torch.tensor([int(value)], device=device)


def any_process(value: bool) -> bool:
    """Whether ``value`` is true in any process of the run (every process must call this at the same point)."""
    if not current_world().distributed:
        return value
    flag = _flag(value)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    return bool(flag.item())


def all_finished() -> None:
    """Return once every process of the run has reached this point; raises when a peer has died."""
    if current_world().distributed:
        any_process(False)


def shard(items: Sequence[T], world: World, equal: bool) -> list[T]:
    """This process's share of ``items`` (MONAI's ``partition_dataset``).

    ``equal``: every process gets the same number, some items repeated to make up the count, so every process runs
    as many training iterations as the others (DDP requires it). Otherwise each item goes to exactly one process,
    so that metrics gathered over the processes count every case once. With fewer items than processes every
    process gets them all (a mean over whole copies of the list is the list's mean).
    """
    if not world.distributed or len(items) < world.size:
        return list(items)
    return list(partition_dataset(list(items), num_partitions=world.size, even_divisible=equal)[world.rank])


def unwrap(network: torch.nn.Module) -> torch.nn.Module:
    """The network inside a ``DistributedDataParallel`` wrapper (its weights, without the ``module.`` prefix)."""
    return network.module if isinstance(network, torch.nn.parallel.DistributedDataParallel) else network


def data_parallel(network: torch.nn.Module, world: World) -> torch.nn.Module:
    """``network`` wrapped for a distributed run (gradients averaged over the processes); as is otherwise.

    Buffers are not broadcast: the networks normalise with group or instance norm, and a forward pass in one
    process alone (process 0's validation) must not wait for the others."""
    if not world.distributed:
        return network
    device = next(network.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(network, device_ids=ids, broadcast_buffers=False)


def visible_gpus() -> int:
    """The GPUs this process may use."""
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """Have Linux kill this process when the process that spawned it ends (Stop, or its server's end)."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _spawned(rank: int, size: int, port: int, device_type: str, fn: Callable[..., Any], args: tuple) -> None:
    _die_with_parent()
    faulthandler.enable()  # a crash in native code prints every thread's Python stack to stderr
    os.environ.update(
        {"RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(size)},
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    logging.basicConfig(level=logging.INFO, format=f"[rank {rank}] %(asctime)s %(levelname)s %(name)s - %(message)s")
    world = join_from_environment(torch.device(device_type))
    try:
        fn(world, *args)
    finally:
        leave()


def spawn(fn: Callable[..., Any], size: int, device_type: str, *args: Any) -> None:
    """Run ``fn(world, *args)`` in ``size`` new processes on this machine, in one process group.

    Returns when all have finished; raises when any fails, after ending the others. The processes die with this
    one (so Stop, which kills the training job, ends them all). ``fn`` and ``args`` must be picklable.
    """
    import torch.multiprocessing as mp

    logger.info("Training in %d processes (%s)", size, backend(torch.device(device_type)))
    mp.spawn(_spawned, args=(size, _free_port(), device_type, fn, args), nprocs=size, join=True)
