"""``tune --local`` through the real image: 3 trials of 1 epoch on a tiny subset of the digits.

Each trial is ``docker run IMAGE train`` with its own /opt/ml tree; the objective comes from
the container's log through the shared metric regexes. Then ``best --local`` reads the job,
and its hyperparameters file is what ``train --hyperparameters-file`` takes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from classifier.constants import MODEL_CONFIG_FILE
from classifier_client.training import load_hyperparameters_file

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CLI = str(Path(sys.executable).with_name("sm-classifier"))
STATIC = [
    "image_size=16", "num_workers=0", "epochs=1", "batch_size=32", "augmentation=none",
    "inference_export=none",
]  # fmt: skip


def sm_classifier(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout)


def test_three_one_epoch_trials_through_the_image(local_image, digits_subset, tmp_path):
    data = digits_subset({"train": 8, "valid": 4})
    runs = tmp_path / "runs"
    hp = [arg for value in STATIC for arg in ("--hp", value)]
    tuned = sm_classifier(
        "tune", "--local", "--image", local_image, "--data", data, "--local-dir", runs,
        "--tuning-job-name", "ci-local", "--max-jobs", 3, "--max-parallel-jobs", 2,
        "--strategy", "Random", "--only-ranges",
        "--range", "learning_rate=continuous:0.0005:0.05:log",
        "--range", "optimizer=categorical:adam,sgd", *hp,
    )  # fmt: skip
    assert tuned.returncode == 0, f"{tuned.stdout[-2000:]}\n{tuned.stderr[-6000:]}"
    assert json.loads(tuned.stdout)["finished"] is True
    assert tuned.stderr.count(" started: ") == 3

    folder = runs / "ci-local"
    study = optuna.load_study(study_name="ci-local", storage=f"sqlite:///{folder / 'study.db'}")
    assert len(study.trials) == 3
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.trials)
    for trial in study.trials:
        job = folder / "jobs" / trial.user_attrs["training_job"]
        config = json.loads((job / "input/config/hyperparameters.json").read_text())
        assert all(isinstance(v, str) for v in config.values())  # as SageMaker writes them
        assert config["_tuning_objective_metric"] == "valid_accuracy"
        assert 0 <= trial.intermediate_values[1] <= 1  # parsed from the container's log

    best_file = tmp_path / "best.json"
    best = sm_classifier("best", "ci-local", "--local", "--local-dir", runs, "--output", best_file)
    assert best.returncode == 0, best.stderr[-3000:]
    assert "best training job" in best.stdout
    result = json.loads(best_file.read_text())
    complete = [t.value for t in study.trials if t.state == TrialState.COMPLETE]
    assert result["objective"]["value"] == max(complete)
    assert (Path(result["model_artifacts"]) / MODEL_CONFIG_FILE).exists()
    assert load_hyperparameters_file(best_file)["epochs"] == "1"
    assert (folder / "report.html").exists() and (folder / "summary.json").exists()
