"""The regexes the client sends to SageMaker, and the local tuner's reading of them, extract
the metrics a real training run prints.

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
from classifier_client.local_tuning.logs import LogMetrics
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


@pytest.fixture(scope="module")
def real_run(runtime_python, repo_root, digits_subset, tmp_path_factory):
    """The job's stdout and the metrics.json it wrote."""
    data = digits_subset({"train": 8, "valid": 3, "test": 3})
    base = tmp_path_factory.mktemp("metric-lines") / "opt_ml"
    hyperparameters = hyperparameter_strings(HYPERPARAMETERS)
    result = train_on_host(runtime_python, repo_root, base, hyperparameters, data, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout, json.loads((base / "output" / "data" / "metrics.json").read_text())


def test_client_metric_definitions_match_a_real_training_log(real_run):
    log, recorded = real_run
    scraped = scrape(log)
    epochs, final = scraped[:-1], scraped[-1]
    assert [set(e) for e in epochs] == [set(EPOCH_METRICS)] * HYPERPARAMETERS["epochs"]
    assert set(final) == set(FINAL_METRICS)
    for printed, history in zip(epochs, recorded["history"], strict=True):
        for name, value in printed.items():
            assert value == pytest.approx(history[name], abs=5e-5), name


def test_the_local_tuner_reads_each_epochs_objective_and_the_final_metrics_from_a_real_log(real_run):
    log, recorded = real_run
    metrics = LogMetrics()
    found = [parsed for line in log.splitlines() if (parsed := metrics.feed(line))]
    expected = [(h["epoch"], pytest.approx(h["valid_accuracy"], abs=5e-5)) for h in recorded["history"]]
    assert found == expected
    assert metrics.final("train_loss") == pytest.approx(recorded["history"][-1]["train_loss"], abs=5e-5)
    assert metrics.final("test_accuracy") == pytest.approx(recorded["test"]["accuracy"], abs=5e-5)
