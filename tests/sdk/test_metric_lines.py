"""The regexes the client sends to SageMaker extract the metrics a real training run prints.

Runs the real ``./train`` (runtime env, no Docker) under ``SAGEMAKER_BASE_DIR`` on a slice
of the digits, with hyperparameters in the string form the client sends, then applies the
client's MetricDefinitions as SageMaker does (each regex over each log line, the first group
is the value) and compares the values with the metrics.json the job itself wrote.
"""

from __future__ import annotations

import json
import re

import pytest

from classifier.metric_definitions import EPOCH_METRICS, FINAL_METRICS
from classifier_client.training import hyperparameter_strings, metric_definitions
from tests.sdk.conftest import train_on_host

pytestmark = pytest.mark.slow

HYPERPARAMETERS = {
    "model": "resnet18", "epochs": 2, "image_size": 16, "batch_size": 16, "num_workers": 0,
    "augmentation": "none", "debug": False, "inference_export": "none",
}  # fmt: skip


def scrape(log: str) -> list[dict[str, float]]:
    """What CloudWatch metrics would receive: per matching line, {metric name: value}."""
    definitions = metric_definitions()
    found = []
    for line in log.splitlines():
        values = {}
        for definition in definitions:
            match = re.search(definition.regex, line)
            if match:
                values[definition.name] = float(match.group(1))
        if values:
            found.append(values)
    return found


def test_client_metric_definitions_match_a_real_training_log(
    runtime_python, repo_root, digits_subset, tmp_path
):
    data = digits_subset({"train": 8, "valid": 3, "test": 3})
    base = tmp_path / "opt_ml"
    hyperparameters = hyperparameter_strings(HYPERPARAMETERS)
    result = train_on_host(runtime_python, repo_root, base, hyperparameters, data, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    scraped = scrape(result.stdout)
    epochs, final = scraped[:-1], scraped[-1]
    assert [set(e) for e in epochs] == [set(EPOCH_METRICS)] * HYPERPARAMETERS["epochs"]
    assert set(final) == set(FINAL_METRICS)

    history = json.loads((base / "output" / "data" / "metrics.json").read_text())["history"]
    for printed, recorded in zip(epochs, history, strict=True):
        for name, value in printed.items():
            assert value == pytest.approx(recorded[name], abs=5e-5), name
