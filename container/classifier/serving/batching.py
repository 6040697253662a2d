"""Micro-batching and the share of cores each forward pass may use.

Request threads decode and prepare their image, then call :meth:`MicroBatcher.run`. When
the engine is idle and nothing is queued, the caller runs its own forward pass in its own
thread: a lone request pays no hand-off to another thread (1.4 ms of a 4.3 ms request,
measured at batch 1). Otherwise its inputs join the queue of the worker's one batcher
thread, which takes everything queued (up to ``max_batch_size``, optionally waiting
``max_delay_s`` for more) and runs it as one forward pass; while it runs, the next batch
gathers, so under load the batch grows by itself. One lock keeps the engine to one
forward pass at a time, whichever thread runs it.

:class:`ThreadBudget` keeps workers × intra-op threads within the cores: it counts the
busy workers through flags in shared memory made by the gunicorn master before fork,
so a request alone gets every core and two busy workers get half each.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections.abc import Callable, MutableSequence, Sequence
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any

from classifier.serving import metrics

logger = logging.getLogger(__name__)


class ThreadBudget:
    """How many intra-op threads the next forward pass of this worker may use."""

    def __init__(
        self,
        cpu_count: int,
        fixed_threads: int | None = None,
        busy_flags: MutableSequence[int] | None = None,
        slot: int | None = None,
    ):
        self.cpu_count = max(1, cpu_count)
        self.fixed_threads = fixed_threads
        self.busy_flags = busy_flags
        self.slot = slot
        self._fallback = max(1, self.cpu_count // (len(busy_flags) if busy_flags else 1))

    @property
    def shared(self) -> bool:
        return self.busy_flags is not None and self.slot is not None

    def begin(self) -> int:
        """Mark this worker busy; the threads to use now."""
        if self.fixed_threads is not None:
            return self.fixed_threads
        flags, slot = self.busy_flags, self.slot
        if flags is None or slot is None:
            # No slot (more workers than slots, e.g. after TTIN): assume all are busy.
            return self._fallback if flags else self.cpu_count
        flags[slot] = 1
        busy = sum(flags)
        return max(1, self.cpu_count // max(1, busy))

    def end(self) -> None:
        """Mark this worker idle, so the others may use its cores."""
        if self.busy_flags is not None and self.slot is not None and self.fixed_threads is None:
            self.busy_flags[self.slot] = 0


class BatchTimeout(TimeoutError):
    """Queued inputs got no result within the caller's timeout."""


class _Item:
    __slots__ = ("value", "future", "enqueued")

    def __init__(self, value: Any):
        self.value = value
        self.future: Future = Future()
        self.enqueued = time.perf_counter()


def _no_threads(threads: int) -> None:
    """The default ``set_threads``: a forward pass that sets no thread count."""


class MicroBatcher:
    """Runs inputs through ``forward`` in batches: one thread for the queue, and the caller's
    own thread when the engine is idle (see the module docstring).

    ``forward`` takes a list of inputs and returns one row of results per input, in order.
    A failure fails only the inputs of that batch.
    """

    def __init__(
        self,
        forward: Callable[[list], Any],  # a sequence or an array: one result per input
        max_batch_size: int,
        max_delay_s: float = 0.0,
        budget: ThreadBudget | None = None,
        name: str = "micro-batcher",
        set_threads: Callable[[int], None] = _no_threads,
    ):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.forward = forward
        self.set_threads = set_threads
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.budget = budget or ThreadBudget(os.cpu_count() or 1, fixed_threads=None)
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stopping = False
        # Held for each forward pass: the engine runs one batch at a time, in whichever thread.
        self._engine = threading.Lock()
        # Inputs submitted and not yet gathered into a batch (the queue's, and one the batcher
        # thread took while it waits for the engine): a caller runs its own pass only at 0, so
        # a queued input is never overtaken.
        self._pending = 0
        self._pending_lock = threading.Lock()
        # set_threads per thread: PyTorch's intra-op thread count is the calling thread's own.
        self._local = threading.local()

    def start(self) -> MicroBatcher:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping

    def submit(self, value: Any) -> Future:
        """Queue one input for the batcher thread; its future gets its row."""
        if not self.alive:
            raise RuntimeError("the micro-batcher is not running")
        item = _Item(value)
        self._count_pending(1)
        self._queue.put(item)
        return item.future

    def _count_pending(self, change: int) -> None:
        with self._pending_lock:
            self._pending += change

    def run(self, values: Sequence, timeout: float | None = None) -> list:
        """One row per input, in order: computed in this thread if the engine is idle and
        nothing is queued, else by the batcher thread (raising :class:`BatchTimeout` after
        ``timeout`` seconds). A forward pass that fails raises its error here."""
        if not self.alive:
            raise RuntimeError("the micro-batcher is not running")
        if self._pending == 0 and self._engine.acquire(blocking=False):
            try:
                if self._stopping:
                    raise RuntimeError("the micro-batcher is shutting down")
                rows: list = []
                for start in range(0, len(values), self.max_batch_size):
                    chunk = list(values[start : start + self.max_batch_size])
                    rows.extend(self._forward_batch(chunk, (0.0,) * len(chunk)))
                return rows
            finally:
                self._engine.release()
        futures = [self.submit(value) for value in values]
        try:
            return [future.result(timeout=timeout) for future in futures]
        except FutureTimeoutError as error:
            for future in futures:
                future.cancel()
            raise BatchTimeout(f"no result within {timeout:g} s") from error

    def _forward_batch(self, values: list, waits: Sequence[float]) -> Sequence:
        """``forward`` on the threads the budget allows now; the caller holds ``_engine``."""
        started = time.perf_counter()
        try:
            threads = self.budget.begin()
            if threads != getattr(self._local, "threads", None):
                self.set_threads(threads)
                self._local.threads = threads
            metrics.observe_batch(len(values), waits)
            rows = self.forward(values)
        finally:
            if self._pending == 0:
                self.budget.end()
        logger.debug(
            "batch of %d on %d threads: %.1f ms", len(values), threads, (time.perf_counter() - started) * 1000
        )
        return rows

    def stop(self, timeout: float | None = None) -> None:
        """Finish what is queued, then end the thread; a pass running in a caller's thread ends too."""
        self._stopping = True
        self._queue.put(None)
        self._thread.join(timeout)
        if self._engine.acquire(timeout=-1 if timeout is None else timeout):
            self._engine.release()

    def _gather(self, first: _Item) -> tuple[list[_Item], bool]:
        """The batch that starts with ``first``; True if a stop marker was seen."""
        batch = [first]
        deadline = time.monotonic() + self.max_delay_s
        while len(batch) < self.max_batch_size:
            try:
                remaining = deadline - time.monotonic()
                item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            with self._engine:
                batch, stop = self._gather(first)
                self._count_pending(-len(batch))
                # Cancelled futures (caller timed out) need no compute.
                batch = [item for item in batch if item.future.set_running_or_notify_cancel()]
                if batch:
                    self._run_batch(batch)
        self.budget.end()
        self._fail_leftovers()

    def _run_batch(self, batch: list[_Item]) -> None:
        started = time.perf_counter()
        try:
            rows = self._forward_batch([item.value for item in batch], [started - i.enqueued for i in batch])
        except Exception as error:  # noqa: BLE001 - handed to every waiting request
            logger.exception("forward pass of a batch of %d failed", len(batch))
            for item in batch:
                item.future.set_exception(error)
            return
        for item, row in zip(batch, rows, strict=True):
            item.future.set_result(row)

    def _fail_leftovers(self) -> None:
        """Requests that raced with stop() get an answer instead of waiting forever."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None:
                self._count_pending(-1)
            if item is not None and item.future.set_running_or_notify_cancel():
                item.future.set_exception(RuntimeError("the server is shutting down"))
