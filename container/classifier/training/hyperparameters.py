"""Hyperparameter schema and validation.

SageMaker passes every value as a string. Each key is parsed and checked up front, so a
bad value fails the job in seconds with a message naming the key and what is allowed,
instead of an hour later with a traceback.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

from classifier.constants import is_sagemaker_key
from classifier.training.errors import JobInputError
from classifier.transforms import AUGMENTATIONS

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
LR_SCHEDULERS = ("none", "step", "cosine")
# What the job exports for the CPU server after training: the OpenVINO IR with an int8 model
# beside it, the IR only (fp32/bf16), or nothing (a GPU endpoint serves PyTorch anyway).
INFERENCE_EXPORTS = ("openvino-int8", "openvino", "none")
NOT_RUN_IDENTITY = frozenset(
    {"epochs", "num_workers", "debug", "early_stopping_patience", "max_skipped_fraction", "inference_export"}
)


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
    amp: bool = False
    seed: int = 42
    early_stopping_patience: int = 0
    debug: bool = False
    augmentation: str = "standard"
    max_skipped_fraction: float = 0.01
    inference_export: str = "openvino-int8"

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def run_identity(self) -> dict[str, Any]:
        """The values that change what training computes: a checkpoint written under other
        values belongs to another run. ``epochs`` is not one of them (a resumed job may be
        asked for more), nor are settings that only change speed, logging or when to stop."""
        return {k: v for k, v in self.to_dict().items() if k not in NOT_RUN_IDENTITY}


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise ValueError("must be true or false (any case)")


def _parse_int(low: int, high: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            number = float(text)
        except ValueError:
            raise ValueError("must be an integer") from None
        # The tuner sends integer ranges as "64" but some tools write "64.0".
        if not number.is_integer():
            raise ValueError("must be an integer")
        value = int(number)
        if value < low or (high is not None and value > high):
            raise ValueError(f"must be an integer in [{low}, {high if high is not None else 'inf'}]")
        return value

    return parse


def _parse_float(low: float, high: float, low_open: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError("must be a number") from None
        too_low = value <= low if low_open else value < low
        if math.isnan(value) or too_low or value > high:
            bracket = "(" if low_open else "["
            raise ValueError(f"must be a number in {bracket}{low}, {high}]")
        return value

    return parse


def _parse_choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        value = text.strip().lower()
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}")
        return value

    return parse


def _parse_model(text: str) -> str:
    from classifier.models import classification_models

    name = text.strip()
    available = classification_models()
    if name not in available:
        raise ValueError(f"must be a torchvision classification model, one of: {', '.join(available)}")
    return name


PARSERS: dict[str, Callable[[str], Any]] = {
    "model": _parse_model,
    "pretrained": _parse_bool,
    "freeze_backbone": _parse_bool,
    "epochs": _parse_int(1, 10_000),
    "batch_size": _parse_int(1, 65_536),
    "learning_rate": _parse_float(0.0, 10.0, low_open=True),
    "optimizer": _parse_choice(OPTIMIZERS),
    "momentum": _parse_float(0.0, 1.0),
    "weight_decay": _parse_float(0.0, 1.0),
    "eps": _parse_float(0.0, 1.0, low_open=True),
    "lr_scheduler": _parse_choice(LR_SCHEDULERS),
    "label_smoothing": _parse_float(0.0, 0.99),
    "image_size": _parse_int(8, 1024),
    "num_workers": _parse_int(0, 64),
    "amp": _parse_bool,
    "seed": _parse_int(0, 2**32 - 1),
    "early_stopping_patience": _parse_int(0, 10_000),
    "debug": _parse_bool,
    "augmentation": _parse_choice(AUGMENTATIONS),
    "max_skipped_fraction": _parse_float(0.0, 1.0),
    "inference_export": _parse_choice(INFERENCE_EXPORTS),
}


def parse_hyperparameters(raw: dict[str, Any]) -> Hyperparameters:
    """Validate SageMaker's string hyperparameters; every problem is reported at once."""
    problems = []
    values = {}
    for key, raw_value in sorted(raw.items()):
        if is_sagemaker_key(key):
            continue
        if key not in PARSERS:
            problems.append(f"unknown hyperparameter {key!r}; allowed: {', '.join(sorted(PARSERS))}")
            continue
        # SageMaker sends strings; JSON-encoded values (local runs, older SDKs) may not be.
        text = str(raw_value).lower() if isinstance(raw_value, bool) else str(raw_value)
        text = text.strip().strip('"')
        try:
            values[key] = PARSERS[key](text)
        except ValueError as error:
            problems.append(f"hyperparameter {key}={raw_value!r} is invalid: {error}")
    if values.get("freeze_backbone") and not values.get("pretrained"):
        problems.append("hyperparameter freeze_backbone=true needs pretrained=true")
    if problems:
        raise HyperparameterError("; ".join(problems))
    return Hyperparameters(**values)
