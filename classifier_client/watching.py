"""How a job is watched while it runs: its TensorBoard output in S3 and its MLflow tracking server.

The training container writes both (``classifier.watching``); the client says where, checked
before any AWS call. A training job gets a TensorBoard output config (API reference,
CreateTrainingJob: ``TensorBoardOutputConfig``, "Configuration of storage locations for the
Amazon SageMaker Debugger TensorBoard output data"), which SageMaker syncs from
``/opt/ml/output/tensorboard``. A tuning job's training job definition has no such member
(HyperParameterTrainingJobDefinition lists CheckpointConfig, Environment and the rest, not
TensorBoardOutputConfig), so its trials write their event files under their checkpoint folder,
which SageMaker syncs to the tuning job's checkpoint prefix while they run.
MLflow reaches the container through its environment: ``MLFLOW_TRACKING_URI`` (an http(s)
URL, or a SageMaker managed tracking server's ARN), ``MLFLOW_EXPERIMENT_NAME``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from classifier import constants
from classifier.redaction import redact_uri, uri_has_credentials
from classifier_client.config import ConfigurationError

# botocore's TrackingServerArn pattern.
TRACKING_SERVER_ARN = re.compile(r"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:mlflow-tracking-server/.+")
TENSORBOARD_LOCAL_PATH = "/opt/ml/output/tensorboard"


@dataclass(frozen=True)
class WatchSettings:
    tensorboard_s3_uri: str | None = None
    mlflow_tracking_uri: str | None = None
    mlflow_experiment: str | None = None
    mlflow_register_model: str | None = None

    def __post_init__(self):
        if self.tensorboard_s3_uri and not self.tensorboard_s3_uri.startswith("s3://"):
            raise ConfigurationError(f"--tensorboard-s3-uri {self.tensorboard_s3_uri!r} is not an s3:// URI")
        uri = self.mlflow_tracking_uri
        if uri and not (uri.startswith(("http://", "https://")) or TRACKING_SERVER_ARN.fullmatch(uri)):
            raise ConfigurationError(
                f"--mlflow-tracking-uri {uri!r} is neither an http(s):// URL nor a SageMaker MLflow "
                "tracking server ARN (arn:aws:sagemaker:REGION:ACCOUNT:mlflow-tracking-server/NAME)"
            )
        if uri and uri_has_credentials(uri):
            raise ConfigurationError(
                f"--mlflow-tracking-uri {redact_uri(uri)}: credentials in the URI would travel in the "
                "job's environment, readable by anyone who may describe it, and in its logs. Use a "
                "SageMaker managed MLflow tracking server (its ARN: the execution role authenticates), "
                "or a server the job's network reaches without credentials"
            )
        if (self.mlflow_experiment or self.mlflow_register_model) and not uri:
            raise ConfigurationError(
                "--mlflow-experiment and --mlflow-register-model need --mlflow-tracking-uri"
            )

    def environment(self, default_experiment: str, tuning_job_name: str | None = None) -> dict[str, str]:
        """The training container's environment for MLflow (empty without a tracking URI)."""
        env = {}
        if tuning_job_name:
            env[constants.TUNING_JOB_NAME_ENV] = tuning_job_name
        if not self.mlflow_tracking_uri:
            return env
        env[constants.MLFLOW_TRACKING_URI_ENV] = self.mlflow_tracking_uri
        env[constants.MLFLOW_EXPERIMENT_ENV] = self.mlflow_experiment or default_experiment
        if self.mlflow_register_model:
            env[constants.MLFLOW_REGISTER_MODEL_ENV] = self.mlflow_register_model
        return env

    def tensorboard_output_config(self, job_name: str):
        """CreateTrainingJob's TensorBoardOutputConfig, a folder per job under the URI (None without)."""
        if not self.tensorboard_s3_uri:
            return None
        from sagemaker.core import shapes

        return shapes.TensorBoardOutputConfig(
            s3_output_path=f"{self.tensorboard_s3_uri.rstrip('/')}/{job_name}",
            local_path=TENSORBOARD_LOCAL_PATH,
        )
