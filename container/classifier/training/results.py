"""What a job keeps and reports, as types: the best epoch so far, and the finished job's result."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class BestEpoch:
    """The epoch with the best validation so far, and its weights (on the CPU)."""

    epoch: int = 0
    valid_accuracy: float = -1.0
    valid_loss: float = math.inf
    state_dict: dict | None = None

    def beaten_by(self, valid) -> bool:
        return (valid.accuracy, -valid.loss) > (self.valid_accuracy, -self.valid_loss)


@dataclass(frozen=True)
class JobResult:
    """What a finished job reports: ``metrics.json``, and the watchers' final metrics."""

    best_epoch: int
    epochs_run: int
    history: list[dict]
    test: dict | None
    train_images_per_second: float | None
    skipped_files: dict[str, int]
    hyperparameters: dict
    world_size: int
    precision: dict

    @property
    def best_history(self) -> dict:
        """The best epoch's row of ``history``; empty when no epoch ran."""
        return next((row for row in self.history if row["epoch"] == self.best_epoch), {})

    def to_dict(self) -> dict:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}
