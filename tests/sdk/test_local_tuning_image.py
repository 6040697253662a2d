"""``tune --local`` through the real image: 3 trials of 1 epoch on a tiny subset of the digits.

Each trial is ``docker run IMAGE train`` with its own /opt/ml tree; the objective comes from
the container's log through the shared metric regexes. Then ``best --local`` reads the job,
and its hyperparameters file is what ``train --hyperparameters-file`` takes. The job logs to a
real MLflow tracking server (a parent run, a child run per trial), and ``tensorboard --logdir``
over its folder shows every trial in the HParams dashboard (its data API, and a screenshot in
headless Chromium).
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from classifier.constants import MODEL_CONFIG_FILE
from classifier_client.training import load_hyperparameters_file
from tests import helpers
from tests.sdk.browser import colour_counts, screenshot

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CLI = str(Path(sys.executable).with_name("sm-classifier"))
STATIC = [
    "image_size=16", "num_workers=0", "epochs=1", "batch_size=32", "augmentation=none",
    "inference_export=none",
]  # fmt: skip


def sm_classifier(*args, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout)


TENSORBOARD = helpers.REPO_ROOT / ".venv" / "bin" / "tensorboard"
# What TensorBoard's HParams dashboard asks its backend for: every session group of the logdir.
SESSION_GROUPS = {
    "experimentName": "",
    "allowedStatuses": ["STATUS_UNKNOWN", "STATUS_SUCCESS", "STATUS_FAILURE", "STATUS_RUNNING"],
    "colParams": [],
    "startIndex": 0,
    "sliceSize": 100,
}


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    with helpers.mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url


def test_three_one_epoch_trials_through_the_image(
    local_image, digits_subset, tmp_path, mlflow_server, capsys
):
    data = digits_subset({"train": 8, "valid": 4})
    runs = tmp_path / "runs"
    hp = [arg for value in STATIC for arg in ("--hp", value)]
    tuned = sm_classifier(
        "tune", "--local", "--mlflow-tracking-uri", mlflow_server,
        "--image", local_image, "--data", data, "--local-dir", runs,
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
    _check_mlflow_runs(mlflow_server, "ci-local", [t.user_attrs["training_job"] for t in study.trials])
    png = _check_tensorboard_hparams(folder, tmp_path)
    with capsys.disabled():
        print(f"\nTensorBoard HParams screenshot: {png}")


def _check_mlflow_runs(url: str, tuning_job: str, trial_jobs: list[str]) -> None:
    """One parent run for the tuning job, one child run per trial nested under it."""
    from mlflow import MlflowClient

    client = MlflowClient(url)
    experiment = client.get_experiment_by_name(tuning_job)
    runs = client.search_runs([experiment.experiment_id])
    parents = [run for run in runs if "mlflow.parentRunId" not in run.data.tags]
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    parent = parents[0]
    assert parent.data.tags["sagemaker.tuning_job"] == tuning_job
    assert 0 <= parent.data.metrics["best_valid_accuracy"] <= 1
    assert {"report.html", "summary.json"} <= {a.path for a in client.list_artifacts(parent.info.run_id)}
    children = [run for run in runs if run.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(run.data.tags["sagemaker.training_job"] for run in children) == sorted(trial_jobs)
    assert all(run.data.tags["sagemaker.tuning_job"] == tuning_job for run in children)
    assert all("valid_accuracy" in run.data.metrics for run in children)


def _check_tensorboard_hparams(folder: Path, tmp_path: Path) -> Path:
    """``tensorboard --logdir`` over the job: a session per trial in HParams, and a screenshot."""
    port = helpers.free_port()
    url = f"http://127.0.0.1:{port}"
    command = [str(TENSORBOARD), "--logdir", str(folder), "--host", "127.0.0.1", "--port", str(port)]
    with helpers.service(command, f"{url}/data/runs", tmp_path / "tensorboard.log"):
        request = urllib.request.Request(
            f"{url}/data/plugin/hparams/session_groups",
            json.dumps(SESSION_GROUPS).encode(),
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            groups = json.loads(response.read())["sessionGroups"]
        sessions = {session["name"] for group in groups for session in group["sessions"]}
        assert len(sessions) == 3 and all("/jobs/ci-local-00" in f"/{name}" for name in sessions), sessions
        assert all("learning_rate" in group["hparams"] for group in groups)
        png = screenshot(f"{url}/#hparams", tmp_path / "hparams.png", height=900)
    counts, _ = colour_counts(png)
    assert len(counts) > 50, "the dashboard rendered (not a blank page)"
    return png
