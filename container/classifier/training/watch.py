"""The training program's side of watching a job (classifier.watching): which watchers, with what.

Global rank 0 only. TensorBoard writes unless ``CLASSIFIER_TENSORBOARD=off`` (SageMaker uploads
the folder when the job has a TensorBoard output config); MLflow logs when
``MLFLOW_TRACKING_URI`` is set.
"""

from __future__ import annotations

import logging

import numpy as np

from classifier import constants
from classifier.debugging.report import REPORT_HTML
from classifier.redaction import redact_uri
from classifier.training import job_outputs
from classifier.training.environment import TrainingEnvironment
from classifier.training.hyperparameters import Hyperparameters
from classifier.training.results import JobResult
from classifier.watching.base import JobEnd, JobFacts, JobWatcher, Watchers

logger = logging.getLogger(__name__)


def job_facts(env: TrainingEnvironment, hp: Hyperparameters) -> JobFacts:
    objective = env.hyperparameters.get(constants.TUNING_OBJECTIVE_KEY)
    return JobFacts(
        job_name=env.job_name,
        tuning_job_name=env.tuning_job_name,
        instance_type=env.instance_type,
        instance_count=len(env.hosts),
        image=env.image_uri,
        hyperparameters=hp.to_dict(),
        objective_metric=str(objective).strip('"') if objective else None,
    )


def watchers_for(env: TrainingEnvironment, hp: Hyperparameters) -> Watchers:
    """The job's watchers, started; one that cannot be set up is warned about and left out."""
    watchers: list[JobWatcher] = []
    if env.environ.get(constants.TENSORBOARD_ENV, "").strip().lower() != "off":
        try:
            from classifier.watching.tensorboard import TensorBoardWatcher

            watchers.append(TensorBoardWatcher(env.tensorboard_dir))
        except Exception as error:  # noqa: BLE001 - watching never fails the job
            logger.warning("no TensorBoard event files: %s: %s", type(error).__name__, error)
    uri = env.environ.get(constants.MLFLOW_TRACKING_URI_ENV, "").strip()
    if uri:
        try:
            from classifier.watching.mlflow_tracking import MlflowWatcher

            register_as = env.environ.get(constants.MLFLOW_REGISTER_MODEL_ENV, "").strip() or None
            watchers.append(MlflowWatcher(uri, env.environ, register_as))
        except Exception as error:  # noqa: BLE001 - an unusable URI or plugin never fails the job
            logger.warning(
                "no MLflow run: %s=%s cannot be used (%s: %s)",
                constants.MLFLOW_TRACKING_URI_ENV,
                redact_uri(uri),
                type(error).__name__,
                error,
            )
    started = Watchers(watchers, hp.log_steps)
    started.start(job_facts(env, hp))
    return started


def epoch_values(metrics: dict[str, float], learning_rate: float, images_per_second: float) -> dict:
    return {**metrics, "learning_rate": learning_rate, "images_per_second": images_per_second}


def job_end(env: TrainingEnvironment, result: JobResult, figures: dict) -> JobEnd:
    """Final metrics (the best epoch's validation, the test split's, throughput) and the files."""
    best = result.best_history
    metrics = {f"best_{k}": best[k] for k in ("valid_accuracy", "valid_loss") if k in best}
    if result.test:
        metrics.update(test_accuracy=result.test["accuracy"], test_loss=result.test["loss"])
    if result.train_images_per_second:
        metrics["train_images_per_second"] = result.train_images_per_second
    metrics["epochs_run"] = result.epochs_run
    files = [
        env.model_dir / constants.MODEL_CONFIG_FILE,
        env.output_data_dir / job_outputs.METRICS_FILE,
        env.output_data_dir / REPORT_HTML,
    ]
    return JobEnd(metrics=metrics, figures=figures, artifacts=files, model_dir=env.model_dir)


# The end-of-job figures look at this many validation images at most, spread over the split: the
# pass runs on rank 0 alone while the other ranks wait at the job's last barrier.
FIGURE_IMAGES = 2048


def figure_subset(dataset):
    """``dataset``, or ``FIGURE_IMAGES`` of its items evenly spread, with ``samples`` and ``targets``."""
    if len(dataset) <= FIGURE_IMAGES:
        return dataset
    import torch

    step = len(dataset) / FIGURE_IMAGES
    indices = [int(i * step) for i in range(FIGURE_IMAGES)]

    class Spread(torch.utils.data.Subset):
        samples: list
        targets: list

    subset = Spread(dataset, indices)
    subset.samples = [dataset.samples[i] for i in indices]
    subset.targets = [dataset.targets[i] for i in indices]
    return subset


def end_figures(class_names: list[str], dataset, outcomes, test_report: dict | None) -> dict:
    """The confusion matrix (the test split's if there is one, else the validation split's) and
    the worst mispredicted validation images, from ``outcomes`` = (indices, probabilities)."""
    from classifier.watching import figures as draw

    indices, probabilities = outcomes
    paths = [dataset.samples[i][0] for i in indices]
    targets = np.asarray([dataset.targets[i] for i in indices], dtype=np.int64)
    figures = {}
    if test_report is not None:
        figures["test/confusion_matrix"] = draw.confusion_figure(
            class_names, np.asarray(test_report["confusion_matrix"]), "Test confusion matrix"
        )
    elif len(indices):
        matrix = np.zeros((len(class_names), len(class_names)), dtype=np.int64)
        np.add.at(matrix, (targets, probabilities.argmax(axis=1)), 1)
        figures["valid/confusion_matrix"] = draw.confusion_figure(class_names, matrix, "Validation confusion")
    if len(indices):
        worst = draw.worst_mispredictions(paths, targets, probabilities, class_names)
        figures["valid/worst_mispredictions"] = draw.worst_mispredictions_figure(worst)
    return {name: figure for name, figure in figures.items() if figure is not None}
