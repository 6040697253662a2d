"""Training jobs over our image: on SageMaker, or in SDK local mode with the same settings.

Both paths build one ``sagemaker.train.ModelTrainer`` (image, hyperparameters as strings,
channels, compute, spot + checkpoints, metric definitions from the shared module). Local
mode runs it with ``Mode.LOCAL_CONTAINER``: docker-compose, one container per instance on
the ``sagemaker-local`` network, exactly the hosts/resourceconfig SageMaker would give.

ModelTrainer (SDK 3.27) has no Debugger or profiler options, so on SageMaker the request
ModelTrainer builds is completed with DebugHookConfig, DebugRuleConfigurations and
ProfilerConfig and sent with ``sagemaker.core.resources.TrainingJob.create`` — the call
``ModelTrainer.train`` itself makes.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from classifier.constants import (
    CHECKPOINT_LOCAL_PATH,
    IMAGE_URI_ENV,
    MLFLOW_TRACKING_URI_ENV,
    MODEL_CONFIG_FILE,
)
from classifier.debugger_contract import custom_rule_source_path
from classifier.hyperparameter_schema import HyperparameterValueError, as_text, parse_values
from classifier.metric_definitions import METRIC_DEFINITIONS
from classifier_client.account_settings import (
    AccountSettings,
    RequestSettings,
    check_retries,
    refuse_secrets,
    s3_encryption,
)
from classifier_client.config import AwsContext, ConfigurationError, parse_s3_uri, unique_name
from classifier_client.debugger import (
    DebuggerSettings,
    debug_hook_config,
    debug_rule_configurations,
    profiler_config,
    rule_evaluator_image,
)
from classifier_client.image import pin_image
from classifier_client.watching import WatchSettings

logger = logging.getLogger(__name__)

DEFAULT_INSTANCE_TYPE = "ml.m5.xlarge"
DEFAULT_BASE_JOB_NAME = "image-classifier"
DEFAULT_MAX_RUN_SECONDS = 24 * 3600
DEFAULT_VOLUME_SIZE_GB = 30
LOCAL_INSTANCE_TYPES = ("local_cpu", "local_gpu")


def hyperparameter_strings(values: Mapping[str, Any]) -> dict[str, str]:
    """SageMaker hyperparameters are strings; booleans as the lower-case words we parse."""
    result = {}
    for key, value in values.items():
        if isinstance(value, (dict, list)):
            raise ConfigurationError(f"hyperparameter {key!r} must be a scalar, got {value!r}")
        result[key] = as_text(value)
    return result


def parse_assignments(pairs: list[str] | None, what: str = "hyperparameter") -> dict[str, str]:
    """``["epochs=3", "optimizer=adam"]`` -> ``{"epochs": "3", "optimizer": "adam"}``."""
    result = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigurationError(f"{what} {pair!r} is not KEY=VALUE")
        result[key.strip()] = value.strip()
    return result


def load_hyperparameters_file(path: str | os.PathLike) -> dict[str, str]:
    """A JSON object of hyperparameters, or the output of ``best`` (its "hyperparameters")."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise ConfigurationError(f"cannot read hyperparameters from {path}: {error}") from error
    if isinstance(data, dict) and isinstance(data.get("hyperparameters"), dict):
        data = data["hyperparameters"]
    if not isinstance(data, dict):
        raise ConfigurationError(f"{path} must hold a JSON object of hyperparameters")
    return hyperparameter_strings(data)


class Hyperparameters(Mapping[str, str]):
    """A job's hyperparameters as SageMaker sends them (strings), checked when made as the
    training container checks them (classifier.hyperparameter_schema): a job it would refuse
    is never started, so no instance is provisioned and billed for it."""

    def __init__(self, values: Mapping[str, Any] | None = None) -> None:
        strings = hyperparameter_strings(values or {})
        try:
            parse_values(strings)
        except HyperparameterValueError as error:
            raise ConfigurationError(
                f"{error} (the training job would refuse it: nothing started)"
            ) from error
        self._values = strings

    @classmethod
    def load(
        cls,
        path: str | os.PathLike | None = None,
        assignments: list[str] | None = None,
        defaults: Mapping[str, str] | None = None,
    ) -> Hyperparameters:
        """A hyperparameters file (:func:`load_hyperparameters_file`), then ``KEY=VALUE``
        assignments over it, then ``defaults`` for the keys neither sets."""
        values = load_hyperparameters_file(path) if path else {}
        values.update(parse_assignments(assignments))
        for key, value in (defaults or {}).items():
            values.setdefault(key, value)
        return cls(values)

    def __getitem__(self, key: str) -> str:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"Hyperparameters({self._values!r})"


def metric_definitions():
    """The shared regexes as ModelTrainer MetricDefinition objects."""
    from sagemaker.core.training.configs import MetricDefinition

    return [MetricDefinition(name=d["Name"], regex=d["Regex"]) for d in METRIC_DEFINITIONS]


@dataclass
class TrainingSettings:
    """Everything a training job needs that is not Debugger; one object for both modes.
    ``image_uri`` None is the newest image `push` made (classifier_client.image.pin_image)."""

    image_uri: str | None
    channels: dict[str, str]
    hyperparameters: Mapping[str, str] = field(default_factory=dict)
    instance_type: str = DEFAULT_INSTANCE_TYPE
    instance_count: int = 1
    volume_size_gb: int = DEFAULT_VOLUME_SIZE_GB
    max_run_seconds: int = DEFAULT_MAX_RUN_SECONDS
    spot: bool = False
    max_wait_seconds: int | None = None
    checkpoint_s3_uri: str | None = None
    output_s3_uri: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    base_job_name: str = DEFAULT_BASE_JOB_NAME
    debugger: DebuggerSettings = field(default_factory=DebuggerSettings)
    watching: WatchSettings = field(default_factory=WatchSettings)
    # VPC, KMS keys, isolation, encryption and tags (docs/security.md); none by default.
    account: AccountSettings = field(default_factory=AccountSettings)
    max_retries: int | None = None
    # The image was built with PRETRAINED_MODELS including the model (container/Dockerfile).
    weights_in_image: bool = False

    def __post_init__(self):
        if not self.channels.get("train"):
            raise ConfigurationError("a training job needs a 'train' channel")
        if self.instance_count < 1:
            raise ConfigurationError("instance_count must be at least 1")
        if not isinstance(self.hyperparameters, Hyperparameters):
            self.hyperparameters = Hyperparameters(self.hyperparameters)
        check_retries(self.max_retries)
        refuse_secrets({**self.request.environment, **self.environment}, "--env")
        if self.request.network_isolation:
            self._refuse_what_isolation_stops()
        if self.spot:
            self.max_wait_seconds = self.max_wait_seconds or 2 * self.max_run_seconds
            if self.max_wait_seconds < self.max_run_seconds:
                raise ConfigurationError("--max-wait must be at least --max-run for spot training")
        elif self.max_wait_seconds:
            raise ConfigurationError("--max-wait only applies to spot training (--spot)")

    @property
    def request(self) -> RequestSettings:
        """The account's settings for this job's CreateTrainingJob."""
        return self.account.training(self.instance_type)

    def _refuse_what_isolation_stops(self) -> None:
        """ "Network isolation": the container "can't make any outbound network calls, even to
        other AWS services such as Amazon S3", and gets no AWS credentials."""
        tracking = self.watching.mlflow_tracking_uri or {
            **self.request.environment,
            **self.environment,
        }.get(MLFLOW_TRACKING_URI_ENV)
        if tracking:
            raise ConfigurationError(
                "network isolation with an MLflow tracking URI: an isolated container makes no "
                "outbound call and has no AWS credentials, so it could reach no tracking server "
                "(not even a SageMaker managed one); drop the tracking URI (--mlflow-tracking-uri, "
                "--env or the defaults file's Environment) or the isolation"
            )
        pretrained = parse_values(self.hyperparameters).get("pretrained", False)
        if pretrained and "pretrained" not in self.channels and not self.weights_in_image:
            raise ConfigurationError(
                "network isolation with pretrained=true: an isolated container cannot download the "
                "pretrained weights. Give them as a channel (--pretrained s3://.../state_dict.pt), or "
                "build the image with PRETRAINED_MODELS naming the model and pass --weights-in-image"
            )

    @property
    def checkpointing(self) -> bool:
        """Spot jobs always checkpoint: an interrupted job resumes from its last epoch."""
        return self.spot or bool(self.checkpoint_s3_uri)


def _input_data(channels: Mapping[str, str], local: bool):
    from sagemaker.core.training.configs import InputData

    inputs = []
    for name, source in sorted(channels.items()):
        if not source.startswith("s3://"):
            path = Path(source).expanduser().resolve()
            if not local:
                raise ConfigurationError(
                    f"channel {name}: {source} is a local path; SageMaker needs s3:// "
                    "(run `upload-data` first, or use --local)"
                )
            if not path.exists():
                raise ConfigurationError(f"channel {name}: {path} does not exist")
            source = str(path)
        inputs.append(InputData(channel_name=name, data_source=source))
    return inputs


def job_environment(settings: TrainingSettings, tuning_job_name: str | None = None) -> dict[str, str]:
    """The container's environment: the image it runs and where it is watched (classifier.watching),
    then the user's own ``--env`` values, which win."""
    default_experiment = tuning_job_name or settings.base_job_name
    return {
        IMAGE_URI_ENV: settings.image_uri or "",
        **settings.watching.environment(default_experiment, tuning_job_name),
        **settings.request.environment,
        **settings.environment,
    }


def build_model_trainer(
    settings: TrainingSettings,
    ctx: AwsContext,
    *,
    local: bool = False,
    local_root: str | os.PathLike | None = None,
):
    """The ModelTrainer for ``settings``; local mode swaps compute and mode, nothing else."""
    from sagemaker.train.model_trainer import ModelTrainer

    if local:
        if local_root is None:
            raise ConfigurationError("local mode needs the folder its jobs are kept in (local_root)")
        placement = _local_placement(settings, Path(local_root))
    else:
        placement = _cloud_placement(settings, ctx)
    trainer = ModelTrainer(
        training_image=settings.image_uri,
        role=ctx.role_arn,
        base_job_name=settings.base_job_name,
        hyperparameters=dict(settings.hyperparameters),
        environment=job_environment(settings),
        input_data_config=_input_data(settings.channels, local),
        **placement,
    )
    if settings.max_retries and not local:
        from sagemaker.core.shapes import RetryStrategy

        trainer = trainer.with_retry_strategy(RetryStrategy(maximum_retry_attempts=settings.max_retries))
    return trainer.with_metric_definitions(metric_definitions())


def _local_placement(settings: TrainingSettings, local_root: Path) -> dict[str, Any]:
    """ModelTrainer's compute and mode for a local-mode job kept under ``local_root``."""
    from sagemaker.core.training.configs import Compute
    from sagemaker.train.model_trainer import Mode

    if settings.instance_type not in LOCAL_INSTANCE_TYPES:
        raise ConfigurationError(
            f"local mode runs on {' or '.join(LOCAL_INSTANCE_TYPES)}, not {settings.instance_type}"
        )
    return {
        "compute": Compute(instance_type=settings.instance_type, instance_count=settings.instance_count),
        "training_mode": Mode.LOCAL_CONTAINER,
        "local_container_root": str(local_root.resolve()),
    }


def _cloud_placement(settings: TrainingSettings, ctx: AwsContext) -> dict[str, Any]:
    """ModelTrainer's compute, limits, output and checkpoints for a SageMaker training job."""
    from sagemaker.core.training.configs import (
        CheckpointConfig,
        Compute,
        OutputDataConfig,
        StoppingCondition,
    )
    from sagemaker.train.model_trainer import Mode

    if settings.instance_type in LOCAL_INSTANCE_TYPES:
        raise ConfigurationError(f"{settings.instance_type} needs --local")
    account = settings.request.warn()
    placement: dict[str, Any] = {
        "compute": Compute(
            instance_type=settings.instance_type,
            instance_count=settings.instance_count,
            volume_size_in_gb=settings.volume_size_gb,
            enable_managed_spot_training=settings.spot or None,
            volume_kms_key_id=account.volume_kms_key,
        ),
        "training_mode": Mode.SAGEMAKER_TRAINING_JOB,
        "sagemaker_session": ctx.sagemaker_session,
        "stopping_condition": StoppingCondition(
            max_runtime_in_seconds=settings.max_run_seconds,
            max_wait_time_in_seconds=settings.max_wait_seconds,
        ),
    }
    if settings.output_s3_uri or account.output_kms_key:
        # Without s3_output_path, ModelTrainer uses s3://<bucket>/<base name>.
        placement["output_data_config"] = OutputDataConfig(
            s3_output_path=settings.output_s3_uri, compression_type="GZIP", kms_key_id=account.output_kms_key
        )
    placement.update(_account_placement(account))
    if settings.checkpointing:
        # Without s3_uri, ModelTrainer uses s3://<bucket>/<base name>/<job>/checkpoints.
        placement["checkpoint_config"] = CheckpointConfig(
            s3_uri=settings.checkpoint_s3_uri, local_path=CHECKPOINT_LOCAL_PATH
        )
    return placement


def _account_placement(account: RequestSettings) -> dict[str, Any]:
    """ModelTrainer's networking (VPC, isolation, inter-container encryption) and tags."""
    from sagemaker.core.shapes import Tag
    from sagemaker.core.training.configs import Networking

    placement: dict[str, Any] = {}
    if account.vpc or account.network_isolation or account.inter_container_encryption:
        vpc = account.vpc or {}
        placement["networking"] = Networking(
            subnets=vpc.get("Subnets"),
            security_group_ids=vpc.get("SecurityGroupIds"),
            enable_network_isolation=account.network_isolation or None,
            enable_inter_container_traffic_encryption=account.inter_container_encryption or None,
        )
    if account.tags:
        placement["tags"] = [Tag(key=tag["Key"], value=tag["Value"]) for tag in account.tags]
    return placement


def _job_s3_prefix(output_path: str, job_name: str) -> str:
    return f"{output_path.rstrip('/')}/{job_name}"


def start_training_job(ctx: AwsContext, settings: TrainingSettings, *, wait: bool = False):
    """Create the SageMaker training job (with Debugger and profiler); returns TrainingJob."""
    from botocore.exceptions import ClientError
    from sagemaker.core import shapes
    from sagemaker.core.resources import TrainingJob

    ctx.require_role()
    debugger = settings.debugger
    evaluator = _rule_evaluator(ctx, debugger)
    _input_data(settings.channels, local=False)  # refused offline, before the image is looked up
    settings = replace(settings, image_uri=pin_image(ctx, settings.image_uri))
    trainer = build_model_trainer(settings, ctx)
    # The request ModelTrainer.train() would send (names, channels, compute, metrics...).
    # Private: ModelTrainer (sagemaker 3.27) has no public way to add Debugger's hook, rule and
    # profiler configurations, so we send CreateTrainingJob ourselves with its arguments.
    # tests/sdk/test_cloud_requests.py::test_train_sends_image_hyperparameters_channels_debugger_profiler_spot
    # fails when this method goes or changes its shape.
    request = trainer._create_training_job_args()
    job_name = request["training_job_name"]
    job_prefix = _job_s3_prefix(request["output_data_config"].s3_output_path, job_name)

    hook = debug_hook_config(debugger, f"{job_prefix}/debug-output")
    if hook:
        request["debug_hook_config"] = shapes.DebugHookConfig(**hook)
    if evaluator is not None:  # the job has rules
        source_uri = upload_rule_source(ctx, f"{job_prefix}/debugger-rules", settings.request.output_kms_key)
        request["debug_rule_configurations"] = [
            shapes.DebugRuleConfiguration(**rule)
            for rule in debug_rule_configurations(debugger, evaluator, source_uri)
        ]
    request["profiler_config"] = shapes.ProfilerConfig(
        **profiler_config(debugger, f"{job_prefix}/profiler-output")
    )
    tensorboard = settings.watching.tensorboard_output_config(job_name)
    if tensorboard is not None:
        request["tensor_board_output_config"] = tensorboard
    try:
        job = TrainingJob.create(session=ctx.boto_session, region=ctx.region, **request)
    except ClientError as error:
        raise _explain_create_error(error, debugger) from error
    if wait:
        job.wait(logs=True)
    return job


def _rule_evaluator(ctx: AwsContext, debugger: DebuggerSettings) -> str | None:
    """The custom-rule evaluator image, checked before anything is uploaded or created."""
    if not debugger.rules:
        return None
    try:
        return rule_evaluator_image(ctx.region, debugger.rule_evaluator_image)
    except ValueError as error:
        raise ConfigurationError(str(error)) from error


def _explain_create_error(error, debugger: DebuggerSettings) -> Exception:
    code = error.response.get("Error", {}).get("Code", "")
    message = error.response.get("Error", {}).get("Message", "")
    hint = ""
    if debugger.rules and ("rule" in message.lower() or "debug" in message.lower()):
        hint = (
            " — this account may not allow Debugger rule jobs; rerun with --debugger-rules none "
            "(the training job still evaluates our rules itself and logs the verdicts)."
        )
    elif code == "ResourceLimitExceeded":
        hint = " — request a quota increase for this instance type, or pick another one."
    elif code in ("AccessDeniedException", "AccessDenied"):
        hint = " — see the IAM section of docs/sagemaker.md (caller needs iam:PassRole)."
    return ConfigurationError(f"CreateTrainingJob failed ({code}): {message}{hint}")


def upload_rule_source(ctx: AwsContext, s3_prefix: str, kms_key: str | None = None) -> str:
    """Upload the rules' source file (with the job's key, if any); SageMaker hands it to the
    rule evaluator image."""
    source = custom_rule_source_path()
    bucket, key_prefix = parse_s3_uri(s3_prefix.rstrip("/") + "/")
    key = key_prefix + Path(source).name
    ctx.client("s3").upload_file(source, bucket, key, ExtraArgs=s3_encryption(kms_key))
    return f"s3://{bucket}/{key}"


@dataclass
class LocalTrainingResult:
    job_dir: Path
    model_archive: Path
    output_archive: Path


def check_local_training(settings: TrainingSettings, wait: bool = False) -> None:
    """What a local training job cannot do, refused before anything runs; ``wait`` is SageMaker's
    (a local job always waits)."""
    cloud_only = {
        "--spot": settings.spot,
        "--checkpoint-s3-uri": settings.checkpoint_s3_uri,
        "--output-s3-uri": settings.output_s3_uri,
        "--tensorboard-s3-uri": settings.watching.tensorboard_s3_uri,
        "--debugger-rules": settings.debugger.rules,
        "--wait": wait,
    }
    given = [flag for flag, value in cloud_only.items() if value]
    if given:
        raise ConfigurationError(
            f"{', '.join(given)}: for SageMaker jobs only, not with --local "
            "(a local job runs our rules itself when debug=true, the default)"
        )


def train_locally(ctx: AwsContext, settings: TrainingSettings, local_root: str | os.PathLike):
    """Run the job in SDK local mode; returns where model.tar.gz and output.tar.gz landed.

    The job directory is ``local_root/<job name>``: every host's config and output are
    made there by the SDK, and the compressed artefacts stay there after the run.
    """
    check_local_training(settings)
    job_dir = Path(local_root).expanduser().resolve() / unique_name(settings.base_job_name)
    job_dir.mkdir(parents=True)
    trainer = build_model_trainer(settings, ctx, local=True, local_root=job_dir)
    try:
        trainer.train(wait=True, logs=True)
    finally:
        _remove_compose_containers(job_dir / "docker-compose.yaml")
    compressed = job_dir / "compressed_artifacts"
    result = LocalTrainingResult(job_dir, compressed / "model.tar.gz", compressed / "output.tar.gz")
    if not result.model_archive.exists():
        raise RuntimeError(f"local training finished without {result.model_archive}")
    with tarfile.open(result.model_archive) as archive:
        if MODEL_CONFIG_FILE not in {Path(name).name for name in archive.getnames()}:
            # docker-compose stops every container as soon as one exits: a job whose
            # master had not written the model yet leaves an empty archive.
            raise RuntimeError(
                f"the local job ended without a model ({result.model_archive} holds no "
                f"{MODEL_CONFIG_FILE}); see the container logs above"
            )
    return result


def _remove_compose_containers(compose_file: Path) -> None:
    """The SDK leaves the job's stopped containers behind; remove them (not the network,
    which other local jobs may be using)."""
    if not compose_file.exists():
        return
    v2 = subprocess.run(["docker", "compose", "version"], capture_output=True, check=False)
    compose = ["docker", "compose"] if v2.returncode == 0 else ["docker-compose"]
    removed = subprocess.run(
        [*compose, "-f", str(compose_file), "rm", "--force", "--stop"],
        capture_output=True,
        text=True,
        check=False,
    )
    if removed.returncode != 0:
        logger.warning("could not remove the job's containers: %s", removed.stderr.strip())


def describe_training_job(ctx: AwsContext, job_name: str) -> dict[str, Any]:
    """Status, model artefact and final metrics of a job, for the CLI."""
    from sagemaker.core.resources import TrainingJob

    job = TrainingJob.get(training_job_name=job_name, session=ctx.boto_session, region=ctx.region)
    artifacts = getattr(job, "model_artifacts", None)
    return {
        "TrainingJobName": job.training_job_name,
        "TrainingJobStatus": job.training_job_status,
        "ModelArtifacts": getattr(artifacts, "s3_model_artifacts", None),
    }
