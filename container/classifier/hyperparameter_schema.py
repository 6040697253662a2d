"""Every hyperparameter the training job accepts: its kind, its allowed values and its check.

The one schema both sides use: the training job validates SageMaker's strings with it before
anything else, and the client (``sm-classifier train`` / ``tune``, cloud and local) checks the
same values, tuning ranges included, before any AWS call, so a job bound to fail in the
container's validator is never started and billed. It imports neither torch nor
sagemaker-training: the client environment has neither.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from classifier.constants import TRAINING_PRECISIONS, PrecisionName, is_sagemaker_key

OPTIMIZERS = ("sgd", "adam", "adamw", "rmsprop")
LR_SCHEDULERS = ("none", "step", "cosine")
AUGMENTATIONS = ("standard", "light", "strong", "none")
# What the job exports for the CPU server after training: the OpenVINO IR with an int8 model
# beside it, the IR only (fp32/bf16), or nothing (a GPU endpoint serves PyTorch anyway).
INFERENCE_EXPORTS = ("openvino-int8", "openvino", "none")
# What a training step computes in (classifier.training.precision): auto picks per device.
PRECISIONS = TRAINING_PRECISIONS
# torchvision 0.29.1's registry of image classifiers, `models.list_models(module=models)`,
# written out so the client needs no torchvision; a unit test keeps the two equal.
CLASSIFICATION_MODELS = (
    "alexnet", "convnext_base", "convnext_large", "convnext_small", "convnext_tiny",
    "densenet121", "densenet161", "densenet169", "densenet201",
    "efficientnet_b0", "efficientnet_b1", "efficientnet_b2", "efficientnet_b3", "efficientnet_b4",
    "efficientnet_b5", "efficientnet_b6", "efficientnet_b7",
    "efficientnet_v2_l", "efficientnet_v2_m", "efficientnet_v2_s", "googlenet", "inception_v3",
    "maxvit_t", "mnasnet0_5", "mnasnet0_75", "mnasnet1_0", "mnasnet1_3",
    "mobilenet_v2", "mobilenet_v3_large", "mobilenet_v3_small",
    "regnet_x_16gf", "regnet_x_1_6gf", "regnet_x_32gf", "regnet_x_3_2gf", "regnet_x_400mf",
    "regnet_x_800mf", "regnet_x_8gf", "regnet_y_128gf", "regnet_y_16gf", "regnet_y_1_6gf",
    "regnet_y_32gf", "regnet_y_3_2gf", "regnet_y_400mf", "regnet_y_800mf", "regnet_y_8gf",
    "resnet101", "resnet152", "resnet18", "resnet34", "resnet50",
    "resnext101_32x8d", "resnext101_64x4d", "resnext50_32x4d",
    "shufflenet_v2_x0_5", "shufflenet_v2_x1_0", "shufflenet_v2_x1_5", "shufflenet_v2_x2_0",
    "squeezenet1_0", "squeezenet1_1", "swin_b", "swin_s", "swin_t", "swin_v2_b", "swin_v2_s",
    "swin_v2_t", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn",
    "vit_b_16", "vit_b_32", "vit_h_14", "vit_l_16", "vit_l_32", "wide_resnet101_2", "wide_resnet50_2",
)  # fmt: skip

# The kinds of value; a tuning range must fit its key's kind (see check_range).
BOOLEAN, INTEGER, NUMBER, CHOICE = "boolean", "integer", "number", "choice"
# The range kinds SageMaker's tuner sends each value kind as ("categorical" fits every kind).
RANGE_KINDS = {BOOLEAN: ("categorical",), CHOICE: ("categorical",), INTEGER: ("integer", "categorical"),
               NUMBER: ("continuous", "integer", "categorical")}  # fmt: skip


class HyperparameterValueError(ValueError):
    """One or more hyperparameters are unknown or out of range; the message names each key."""


@dataclass(frozen=True)
class Field:
    """One hyperparameter: its kind, its default, bounds (numbers) or choices (words)."""

    kind: str
    default: Any = None
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    choices: tuple[str, ...] = ()
    # Choices such as optimizer names match in any case; registry names as written.
    any_case: bool = True
    choices_are: str = "one of"

    def parse(self, text: str) -> Any:
        """The value of SageMaker's string ``text``; ValueError says what is allowed."""
        return _PARSERS[self.kind](self, text)

    @property
    def bounds(self) -> tuple[float, float]:
        """A number field's (low, high); every number field is made with both."""
        if self.low is None or self.high is None:
            raise TypeError(f"a {self.kind} field has no bounds")
        return self.low, self.high


def _parse_boolean(spec: Field, text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    raise ValueError("must be true or false (any case)")


def _parse_integer(spec: Field, text: str) -> int:
    try:
        number = float(text)
    except ValueError:
        raise ValueError("must be an integer") from None
    # The tuner sends integer ranges as "64" but some tools write "64.0".
    if not number.is_integer():
        raise ValueError("must be an integer")
    value = int(number)
    low, high = spec.bounds
    if not low <= value <= high:
        raise ValueError(f"must be an integer in [{int(low)}, {int(high)}]")
    return value


def _parse_number(spec: Field, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError("must be a number") from None
    low, high = spec.bounds
    too_low = value <= low if spec.low_open else value < low
    if math.isnan(value) or too_low or value > high:
        bracket = "(" if spec.low_open else "["
        raise ValueError(f"must be a number in {bracket}{low}, {high}]")
    return value


def _parse_choice(spec: Field, text: str) -> str:
    value = text.strip().lower() if spec.any_case else text.strip()
    if value not in spec.choices:
        raise ValueError(f"must be {spec.choices_are} {', '.join(spec.choices)}")
    # The choice itself: a vocabulary's member where the choices are one (PrecisionName).
    return spec.choices[spec.choices.index(value)]


_PARSERS: dict[str, Callable[[Field, str], Any]] = {
    BOOLEAN: _parse_boolean,
    INTEGER: _parse_integer,
    NUMBER: _parse_number,
    CHOICE: _parse_choice,
}


def _integer(default: int, low: int, high: int) -> Field:
    return Field(INTEGER, default, low, high)


def _number(default: float, low: float, high: float, low_open: bool = False) -> Field:
    return Field(NUMBER, default, low, high, low_open)


def _choice(default: str, choices: tuple[str, ...]) -> Field:
    return Field(CHOICE, default, choices=choices)


def _flag(default: bool) -> Field:
    return Field(BOOLEAN, default)


# The job's hyperparameters with their defaults; classifier.training.hyperparameters.Hyperparameters
# has one typed attribute per key (a unit test keeps the two equal).
SCHEMA: dict[str, Field] = {
    "model": Field(
        CHOICE,
        "resnet18",
        choices=CLASSIFICATION_MODELS,
        any_case=False,
        choices_are="a torchvision classification model, one of",
    ),  # fmt: skip
    "pretrained": _flag(False),
    "freeze_backbone": _flag(False),
    "epochs": _integer(10, 1, 10_000),
    "batch_size": _integer(32, 1, 65_536),
    "learning_rate": _number(0.001, 0.0, 10.0, low_open=True),
    "optimizer": _choice("adam", OPTIMIZERS),
    "momentum": _number(0.9, 0.0, 1.0),
    "weight_decay": _number(0.0, 0.0, 1.0),
    "eps": _number(1e-8, 0.0, 1.0, low_open=True),
    "lr_scheduler": _choice("none", LR_SCHEDULERS),
    "label_smoothing": _number(0.0, 0.0, 0.99),
    "image_size": _integer(224, 8, 1024),
    "num_workers": _integer(2, 0, 64),
    "precision": _choice(PrecisionName.AUTO, PRECISIONS),
    "clip_grad_norm": _number(0.0, 0.0, 1e6),
    "seed": _integer(42, 0, 2**32 - 1),
    "early_stopping_patience": _integer(0, 0, 10_000),
    "debug": _flag(False),
    "augmentation": _choice("standard", AUGMENTATIONS),
    "max_skipped_fraction": _number(0.01, 0.0, 1.0),
    "inference_export": _choice("openvino-int8", INFERENCE_EXPORTS),
    # Every this many training steps the batch loss goes to TensorBoard (MLflow gets epochs).
    "log_steps": _integer(20, 1, 1_000_000),
}


@dataclass(frozen=True)
class Alias:
    """An older name of a key: parsed as ``field``, then given to ``key`` as ``translate(value)``."""

    key: str
    field: Field
    translate: Callable[[Any], Any]


# Older names still accepted; parse_values answers with the current key only.
ALIASES: dict[str, Alias] = {
    # precision's first form: amp=true is precision=auto, amp=false is precision=fp32.
    "amp": Alias("precision", Field(BOOLEAN), lambda on: PrecisionName.AUTO if on else PrecisionName.FP32),
}


def defaults() -> dict[str, Any]:
    """Every key's default (aliases are not keys)."""
    return {key: spec.default for key, spec in SCHEMA.items()}


def field_of(key: str) -> Field | None:
    """The field that parses ``key``, an alias included; None for an unknown key."""
    alias = ALIASES.get(key)
    return alias.field if alias is not None else SCHEMA.get(key)


def _unknown(key: str) -> str:
    return f"unknown hyperparameter {key!r}; allowed: {', '.join(sorted({*SCHEMA, *ALIASES}))}"


def _received_text(raw_value: Any) -> str:
    # SageMaker sends strings; JSON-encoded values (local runs, older SDKs) may not be.
    return as_text(raw_value).strip().strip('"')


def parse_values(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The parsed values of ``raw`` (SageMaker's own keys skipped), by their current keys (an
    alias's value under its key); every problem at once.

    Raises HyperparameterValueError naming each bad key, its value and what is allowed.
    """
    problems, values = [], {}
    for key, raw_value in sorted(raw.items()):
        if is_sagemaker_key(key):
            continue
        spec = field_of(key)
        if spec is None:
            problems.append(_unknown(key))
            continue
        try:
            values[key] = spec.parse(_received_text(raw_value))
        except ValueError as error:
            problems.append(f"hyperparameter {key}={raw_value!r} is invalid: {error}")
    for name, alias in ALIASES.items():
        if name in values and alias.key in values:
            problems.append(
                f"hyperparameters {name} and {alias.key} both given: {name} is {alias.key}'s older name"
            )
        elif name in values:
            values[alias.key] = alias.translate(values.pop(name))
    if values.get("freeze_backbone") and not values.get("pretrained"):
        problems.append("hyperparameter freeze_backbone=true needs pretrained=true")
    if problems:
        raise HyperparameterValueError("; ".join(problems))
    return values


def check_range(key: str, kind: str, values: tuple[str, ...]) -> list[str]:
    """The problems of tuning ``key`` over a ``kind`` range (continuous, integer, categorical)
    whose bounds or categories are ``values``: every value SageMaker may send must pass
    :func:`parse_values`. An empty list means the range is fine."""
    spec = field_of(key)
    if spec is None:
        return [f"--range {key}: {_unknown(key)}"]
    if kind not in RANGE_KINDS[spec.kind]:
        allowed = " or ".join(RANGE_KINDS[spec.kind])
        return [f"--range {key}: {key} is {spec.kind}, so its range must be {allowed}, not {kind}"]
    problems = []
    for value in values:
        try:
            spec.parse(_received_text(value))
        except ValueError as error:
            what = "value" if kind == "categorical" else "bound"
            problems.append(f"--range {key}: {what} {value!r} is invalid: {error}")
    return problems


def as_text(value: Any) -> str:
    """A hyperparameter as SageMaker passes it, a string: booleans as the lower-case words
    :func:`parse_values` reads, numbers in full (``str`` of a float is its shortest exact form)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
