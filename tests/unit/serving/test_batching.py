"""Micro-batching and the adaptive thread budget, with a controllable forward pass."""

from __future__ import annotations

import ctypes
import multiprocessing
import threading

import pytest
import torch

from classifier.serving.batching import MicroBatcher, ThreadBudget

DEADLINE_S = 10


class GatedForward:
    """Doubles its inputs; the first call blocks until released, so a queue can build up."""

    def __init__(self):
        self.entered = threading.Event()
        self.release = threading.Event()
        self.batch_sizes: list[int] = []

    def __call__(self, tensors):
        self.batch_sizes.append(len(tensors))
        if len(self.batch_sizes) == 1:
            self.entered.set()
            assert self.release.wait(DEADLINE_S)
        return torch.stack(tensors) * 2


def test_queued_requests_run_as_one_batch_in_order():
    forward = GatedForward()
    batcher = MicroBatcher(forward, max_batch_size=8).start()
    try:
        first = batcher.submit(torch.tensor([1.0]))
        assert forward.entered.wait(DEADLINE_S)
        rest = [batcher.submit(torch.tensor([float(i)])) for i in range(2, 6)]
        forward.release.set()
        results = [f.result(DEADLINE_S) for f in [first, *rest]]
    finally:
        batcher.stop(DEADLINE_S)
    assert forward.batch_sizes == [1, 4]
    assert [float(r) for r in results] == [2.0, 4.0, 6.0, 8.0, 10.0]


def test_batches_never_exceed_the_maximum():
    forward = GatedForward()
    batcher = MicroBatcher(forward, max_batch_size=3).start()
    try:
        futures = [batcher.submit(torch.tensor([0.0]))]
        assert forward.entered.wait(DEADLINE_S)
        futures += [batcher.submit(torch.tensor([float(i)])) for i in range(7)]
        forward.release.set()
        for future in futures:
            future.result(DEADLINE_S)
    finally:
        batcher.stop(DEADLINE_S)
    assert forward.batch_sizes == [1, 3, 3, 1]


def test_a_failing_batch_fails_only_its_requests():
    calls = []

    def forward(tensors):
        calls.append(len(tensors))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return torch.stack(tensors)

    batcher = MicroBatcher(forward, max_batch_size=4).start()
    try:
        with pytest.raises(RuntimeError, match="boom"):
            batcher.submit(torch.tensor([1.0])).result(DEADLINE_S)
        assert float(batcher.submit(torch.tensor([3.0])).result(DEADLINE_S)) == 3.0
        assert batcher.alive
    finally:
        batcher.stop(DEADLINE_S)


def test_stop_finishes_queued_work_and_refuses_new():
    forward = GatedForward()
    batcher = MicroBatcher(forward, max_batch_size=2).start()
    first = batcher.submit(torch.tensor([1.0]))
    assert forward.entered.wait(DEADLINE_S)
    second = batcher.submit(torch.tensor([2.0]))
    stopper = threading.Thread(target=batcher.stop, args=(DEADLINE_S,))
    stopper.start()
    forward.release.set()
    stopper.join(DEADLINE_S)
    assert float(first.result(DEADLINE_S)) == 2.0
    assert float(second.result(DEADLINE_S)) == 4.0
    assert not batcher.alive
    with pytest.raises(RuntimeError, match="not running"):
        batcher.submit(torch.tensor([0.0]))


def test_budget_gives_a_lone_worker_every_core_and_splits_under_load():
    flags = multiprocessing.RawArray(ctypes.c_uint8, 2)
    first = ThreadBudget(2, busy_flags=flags, slot=0)
    second = ThreadBudget(2, busy_flags=flags, slot=1)
    assert first.begin() == 2
    assert second.begin() == 1, "both busy: one core each"
    first.end()
    assert second.begin() == 2, "alone again"
    second.end()
    assert list(flags) == [0, 0]


def test_budget_flags_are_shared_across_fork():
    flags = multiprocessing.RawArray(ctypes.c_uint8, 2)
    context = multiprocessing.get_context("fork")
    child = context.Process(target=ThreadBudget(4, busy_flags=flags, slot=1).begin)
    child.start()
    child.join(DEADLINE_S)
    assert child.exitcode == 0
    assert ThreadBudget(4, busy_flags=flags, slot=0).begin() == 2


def test_fixed_threads_and_workers_without_a_slot():
    flags = multiprocessing.RawArray(ctypes.c_uint8, 4)
    assert ThreadBudget(8, fixed_threads=3, busy_flags=flags, slot=0).begin() == 3
    assert list(flags) == [0, 0, 0, 0]
    assert ThreadBudget(8, busy_flags=flags, slot=None).begin() == 2
    assert ThreadBudget(8).begin() == 8


def test_batcher_sets_the_budgeted_threads_around_each_forward():
    seen = []
    flags = multiprocessing.RawArray(ctypes.c_uint8, 2)
    flags[1] = 1  # another worker is busy

    def forward(tensors):
        seen.append((torch.get_num_threads(), flags[0]))
        return torch.stack(tensors)

    previous = torch.get_num_threads()
    batcher = MicroBatcher(forward, 4, budget=ThreadBudget(2, busy_flags=flags, slot=0)).start()
    try:
        batcher.submit(torch.tensor([1.0])).result(DEADLINE_S)
        flags[1] = 0
        batcher.submit(torch.tensor([1.0])).result(DEADLINE_S)
    finally:
        batcher.stop(DEADLINE_S)
        torch.set_num_threads(previous)
    assert seen == [(1, 1), (2, 1)]
    assert flags[0] == 0, "idle once the queue is empty"
