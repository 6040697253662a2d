"""The SageMaker training contract, read once into one object.

Why not ``sagemaker_training.environment.Environment``: it binds every path to
``SAGEMAKER_BASE_DIR`` at import time, writes to ``os.environ`` and probes subprocesses on
construction. We read the same files under the same names, at construction time, so a
test can point ``SAGEMAKER_BASE_DIR`` at a fresh tree. Hardware counts come from
sagemaker-training, and so does the error convention (``classifier.errors``). Its
intermediate-output upload is not started: ``intermediate_output.start_sync`` needs the
``sagemaker_s3_output`` hyperparameter that only the SDK's framework estimators add, and this
job writes nothing to ``output/intermediate``.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from classifier import constants, opt_ml
from classifier.errors import JobInputError


class ContractError(JobInputError):
    """A SageMaker config file or channel is missing or malformed."""


def _read_json(path: Path, required: bool, default: Any) -> Any:
    if not path.exists():
        if required:
            raise ContractError(f"missing {path}")
        return default
    try:
        return json.loads(path.read_text() or "null") or default
    except json.JSONDecodeError as error:
        raise ContractError(f"{path} is not valid JSON: {error}") from error


@dataclass(frozen=True)
class TrainingEnvironment:
    base_dir: Path
    hyperparameters: dict[str, Any]
    input_data_config: dict[str, Any]
    resource_config: dict[str, Any]
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)
    # The CheckpointConfig and TensorBoardOutputConfig SageMaker wrote, if any.
    checkpoint_config: dict[str, Any] = field(default_factory=dict)
    tensorboard_config: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> TrainingEnvironment:
        """Every file of the contract, read now, once."""
        environ = dict(os.environ if environ is None else environ)
        base_dir = opt_ml.base_dir(environ)
        hyperparameters = _read_json(base_dir / constants.HYPERPARAMETERS_FILE, False, {})
        if not isinstance(hyperparameters, dict):
            raise ContractError(f"{constants.HYPERPARAMETERS_FILE} must hold a JSON object")
        return cls(
            base_dir=base_dir,
            hyperparameters=hyperparameters,
            input_data_config=_read_json(base_dir / constants.INPUT_DATA_CONFIG_FILE, False, {}),
            resource_config=_read_json(base_dir / constants.RESOURCE_CONFIG_FILE, False, {}),
            environ=environ,
            checkpoint_config=_read_json(base_dir / constants.CHECKPOINT_CONFIG_FILE, False, {}),
            tensorboard_config=_read_json(base_dir / constants.TENSORBOARD_CONFIG_FILE, False, {}),
        )

    # Paths ---------------------------------------------------------------
    @property
    def model_dir(self) -> Path:
        return self.base_dir / constants.MODEL_DIR

    @property
    def output_dir(self) -> Path:
        return self.base_dir / constants.OUTPUT_DIR

    @property
    def output_data_dir(self) -> Path:
        return self.base_dir / constants.OUTPUT_DATA_DIR

    @property
    def failure_file(self) -> Path:
        return self.base_dir / constants.FAILURE_FILE

    @property
    def checkpoint_dir(self) -> Path:
        """CheckpointConfig.LocalPath when the job set one, else /opt/ml/checkpoints.

        API reference, CheckpointConfig: "LocalPath (Optional) The local directory where
        checkpoints are written. The default directory is /opt/ml/checkpoints/." A path
        under /opt/ml follows SAGEMAKER_BASE_DIR like every other path of the contract.
        """
        default = Path(constants.DEFAULT_BASE_DIR, constants.CHECKPOINT_DIR)
        path = opt_ml.local_path(self.checkpoint_config, default, self.base_dir)
        # The training jobs of a tuning job share its TrainingJobDefinition's CheckpointConfig,
        # so they sync one S3 prefix; nothing in the API reference separates them per job.
        # Each trial keeps its checkpoints under its own job name (a spot restart keeps it).
        if self.is_tuning_trial:
            path = path / self.environ[constants.TRAINING_JOB_NAME_ENV]
        return path

    @property
    def tensorboard_dir(self) -> Path:
        """Where the job writes TensorBoard event files (see classifier.watching.tensorboard).

        ``CLASSIFIER_TENSORBOARD_DIR`` when the client set it, else the LocalPath of the job's
        TensorBoard output config, else /opt/ml/output/tensorboard. A tuning trial has no such
        config (HyperParameterTrainingJobDefinition has no TensorBoardOutputConfig member): it
        writes under its checkpoint root, which SageMaker syncs to S3 while the job runs.
        """
        given = self.environ.get(constants.TENSORBOARD_DIR_ENV, "").strip()
        if given:
            return opt_ml.rebased(Path(given), self.base_dir)
        if self.is_tuning_trial and self.checkpoint_config:
            return self.checkpoint_dir.parent / "tensorboard" / self.environ[constants.TRAINING_JOB_NAME_ENV]
        default = Path(constants.DEFAULT_BASE_DIR, constants.TENSORBOARD_DIR)
        return opt_ml.local_path(self.tensorboard_config, default, self.base_dir)

    @property
    def job_name(self) -> str:
        return self.environ.get(constants.TRAINING_JOB_NAME_ENV, "").strip() or "local-training-job"

    @property
    def tuning_job_name(self) -> str | None:
        """The client's ``CLASSIFIER_TUNING_JOB_NAME``, else, for a trial, its job name less the
        ``-NNN-xxxxxxxx`` SageMaker appends to the tuning job's name."""
        given = self.environ.get(constants.TUNING_JOB_NAME_ENV, "").strip()
        if given or not self.is_tuning_trial:
            return given or None
        parts = self.job_name.rsplit("-", 2)
        return parts[0] if len(parts) == 3 and parts[1].isdigit() else None

    @property
    def instance_type(self) -> str:
        return str(self.resource_config.get("current_instance_type") or "local")

    @property
    def image_uri(self) -> str:
        return self.environ.get(constants.IMAGE_URI_ENV, "").strip() or "unknown"

    @property
    def is_tuning_trial(self) -> bool:
        """A training job a tuning job started: SageMaker adds the objective's key to its
        hyperparameters."""
        job_name = self.environ.get(constants.TRAINING_JOB_NAME_ENV)
        return bool(job_name) and constants.TUNING_OBJECTIVE_KEY in self.hyperparameters

    def check_input_modes(self) -> None:
        """Refuse Pipe mode: this program reads channels as folders of files.

        File and FastFile both present a channel as a folder under /opt/ml/input/data; Pipe
        delivers a FIFO per epoch instead, where the job would only find "no train channel".
        """
        for channel, config in sorted(self.input_data_config.items()):
            mode = config.get("TrainingInputMode") if isinstance(config, dict) else None
            if mode == "Pipe":
                raise ContractError(
                    f"channel '{channel}' uses TrainingInputMode=Pipe, which this image does not "
                    "support: it reads image folders. Use File or FastFile input mode"
                )

    @property
    def tensors_dir(self) -> Path:
        return self.base_dir / constants.TENSORS_DIR

    @property
    def debughook_config_file(self) -> Path:
        return self.base_dir / constants.DEBUGHOOK_CONFIG_FILE

    # Channels ------------------------------------------------------------
    def channel_dir(self, name: str) -> Path | None:
        """The channel's folder if it exists (declared in inputdataconfig.json or just present)."""
        path = self.base_dir / constants.INPUT_DATA_DIR / name
        return path if path.is_dir() else None

    def train_channel(self) -> Path:
        path = self.channel_dir(constants.TRAIN_CHANNEL)
        if path is None:
            raise ContractError(
                f"no 'train' channel: {self.base_dir / constants.INPUT_DATA_DIR / 'train'} is missing"
            )
        return path

    def valid_channel(self) -> Path:
        for name in constants.VALID_CHANNELS:
            path = self.channel_dir(name)
            if path is not None:
                return path
        raise ContractError(
            "no validation channel: provide 'valid' or 'validation' under "
            f"{self.base_dir / constants.INPUT_DATA_DIR}"
        )

    def test_channel(self) -> Path | None:
        return self.channel_dir(constants.TEST_CHANNEL)

    def pretrained_channel(self) -> Path | None:
        return self.channel_dir(constants.PRETRAINED_CHANNEL)

    # Cluster -------------------------------------------------------------
    @property
    def hosts(self) -> list[str]:
        return sorted(self.resource_config.get("hosts") or [self.current_host])

    @property
    def current_host(self) -> str:
        return self.resource_config.get("current_host") or socket.gethostname()

    @property
    def host_rank(self) -> int:
        return self.hosts.index(self.current_host)

    @property
    def master_addr(self) -> str:
        return self.environ.get(constants.MASTER_ADDR_ENV) or self.hosts[0]

    @property
    def master_port(self) -> int:
        return int(self.environ.get(constants.MASTER_PORT_ENV) or constants.DEFAULT_MASTER_PORT)

    def processes_per_host(self, num_gpus: int) -> int:
        override = self.environ.get(constants.PROCESSES_PER_HOST_ENV)
        if override:
            try:
                value = int(override)
            except ValueError:
                value = 0
            if value < 1:
                raise ContractError(
                    f"{constants.PROCESSES_PER_HOST_ENV}={override!r} must be a positive integer"
                )
            return value
        return max(num_gpus, 1)
