"""The job's hyperparameters, validated.

SageMaker passes every value as a string. Each key is parsed and checked up front against
:mod:`classifier.hyperparameter_schema` (the schema the client checks with too), so a bad
value fails the job in seconds with a message naming the key and what is allowed, instead
of an hour later with a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from classifier.errors import JobInputError
from classifier.hyperparameter_schema import HyperparameterValueError, parse_values

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


@dataclass(frozen=True)
class Hyperparameters:
    model: str = "resnet18"
    pretrained: bool = False
    freeze_backbone: bool = False
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 0.001
    optimizer: str = "adam"
    momentum: float = 0.9
    weight_decay: float = 0.0
    eps: float = 1e-8
    lr_scheduler: str = "none"
    label_smoothing: float = 0.0
    image_size: int = 224
    num_workers: int = 2
    precision: str = "auto"
    clip_grad_norm: float = 0.0
    seed: int = 42
    early_stopping_patience: int = 0
    debug: bool = False
    augmentation: str = "standard"
    max_skipped_fraction: float = 0.01
    inference_export: str = "openvino-int8"
    log_steps: int = 20

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def run_identity(self) -> dict[str, Any]:
        """The values that change what training computes: a checkpoint written under other
        values belongs to another run. ``epochs`` is not one of them (a resumed job may be
        asked for more), nor are settings that only change speed, logging or when to stop."""
        return {k: v for k, v in self.to_dict().items() if k not in NOT_RUN_IDENTITY}


def parse_hyperparameters(raw: dict[str, Any]) -> Hyperparameters:
    """Validate SageMaker's string hyperparameters; every problem is reported at once."""
    try:
        values = parse_values(raw)
    except HyperparameterValueError as error:
        raise HyperparameterError(str(error)) from error
    if "amp" in values:
        values["precision"] = "auto" if values.pop("amp") else "fp32"
    return Hyperparameters(**values)
