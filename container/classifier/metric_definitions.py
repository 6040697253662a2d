"""The one place that defines the metric log lines and the regexes that parse them.

The training program prints with :func:`format_metrics_line`; the client passes
:data:`METRIC_DEFINITIONS` to SageMaker (training jobs and tuning jobs). A test runs a
real training and checks that every regex matches. Keep this module free of heavy
imports: the client environment has no torch.
"""

from __future__ import annotations

import math
import re

# A float as Python prints it with a fixed precision, plus nan/inf for a diverged run.
_NUMBER = r"([-+]?(?:[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|nan|inf))"

EPOCH_METRICS = ("train_loss", "train_accuracy", "valid_loss", "valid_accuracy")
FINAL_METRICS = ("test_loss", "test_accuracy")

OBJECTIVE_METRIC = "valid_accuracy"
OBJECTIVE_TYPE = "Maximize"


# The epoch a metric line is about (``epoch=3 train_loss=...``).
EPOCH_REGEX = r"(?:^|\s)epoch=(\d+)(?:\s|$)"


def _regex(name: str) -> str:
    # The leading boundary keeps "loss=" from matching inside "train_loss=".
    return rf"(?:^|\s){name}={_NUMBER}"


METRIC_DEFINITIONS: list[dict[str, str]] = [
    {"Name": name, "Regex": _regex(name)} for name in (*EPOCH_METRICS, *FINAL_METRICS)
]


def _format_value(value: float) -> str:
    if math.isnan(value) or math.isinf(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return f"{value:.4f}"


def format_metrics_line(prefix: dict[str, int] | None = None, **metrics: float) -> str:
    """One log line, e.g. ``epoch=3 train_loss=0.8120 ... valid_accuracy=0.7810``."""
    parts = [f"{key}={value}" for key, value in (prefix or {}).items()]
    parts += [f"{key}={_format_value(float(value))}" for key, value in metrics.items()]
    return " ".join(parts)


def format_resumed_line(completed_epoch: int, epochs: int) -> str:
    """The line a job resumed from a checkpoint prints before its first epoch; its epoch
    numbers go on from ``completed_epoch`` (no metric regex matches it)."""
    return f"resumed from checkpoint: epoch={completed_epoch} of {epochs}"


def parse_metrics(line: str) -> dict[str, float]:
    """The metrics a SageMaker-style regex scan would extract from ``line``."""
    found = {}
    for definition in METRIC_DEFINITIONS:
        match = re.search(definition["Regex"], line)
        if match:
            found[definition["Name"]] = float(match.group(1))
    return found
