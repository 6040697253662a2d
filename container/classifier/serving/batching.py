"""Micro-batching and the share of cores each forward pass may use.

Request threads decode and transform their image, then hand the tensor to one
:class:`MicroBatcher` thread per worker. That thread takes everything queued (up to
``max_batch_size``, optionally waiting ``max_delay_s`` for more) and runs it as one
forward pass; while it runs, the next batch gathers. A lone request therefore waits
for nothing, and under load the batch grows by itself.

:class:`ThreadBudget` keeps workers × intra-op threads within the cores: it counts the
busy workers through flags in shared memory made by the gunicorn master before fork,
so a request alone gets every core and two busy workers get half each.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, MutableSequence
from concurrent.futures import Future

import torch

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
        if not self.shared:
            # No slot (more workers than slots, e.g. after TTIN): assume all are busy.
            return self._fallback if self.busy_flags else self.cpu_count
        self.busy_flags[self.slot] = 1
        busy = sum(self.busy_flags)
        return max(1, self.cpu_count // max(1, busy))

    def end(self) -> None:
        """Mark this worker idle, so the others may use its cores."""
        if self.shared and self.fixed_threads is None:
            self.busy_flags[self.slot] = 0


class _Item:
    __slots__ = ("tensor", "future", "enqueued")

    def __init__(self, tensor: torch.Tensor):
        self.tensor = tensor
        self.future: Future = Future()
        self.enqueued = time.perf_counter()


class MicroBatcher:
    """One thread that runs queued inputs through ``forward`` in batches.

    ``forward`` takes a list of same-shaped CPU tensors and returns one row of
    results per input, in order. A failure fails only the futures of that batch.
    """

    def __init__(
        self,
        forward: Callable[[list[torch.Tensor]], torch.Tensor],
        max_batch_size: int,
        max_delay_s: float = 0.0,
        budget: ThreadBudget | None = None,
        name: str = "micro-batcher",
        set_threads: Callable[[int], None] = torch.set_num_threads,
    ):
        if max_batch_size < 1:
            raise ValueError("max_batch_size must be at least 1")
        self.forward = forward
        self.set_threads = set_threads
        self.max_batch_size = max_batch_size
        self.max_delay_s = max_delay_s
        self.budget = budget or ThreadBudget(torch.get_num_threads(), fixed_threads=None)
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._stopping = False

    def start(self) -> MicroBatcher:
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive() and not self._stopping

    def submit(self, tensor: torch.Tensor) -> Future:
        if not self.alive:
            raise RuntimeError("the micro-batcher is not running")
        item = _Item(tensor)
        self._queue.put(item)
        return item.future

    def stop(self, timeout: float | None = None) -> None:
        """Finish what is queued, then end the thread."""
        self._stopping = True
        self._queue.put(None)
        self._thread.join(timeout)

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
        current_threads = None
        stop = False
        while not stop:
            first = self._queue.get()
            if first is None:
                break
            batch, stop = self._gather(first)
            # Cancelled futures (caller timed out) need no compute.
            batch = [item for item in batch if item.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            threads = self.budget.begin()
            if threads != current_threads:
                self.set_threads(threads)
                current_threads = threads
            started = time.perf_counter()
            metrics.observe_batch(len(batch), (started - item.enqueued for item in batch))
            try:
                rows = self.forward([item.tensor for item in batch])
            except Exception as error:  # noqa: BLE001 - handed to every waiting request
                logger.exception("forward pass of a batch of %d failed", len(batch))
                for item in batch:
                    item.future.set_exception(error)
                continue
            finally:
                if self._queue.empty():
                    self.budget.end()
            logger.debug(
                "batch of %d on %d threads: %.1f ms",
                len(batch),
                threads,
                (time.perf_counter() - started) * 1000,
            )
            for item, row in zip(batch, rows, strict=True):
                item.future.set_result(row)
        self.budget.end()
        self._fail_leftovers()

    def _fail_leftovers(self) -> None:
        """Requests that raced with stop() get an answer instead of waiting forever."""
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not None and item.future.set_running_or_notify_cancel():
                item.future.set_exception(RuntimeError("the server is shutting down"))
