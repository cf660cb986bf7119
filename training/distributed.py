"""Data-parallel bookkeeping: which process this is, on which device, and how ranks agree.

Started by `torchrun --standalone --nproc_per_node=N train.py ...`, every process reads RANK,
LOCAL_RANK and WORLD_SIZE from the environment and joins one process group: NCCL on GPUs, gloo on
CPU. Started plainly (`python train.py ...`), the run is a world of one and nothing is
communicated.
"""

import contextlib
import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from core.errors import UserError
from core.hardware import resolve_device


@dataclass
class Distributed:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: str = "cpu"
    lost_peers: bool = False  # a collective failed: tearing the group down could wait on them again

    @property
    def is_master(self) -> bool:
        """Rank 0 alone logs, evaluates for the record, and writes checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    def sum(self, values: list[float]) -> list[float]:
        """Element-wise sum of `values` over all ranks (the values themselves in a world of one)."""
        if not self.enabled:
            return list(values)
        tensor = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor.tolist()

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def close(self) -> None:
        if self.enabled and dist.is_initialized() and not self.lost_peers:
            dist.destroy_process_group()


def init_distributed(device: str, backend: str, timeout_s: float = 600.0) -> Distributed:
    """Join the process group if torchrun started us; pick this rank's device either way.

    timeout_s bounds every collective: a rank that dies or hangs makes the others fail after at most
    this long (gloo raises; NCCL's watchdog aborts the process) instead of waiting forever."""
    if "RANK" not in os.environ:
        return Distributed(device=resolve_device(device))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    device = resolve_device(device)
    if device.startswith("cuda"):
        device = f"cuda:{local_rank}"  # one GPU per process
        torch.cuda.set_device(device)
    else:
        backend = "gloo"  # NCCL needs GPUs
    dist.init_process_group(backend=backend, rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=timeout_s))
    return Distributed(rank, local_rank, world_size, device)


# What the backends say when a peer is gone: gloo's timeouts and closed connections, NCCL's watchdog.
LOST_PEER_SIGNS = ("timed out", "timeout", "connection closed", "connection reset", "broken pipe",
                   "peer", "nccl")


@contextlib.contextmanager
def collective_failures_reported(dist_info: Distributed, timeout_s: float):
    """Turn a failed or timed-out collective into one line saying which rank gave up and why,
    rather than a traceback per rank (or a hang, which the process group's timeout prevents)."""
    try:
        yield
    except (dist.DistError, RuntimeError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        lost = isinstance(error, dist.DistError) or any(s in message.lower() for s in LOST_PEER_SIGNS)
        if not dist_info.enabled or not lost:
            raise
        dist_info.lost_peers = True
        raise UserError(f"rank {dist_info.rank}: lost the other ranks (a collective failed or waited over "
                        f"collective_timeout_s={timeout_s:g}; did a rank die or hang?): {message[:200]}")
