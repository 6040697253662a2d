"""An MLflow run per training job, on any tracking server, a SageMaker managed one included.

With ``MLFLOW_TRACKING_URI`` set (``sm-classifier train --mlflow-tracking-uri``), the job logs
to the experiment ``MLFLOW_EXPERIMENT_NAME`` (by default the tuning job's name, else the
training job's): every resolved hyperparameter as a param, each epoch's metrics with the
epoch as the step, tags naming the jobs, instances and image, and at the end the model
config, metrics.json, report.html and the confusion matrix; ``CLASSIFIER_MLFLOW_REGISTER_MODEL``
also registers the model. A tracking server ARN works as the URI: the ``sagemaker-mlflow``
plugin signs the requests with the job's role ("The AWS MLflow plugin authenticates API calls
made with MLflow using AWS Signature Version 4", developer guide, "Log metrics, parameters,
and MLflow models during training").

A server that is down, slow or refusing never fails nor stalls the job: each request is
bounded (``MLFLOW_HTTP_REQUEST_TIMEOUT`` 10 s, one retry, unless the job's environment sets
them), the first failure is warned about once with the URI and the reason, nothing more is
sent, and the job's log says at the end what was not logged.
"""

from __future__ import annotations

import functools
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TypeVar

from classifier import constants, redaction
from classifier.hyperparameter_schema import as_text
from classifier.redaction import redact_uri
from classifier.watching.base import JobEnd, JobFacts, JobWatcher

T = TypeVar("T")

logger = logging.getLogger(__name__)

# MLflow's own defaults (120 s per request, 7 retries with backoff) would stall a job for
# minutes on an unreachable server; a job's environment may still set its own.
# The run's URL goes to the log (start), not to stdout, where the CLI prints its JSON.
CLIENT_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "10",
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}
MODEL_ARTIFACT_PATH = "model"


def experiment_name(environ: Mapping[str, str], facts: JobFacts) -> str:
    return environ.get(constants.MLFLOW_EXPERIMENT_ENV, "").strip() or facts.tuning_job_name or facts.job_name


class MlflowWatcher(JobWatcher):
    """One MLflow run of this job, written through ``MlflowClient`` with every request bounded."""

    name = "MLflow"

    def __init__(self, tracking_uri: str, environ: Mapping[str, str], register_as: str | None = None):
        for name, value in CLIENT_DEFAULTS.items():
            os.environ.setdefault(name, environ.get(name, value))
        from mlflow import MlflowClient

        self.tracking_uri = tracking_uri
        self.shown_uri = redact_uri(tracking_uri)
        # The client's errors quote the URI whole: its password is masked here even where
        # redaction.install did not see it (a watcher built outside a job).
        self._own_secret = redaction.Redactor(filter(None, [redaction.uri_secret(tracking_uri)]))
        self.environ = environ
        self.register_as = register_as
        self.client = MlflowClient(tracking_uri=tracking_uri)
        if not tracking_uri.startswith("arn:"):
            # sagemaker-mlflow's request header provider reads any tracking URI as an ARN and
            # logs a warning on every request to another server.
            logging.getLogger("mlflow.tracking.request_header.registry").setLevel(logging.ERROR)
        self.run_id: str | None = None
        self.failure: str | None = None
        self.missed: list[str] = []
        self._finished = False
        self._job_done = False
        # The run's status when the job did not finish (a continued local tuning job: KILLED).
        self.unfinished_status = "FAILED"

    def _call(self, what: str, action: Callable[[], T]) -> T | None:
        """``action`` unless the server already failed; a first failure is warned about once."""
        if self.failure is not None:
            self.missed.append(what)
            return None
        try:
            return action()
        except Exception as error:  # noqa: BLE001 - any client or transport error; see module docstring
            text = str(error).splitlines()[0][:300] if str(error) else ""
            self.failure = self._own_secret.redact(redaction.redact(f"{type(error).__name__}: {text}"))
            self.missed.append(what)
            logger.warning(
                "MLflow tracking server %s failed (%s) on %s; training goes on, nothing more is sent to it",
                self.shown_uri, self.failure, what,
            )  # fmt: skip
            return None

    def start(self, facts: JobFacts) -> None:
        from mlflow.entities import Param

        name = experiment_name(self.environ, facts)
        experiment_id = self._call(f"experiment {name}", lambda: self._experiment_id(name))
        if experiment_id is None:
            return
        tags = run_tags(facts, self.environ)
        run = self._call(
            "the run", lambda: self.client.create_run(experiment_id, run_name=facts.job_name, tags=tags)
        )
        if run is None:
            return
        run_id = self.run_id = run.info.run_id
        params = [Param(key, as_text(value)) for key, value in sorted(facts.hyperparameters.items())]
        self._call("the hyperparameters", lambda: self.client.log_batch(run_id, params=params))
        logger.info("MLflow run %s in experiment %r at %s", self.run_id, name, self.shown_uri)

    def attach(self, run_id: str) -> None:
        """Go on with an existing run (a local tuning job continued), instead of :meth:`start`."""
        self.run_id = run_id

    def _experiment_id(self, name: str) -> str:
        from mlflow.exceptions import MlflowException

        found = self.client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return self.client.create_experiment(name)
        except MlflowException:
            # Another trial of the same tuning job created it in between.
            found = self.client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    def epoch(self, epoch: int, values: dict[str, float]) -> None:
        self._log_metrics(f"epoch {epoch} metrics", values, epoch)

    def _log_metrics(self, what: str, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        run_id = self.run_id
        if run_id is None:
            self.missed.append(what)
            return
        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, step) for k, v in values.items() if isinstance(v, (int, float))]
        self._call(what, lambda: self.client.log_batch(run_id, metrics=metrics))

    def finish(self, end: JobEnd) -> None:
        self._log_metrics("the final metrics", end.metrics, 0)
        run_id = self.run_id
        if run_id is None:
            return
        self._job_done = True
        for path in end.artifacts:
            if path.is_file():
                self._call(path.name, functools.partial(self.client.log_artifact, run_id, str(path)))
        for name, figure in end.figures.items():
            file = f"{name.replace('/', '_')}.png"
            self._call(file, functools.partial(self.client.log_figure, run_id, figure, file))
        if self.register_as and end.model_dir is not None:
            self._register(end.model_dir, run_id, self.register_as)
        self._call("the run's end", lambda: self.client.set_terminated(run_id, "FINISHED"))
        self._finished = self.failure is None  # else close() tries the end once more

    def _register(self, model_dir: Path, run_id: str, register_as: str) -> None:
        """The model directory as the run's ``model`` artifacts, then a version of ``register_as``."""
        from mlflow.exceptions import MlflowException

        def upload() -> bool:
            self.client.log_artifacts(run_id, str(model_dir), MODEL_ARTIFACT_PATH)
            return True

        if self._call("the model files", upload) is None:
            return

        def register():
            try:
                self.client.create_registered_model(register_as)
            except MlflowException as error:
                if error.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            source = f"runs:/{run_id}/{MODEL_ARTIFACT_PATH}"
            return self.client.create_model_version(register_as, source, run_id=run_id)

        version = self._call(f"registering model {register_as}", register)
        if version is not None:
            logger.info("registered %s version %s in MLflow", register_as, version.version)

    def close(self) -> list[str]:
        """The run's end status, tried once even after a failure (one bounded request), so a
        transient failure does not leave it RUNNING; FINISHED if the job finished."""
        if self.run_id is not None and not self._finished:
            status = "FINISHED" if self._job_done else self.unfinished_status
            try:
                self.client.set_terminated(self.run_id, status)
            except Exception as error:  # noqa: BLE001 - see the module docstring
                self.missed.append(f"the run's end ({type(error).__name__})")
        if not self.missed:
            return []
        return [f"{', '.join(self.missed)} (to {self.shown_uri}: {self.failure or 'no run'})"]


def run_tags(facts: JobFacts, environ: Mapping[str, str]) -> dict[str, str]:
    tags = {
        "sagemaker.training_job": facts.job_name,
        "sagemaker.instance_type": facts.instance_type,
        "sagemaker.instance_count": str(facts.instance_count),
        "sagemaker.image": facts.image,
    }
    if facts.tuning_job_name:
        tags["sagemaker.tuning_job"] = facts.tuning_job_name
    parent = environ.get(constants.MLFLOW_PARENT_RUN_ENV, "").strip()
    if parent:
        tags["mlflow.parentRunId"] = parent
    return tags
