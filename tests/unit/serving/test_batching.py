"""Micro-batching and the adaptive thread budget, with a controllable forward pass."""

from __future__ import annotations

import ctypes
import multiprocessing
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError

import pytest
import torch

from classifier.serving.batching import BatchTimeout, MicroBatcher, ThreadBudget

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


def _queued(batcher: MicroBatcher, value):
    return batcher.submit(value).result(DEADLINE_S)


def _run_now(batcher: MicroBatcher, value):
    return batcher.run([value])[0]


@pytest.mark.parametrize("call", [_queued, _run_now], ids=["queued", "in-the-callers-thread"])
def test_a_failing_batch_fails_only_its_requests(call):
    calls = []

    def forward(tensors):
        calls.append(len(tensors))
        if len(calls) == 1:
            raise RuntimeError("boom")
        return torch.stack(tensors)

    batcher = MicroBatcher(forward, max_batch_size=4).start()
    try:
        with pytest.raises(RuntimeError, match="boom"):
            call(batcher, torch.tensor([1.0]))
        assert float(call(batcher, torch.tensor([3.0]))) == 3.0
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
    budget = ThreadBudget(2, busy_flags=flags, slot=0)
    batcher = MicroBatcher(forward, 4, budget=budget, set_threads=torch.set_num_threads).start()
    try:
        batcher.submit(torch.tensor([1.0])).result(DEADLINE_S)
        flags[1] = 0
        batcher.submit(torch.tensor([1.0])).result(DEADLINE_S)
    finally:
        batcher.stop(DEADLINE_S)
        torch.set_num_threads(previous)
    assert seen == [(1, 1), (2, 1)]
    assert flags[0] == 0, "idle once the queue is empty"


def _poll(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.001)


class ThreadRecordingForward(GatedForward):
    """A GatedForward that also records which thread ran each batch."""

    def __init__(self):
        super().__init__()
        self.threads: list[str] = []

    def __call__(self, tensors):
        self.threads.append(threading.current_thread().name)
        return super().__call__(tensors)


def test_a_lone_call_runs_in_the_callers_thread_without_a_hand_off():
    forward = ThreadRecordingForward()
    forward.release.set()
    batcher = MicroBatcher(forward, max_batch_size=2).start()
    try:
        rows = batcher.run([torch.tensor([1.0]), torch.tensor([2.0]), torch.tensor([3.0])])
    finally:
        batcher.stop(DEADLINE_S)
    assert [float(row) for row in rows] == [2.0, 4.0, 6.0]
    assert forward.batch_sizes == [2, 1], "in batches of at most max_batch_size"
    assert forward.threads == [threading.current_thread().name] * 2


def test_calls_while_the_engine_is_busy_queue_up_and_run_as_one_batch():
    forward = ThreadRecordingForward()
    batcher = MicroBatcher(forward, max_batch_size=8, name="the-batcher").start()
    queued = []
    submit = batcher.submit
    batcher.submit = lambda value: (submit(value), queued.append(value))[0]
    with ThreadPoolExecutor(4, thread_name_prefix="caller") as pool:
        try:
            first = pool.submit(batcher.run, [torch.tensor([1.0])])
            assert forward.entered.wait(DEADLINE_S), "the first call runs at once"
            rest = [pool.submit(batcher.run, [torch.tensor([float(i)])]) for i in (2, 3, 4)]
            _poll(lambda: len(queued) == 3, "the three later calls are queued")
            forward.release.set()
            results = [future.result(DEADLINE_S) for future in [first, *rest]]
        finally:
            forward.release.set()
            batcher.stop(DEADLINE_S)
    assert [float(rows[0]) for rows in results] == [2.0, 4.0, 6.0, 8.0]
    assert forward.batch_sizes == [1, 3]
    assert forward.threads[0].startswith("caller") and forward.threads[1] == "the-batcher"


def test_a_queued_call_times_out_and_its_input_is_never_computed():
    forward = GatedForward()
    batcher = MicroBatcher(forward, max_batch_size=8).start()
    with ThreadPoolExecutor(1) as pool:
        try:
            first = pool.submit(batcher.run, [torch.tensor([1.0])])
            assert forward.entered.wait(DEADLINE_S)
            with pytest.raises(BatchTimeout):
                batcher.run([torch.tensor([2.0])], timeout=0.01)
            forward.release.set()
            assert float(first.result(DEADLINE_S)[0]) == 2.0
            assert float(batcher.run([torch.tensor([5.0])])[0]) == 10.0
        finally:
            forward.release.set()
            batcher.stop(DEADLINE_S)
    assert forward.batch_sizes == [1, 1], "the timed-out input was skipped"


def test_a_call_in_the_callers_thread_marks_the_worker_idle_again_and_stop_waits_for_it():
    flags = multiprocessing.RawArray(ctypes.c_uint8, 2)
    forward = GatedForward()
    batcher = MicroBatcher(forward, 4, budget=ThreadBudget(2, busy_flags=flags, slot=0)).start()
    with ThreadPoolExecutor(2) as pool:
        running = pool.submit(batcher.run, [torch.tensor([1.0])])
        assert forward.entered.wait(DEADLINE_S)
        assert flags[0] == 1, "busy while its pass runs"
        stopping = pool.submit(batcher.stop, DEADLINE_S)
        _poll(lambda: not batcher.alive, "stop() began")
        with pytest.raises(FutureTimeoutError):  # stop() waits for the pass in a caller's thread
            stopping.result(timeout=0.3)
        forward.release.set()
        assert float(running.result(DEADLINE_S)[0]) == 2.0
        stopping.result(DEADLINE_S)
    assert flags[0] == 0, "idle again once the pass ended"
