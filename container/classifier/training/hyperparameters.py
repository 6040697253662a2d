"""The job's hyperparameters, validated.

SageMaker passes every value as a string. Each key is parsed and checked up front against
:mod:`classifier.hyperparameter_schema` (the schema the client checks with too), so a bad
value fails the job in seconds with a message naming the key and what is allowed, instead
of an hour later with a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum
from typing import Any

from classifier.constants import PrecisionName
from classifier.errors import JobInputError
from classifier.hyperparameter_schema import HyperparameterValueError, defaults, parse_values

# Weights, optimizer state and checkpoints stay fp32 whatever the precision: a checkpoint
# written under one resumes under another.
NOT_RUN_IDENTITY = frozenset(
    {
        "epochs", "num_workers", "debug", "early_stopping_patience", "max_skipped_fraction",
        "inference_export", "precision", "log_steps",
    }
)  # fmt: skip


class HyperparameterError(JobInputError, ValueError):
    """A hyperparameter is unknown or has a bad value; the message names the key."""


_DEFAULT = defaults()


@dataclass(frozen=True)
class Hyperparameters:
    """The job's values, typed; the keys and their defaults are the schema's (``SCHEMA``)."""

    model: str = _DEFAULT["model"]
    pretrained: bool = _DEFAULT["pretrained"]
    freeze_backbone: bool = _DEFAULT["freeze_backbone"]
    epochs: int = _DEFAULT["epochs"]
    batch_size: int = _DEFAULT["batch_size"]
    learning_rate: float = _DEFAULT["learning_rate"]
    optimizer: str = _DEFAULT["optimizer"]
    momentum: float = _DEFAULT["momentum"]
    weight_decay: float = _DEFAULT["weight_decay"]
    eps: float = _DEFAULT["eps"]
    lr_scheduler: str = _DEFAULT["lr_scheduler"]
    label_smoothing: float = _DEFAULT["label_smoothing"]
    image_size: int = _DEFAULT["image_size"]
    num_workers: int = _DEFAULT["num_workers"]
    precision: PrecisionName = _DEFAULT["precision"]
    clip_grad_norm: float = _DEFAULT["clip_grad_norm"]
    seed: int = _DEFAULT["seed"]
    early_stopping_patience: int = _DEFAULT["early_stopping_patience"]
    debug: bool = _DEFAULT["debug"]
    augmentation: str = _DEFAULT["augmentation"]
    max_skipped_fraction: float = _DEFAULT["max_skipped_fraction"]
    inference_export: str = _DEFAULT["inference_export"]
    log_steps: int = _DEFAULT["log_steps"]

    def to_dict(self) -> dict[str, Any]:
        """Plain data, for JSON and for checkpoints (which load tensors and plain data only)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}

    def run_identity(self) -> dict[str, Any]:
        """The values that change what training computes: a checkpoint written under other
        values belongs to another run. ``epochs`` is not one of them (a resumed job may be
        asked for more), nor are settings that only change speed, logging or when to stop."""
        return {k: v for k, v in self.to_dict().items() if k not in NOT_RUN_IDENTITY}


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, Enum) else value


def parse_hyperparameters(raw: dict[str, Any]) -> Hyperparameters:
    """Validate SageMaker's string hyperparameters; every problem is reported at once."""
    try:
        values = parse_values(raw)
    except HyperparameterValueError as error:
        raise HyperparameterError(str(error)) from error
    return Hyperparameters(**values)
