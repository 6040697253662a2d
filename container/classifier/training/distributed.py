"""One torch.distributed job across SageMaker hosts × local processes.

Ranks are laid out host by host in sorted host order, so the first sorted host holds rank
0 (the master, and the only rank that writes the model and reports).
"""

from __future__ import annotations

import datetime
import logging
import os
import socket
from dataclasses import dataclass

import torch
import torch.distributed as dist

logger = logging.getLogger(__name__)

INIT_TIMEOUT = datetime.timedelta(minutes=10)


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def backend(self) -> str:
        return "nccl" if self.device.type == "cuda" else "gloo"


def _interface_exists(name: str) -> bool:
    return any(interface == name for _, interface in socket.if_nameindex())


def setup(
    host_rank: int,
    local_rank: int,
    processes_per_host: int,
    num_hosts: int,
    master_addr: str,
    master_port: int,
    network_interface: str | None = None,
) -> DistributedContext:
    """Join the process group (when there is more than one process) and pick the device."""
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    world_size = num_hosts * processes_per_host
    rank = host_rank * processes_per_host + local_rank
    context = DistributedContext(rank, local_rank, world_size, device)
    if context.enabled:
        if network_interface and _interface_exists(network_interface):
            # SageMaker names the interface in resourceconfig.json; both backends need it.
            # SDK local mode names "ethwe", which compose containers lack: then let gloo choose.
            os.environ.setdefault("GLOO_SOCKET_IFNAME", network_interface)
            os.environ.setdefault("NCCL_SOCKET_IFNAME", network_interface)
        logger.info(
            "joining %s process group: rank %d of %d, master %s:%d",
            context.backend,
            rank,
            world_size,
            master_addr,
            master_port,
        )
        dist.init_process_group(
            backend=context.backend,
            init_method=f"tcp://{master_addr}:{master_port}",
            rank=rank,
            world_size=world_size,
            timeout=INIT_TIMEOUT,
        )
    return context


def barrier(context: DistributedContext) -> None:
    """Wait for every rank; compose and SageMaker stop the other hosts when one exits."""
    if context.enabled:
        dist.barrier()


def teardown(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()


def all_sum(context: DistributedContext, values: list[float]) -> list[float]:
    """Sum numbers over all ranks (loss sums, correct counts, sample counts)."""
    if not context.enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=context.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.tolist()


def all_gather(context: DistributedContext, obj):
    """A list with every rank's ``obj`` (rank order)."""
    if not context.enabled:
        return [obj]
    gathered = [None] * context.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def any_rank_each(context: DistributedContext, flags: list[bool]) -> list[bool]:
    """For each flag, whether it is set on any rank: one all-reduce for all of them, so the
    ranks agree on every per-step decision and stay in step."""
    if not context.enabled:
        return list(flags)
    return [total > 0 for total in all_sum(context, [1.0 if flag else 0.0 for flag in flags])]


def any_rank(context: DistributedContext, flag: bool) -> bool:
    """True if ``flag`` is set on any rank, so all ranks leave the loop at the same step."""
    if not context.enabled:
        return flag
    return all_sum(context, [1.0 if flag else 0.0])[0] > 0
