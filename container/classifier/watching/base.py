"""The interface of a job watcher, the facts it is given, and the composite the program calls.

The training program (global rank 0 only) calls :class:`Watchers` at the start, every
``log_steps`` training steps, at each epoch's end and at the job's end. A watcher that fails
is logged once and left out from then on: watching a job never fails it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class JobFacts:
    """What a watcher names a run by and records about it, read once at the job's start."""

    job_name: str
    tuning_job_name: str | None
    instance_type: str
    instance_count: int
    image: str
    hyperparameters: dict[str, Any]
    objective_metric: str | None = None


@dataclass
class JobEnd:
    """What the job leaves: final metrics (the objective among them), figures and files."""

    metrics: dict[str, float]
    figures: dict[str, Any] = field(default_factory=dict)  # name -> matplotlib Figure
    artifacts: list[Path] = field(default_factory=list)
    model_dir: Path | None = None


class JobWatcher:
    """One way of watching a job; a subclass overrides what it records (the rest do nothing)."""

    name = "watcher"

    def start(self, facts: JobFacts) -> None:
        """The job starts: its name, tags and hyperparameters."""

    def step(self, step: int, loss: float) -> None:
        """The batch loss at global training step ``step`` (every ``log_steps`` steps)."""

    def epoch(self, epoch: int, values: dict[str, float]) -> None:
        """An epoch's metrics: losses, accuracies, learning rate, images per second."""

    def rules(self, results: list, profile: dict | None) -> None:
        """The end-of-job Debugger rule verdicts and the profiler's summary."""

    def finish(self, end: JobEnd) -> None:
        """The job's end: final metrics, figures and files."""

    def close(self) -> list[str]:
        """Release what the watcher holds; returns what it could not record (for the job log)."""
        return []


class Watchers:
    """Every watcher of the job behind one call; each failure logged once and that watcher dropped."""

    def __init__(self, watchers: list[JobWatcher], log_steps: int = 20):
        self.watchers = list(watchers)
        self.log_steps = max(1, log_steps)
        self._steps = 0

    def _each(self, method: str, *args) -> None:
        for watcher in list(self.watchers):
            try:
                getattr(watcher, method)(*args)
            except Exception as error:  # noqa: BLE001 - watching must never fail the job
                logger.warning(
                    "%s stopped recording (%s failed: %s: %s); training goes on",
                    watcher.name, method, type(error).__name__, error,
                )  # fmt: skip
                self.watchers.remove(watcher)
                self._close(watcher)

    def start(self, facts: JobFacts) -> None:
        self._each("start", facts)

    def record_step(self, loss: float) -> None:
        """Called after every training step; forwards one in ``log_steps``."""
        self._steps += 1
        if self._steps % self.log_steps == 0:
            self._each("step", self._steps, loss)

    def epoch(self, epoch: int, values: dict[str, float]) -> None:
        self._each("epoch", epoch, values)

    def rules(self, results: list, profile: dict | None) -> None:
        self._each("rules", results, profile)

    def finish(self, end: JobEnd) -> None:
        self._each("finish", end)

    def close(self) -> None:
        for watcher in self.watchers:
            self._close(watcher)
        self.watchers = []

    @staticmethod
    def _close(watcher: JobWatcher) -> None:
        try:
            missed = watcher.close()
        except Exception as error:  # noqa: BLE001 - see _each
            logger.warning("closing %s failed: %s: %s", watcher.name, type(error).__name__, error)
            return
        if missed:
            logger.warning("%s did not record: %s", watcher.name, "; ".join(missed))
