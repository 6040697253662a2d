"""Two real gloo ranks where only one meets bad data: they must stay in step, never hang."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from tests.helpers import free_port

pytestmark = pytest.mark.slow

STEPS = 4
JOIN_TIMEOUT_S = 120


def _batches(rank: int, scenario: str):
    from classifier.training.data import Batch

    generator = torch.Generator().manual_seed(rank)
    for step in range(STEPS):
        if scenario == "empty" and rank == 1 and step == 1:
            yield Batch(None, None, [])  # every image of this rank's batch was unreadable
            continue
        images = torch.randn(4, 3, 8, 8, generator=generator)
        if scenario == "nan" and rank == 1 and step == 1:
            images[0, 0, 0, 0] = math.nan
        yield Batch(images, torch.tensor([0, 1, 0, 1]), [])


class _Loader:
    def __init__(self, rank: int, scenario: str) -> None:
        self.rank, self.scenario = rank, scenario

    def __iter__(self):
        return _batches(self.rank, self.scenario)

    def __len__(self) -> int:
        return STEPS


def _rank_main(rank: int, port: int, scenario: str, out_dir: str) -> None:
    import torch.distributed as dist
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel

    from classifier.training import steps as train
    from classifier.training.distributed import DistributedContext
    from classifier.training.precision import Precision

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    ctx = DistributedContext(rank=rank, local_rank=rank, world_size=2)
    torch.manual_seed(0)
    model = DistributedDataParallel(nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, 2)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    # bf16 autocast with gradient clipping: the ranks keep in step under mixed precision too.
    precision = Precision("bf16", "test", channels_last=True)
    settings = train.StepSettings(precision, clip_grad_norm=1.0)
    outcome: dict = {}
    try:
        result = train.train_one_epoch(
            model,
            _Loader(rank, scenario),
            nn.CrossEntropyLoss(),
            optimizer,
            precision.grad_scaler(ctx.device),
            ctx,
            settings,
            train.StopSignal(),
        )
        outcome = {"samples": result.samples, "interrupted": result.interrupted}
    except train.TrainingDiverged as error:
        outcome = {"diverged": str(error)}
    finally:
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(outcome))
        dist.destroy_process_group()


def _run(scenario: str, tmp_path: Path) -> dict[int, dict]:
    context = mp.start_processes(
        _rank_main, args=(free_port(), scenario, str(tmp_path)), nprocs=2, join=False, start_method="spawn"
    )
    deadline = time.monotonic() + JOIN_TIMEOUT_S
    try:
        while not context.join(timeout=max(0.0, deadline - time.monotonic())):
            if time.monotonic() >= deadline:
                for process in context.processes:
                    process.kill()
                pytest.fail(f"the ranks were still running after {JOIN_TIMEOUT_S} s: out of step")
    except mp.ProcessExitedException as error:
        pytest.fail(f"a rank died: {error}")
    return {rank: json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)}


def test_a_batch_empty_on_one_rank_is_skipped_by_every_rank(tmp_path):
    outcomes = _run("empty", tmp_path)
    # Both ranks skipped step 1 together; the summed samples are those of the 3 shared steps.
    assert outcomes[0] == outcomes[1] == {"samples": 2 * 3 * 4, "interrupted": False}


def test_a_nan_loss_on_one_rank_fails_every_rank_at_once(tmp_path):
    outcomes = _run("nan", tmp_path)
    assert "training loss became nan" in outcomes[1]["diverged"]
    assert "on another rank" in outcomes[0]["diverged"]


@pytest.mark.parametrize(
    ("processes", "host_threads", "environ", "expected"),
    [(2, 2, {}, 1), (2, 16, {}, 8), (4, 2, {}, 1), (3, 8, {}, 2), (2, 8, {"OMP_NUM_THREADS": "3"}, None)],
)
def test_local_processes_share_the_hosts_threads_unless_the_caller_set_them(
    processes, host_threads, environ, expected
):
    from classifier.training.launcher import threads_per_process

    assert threads_per_process(processes, host_threads, environ) == expected
