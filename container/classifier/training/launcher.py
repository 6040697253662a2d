"""One process per GPU on each host, each running the job; SIGTERM reaches every one of them.

Why ``torch.multiprocessing.start_processes`` and not torchrun / ``elastic_launch``: SageMaker
fixes the hosts and their order before the container starts (resourceconfig.json), and retries
a failed job as a whole, resuming from its checkpoint. torchrun's elastic agent is made for
the opposite case: it runs a rendezvous store of its own and restarts worker groups when
membership changes (``max_restarts``), a second failure policy beside SageMaker's. What the
agent would still give us, spawning and SIGTERM forwarding, is the dozen lines below.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable

from classifier import constants, redaction
from classifier.training import job_outputs
from classifier.training.environment import TrainingEnvironment
from classifier.training.hyperparameters import Hyperparameters

EXIT_SIGTERM = constants.EXIT_SIGTERM


class TrainingInterrupted(RuntimeError):
    """SIGTERM arrived (spot interruption, StopTrainingJob, docker stop); a checkpoint was saved."""


def configure_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def threads_per_process(processes_per_host: int, host_threads: int, environ: dict[str, str]) -> int | None:
    """The host's CPU threads shared out among its local processes; None where the caller set
    OMP_NUM_THREADS (it then applies to each process, as under torchrun).

    torch sizes each process's OpenMP pool to every core: two processes on a 2-core host put four
    threads that spin at their barriers on two cores. torchrun sets 1 per process; an equal share
    keeps the host's cores busy with fewer processes than cores.
    """
    if "OMP_NUM_THREADS" in environ:
        return None
    return max(1, host_threads // processes_per_host)


def _spawned(
    local_rank: int,
    target: Callable,
    env: TrainingEnvironment,
    hp: Hyperparameters,
    processes_per_host: int,
    threads: int | None,
) -> None:
    redaction.install(os.environ)  # a spawned interpreter: the parent's streams are not ours
    configure_logging()
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    try:
        target(env, hp, local_rank, processes_per_host)
    except TrainingInterrupted as error:
        if local_rank == 0 and env.host_rank == 0:
            job_outputs.write_failure(env.failure_file, error)
        sys.exit(EXIT_SIGTERM)
    except BaseException as error:
        if not env.failure_file.exists():
            job_outputs.write_failure(env.failure_file, error)
        raise


def run_processes(
    target: Callable, env: TrainingEnvironment, hp: Hyperparameters, processes_per_host: int
) -> None:
    """``target(env, hp, local_rank, processes_per_host)`` in each local process."""
    if processes_per_host == 1:
        target(env, hp, 0, 1)
        return
    import torch
    import torch.multiprocessing as mp

    threads = threads_per_process(processes_per_host, torch.get_num_threads(), dict(os.environ))
    context = mp.start_processes(
        _spawned,
        args=(target, env, hp, processes_per_host, threads),
        nprocs=processes_per_host,
        join=False,
        start_method="spawn",
    )

    def forward(signum, frame):
        for process in context.processes:
            if process.is_alive():
                process.terminate()

    signal.signal(signal.SIGTERM, forward)
    try:
        while not context.join():
            pass
    except mp.ProcessExitedException as error:
        if error.exit_code == EXIT_SIGTERM:
            raise TrainingInterrupted(
                f"SIGTERM: worker processes stopped after checkpointing to {env.checkpoint_dir}"
            ) from error
        raise
