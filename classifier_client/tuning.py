"""Hyperparameter tuning jobs over our image, and the best job of one.

The objective (``valid_accuracy``, maximised) and the metric regexes come from
``classifier.metric_definitions``, the module the training program prints with, so the
tuner reads exactly the lines the job writes. ``classifier_client.local_tuning`` runs the
same settings on this machine, with Optuna.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any

from classifier.constants import is_sagemaker_key
from classifier.metric_definitions import METRIC_DEFINITIONS, OBJECTIVE_METRIC, OBJECTIVE_TYPE
from classifier_client.account_settings import RequestSettings
from classifier_client.config import AwsContext, ConfigurationError, unique_name
from classifier_client.image import pin_image
from classifier_client.ranges import Range, check_ranges
from classifier_client.strategies import Bayesian, Strategy, strategy_named
from classifier_client.training import TrainingSettings, build_model_trainer, job_environment

TUNING_JOB_NAME_MAX_LENGTH = 32
WARM_START_TYPES = {
    "identical": "IdenticalDataAndAlgorithm",
    "transfer": "TransferLearning",
}
DEFAULT_WARM_START_TYPE = "identical"
# Bayesian, Random and Hyperband; Grid runs one job per combination (Grid.max_jobs_for).
DEFAULT_MAX_JOBS = 12
DEFAULT_MAX_PARALLEL_JOBS = 3
# A local tuning job's name names its folder, its study and its trials' containers.
LOCAL_TUNING_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}$")


def default_ranges(strategy: str) -> dict[str, Range]:
    """The ranges the strategy named ``strategy`` searches unless told otherwise."""
    return strategy_named(strategy).default_ranges()


@dataclass
class SearchSettings:
    """What a tuning job searches and how (HyperParameterTuningJobConfig but its objective),
    checked when made: what the strategy refuses, the number of training jobs (``max_jobs``
    None: the strategy's default; Grid: one job per combination), every value the ranges may
    give, and the jobs run at once (``max_parallel_jobs`` None: at most 3). ``early_stopping``
    None is the strategy's default."""

    ranges: dict[str, Range]
    strategy: Strategy = field(default_factory=Bayesian)
    early_stopping: bool | None = None
    max_jobs: int | None = None
    max_parallel_jobs: int | None = None

    def __post_init__(self):
        if not self.ranges:
            raise ConfigurationError("tuning needs at least one --range")
        if self.early_stopping is None:
            self.early_stopping = self.strategy.early_stopping_by_default
        self.strategy.check(self.ranges, self.early_stopping)
        self.max_jobs = self.strategy.max_jobs_for(self.ranges, self.max_jobs, DEFAULT_MAX_JOBS)
        check_ranges(self.ranges)
        if self.max_parallel_jobs is None:
            self.max_parallel_jobs = min(DEFAULT_MAX_PARALLEL_JOBS, self.max_jobs)
        if not 1 <= self.max_parallel_jobs <= self.max_jobs:
            raise ConfigurationError(
                f"need 1 <= --max-parallel-jobs ({self.max_parallel_jobs}) <= the number of "
                f"training jobs ({self.max_jobs})"
            )


@dataclass
class TuningSettings:
    """A tuning job: the training job each trial runs, the search, and its warm start."""

    training: TrainingSettings
    search: SearchSettings
    warm_start_parents: tuple[str, ...] = ()
    warm_start_type: str = DEFAULT_WARM_START_TYPE
    base_name: str = "img-clf-hpo"

    def _refuse_what_isolation_stops(self) -> None:
        """A tuned pretrained=true under network isolation needs the weights, as a fixed one does
        (TrainingSettings)."""
        training = self.training
        pretrained = self.search.ranges.get("pretrained")
        if not (pretrained and _may_be_true(pretrained) and training.request.network_isolation):
            return
        if "pretrained" not in training.channels and not training.weights_in_image:
            raise ConfigurationError(
                "network isolation with --range pretrained that may be true: an isolated container "
                "cannot download the pretrained weights. Give them as a channel (--pretrained "
                "s3://.../state_dict.pt), or build the image with PRETRAINED_MODELS and pass "
                "--weights-in-image"
            )

    def __post_init__(self):
        if self.warm_start_type not in WARM_START_TYPES:
            raise ConfigurationError(f"warm start type must be one of {list(WARM_START_TYPES)}")
        if len(self.warm_start_parents) > 5:
            raise ConfigurationError("SageMaker accepts at most 5 warm start parent jobs")
        self._refuse_what_isolation_stops()
        fixed = set(self.search.ranges) & set(self.training.hyperparameters)
        if fixed:
            raise ConfigurationError(f"{sorted(fixed)} are both fixed (--hp) and tuned (--range); pick one")


def _may_be_true(spec: Range) -> bool:
    return spec.kind == "categorical" and any(v.strip().lower() in ("true", "1") for v in spec.values)


def check_local_tuning(training: TrainingSettings, tuning_job_name: str, wait: bool = False) -> None:
    """What ``tune --local`` cannot do, refused before anything runs."""
    cloud_only = {
        "--wait": wait,
        "--spot": training.spot,
        "--checkpoint-s3-uri": training.checkpoint_s3_uri,
        "--output-s3-uri": training.output_s3_uri,
        "--tensorboard-s3-uri": training.watching.tensorboard_s3_uri,
        "--instance-count > 1": training.instance_count > 1,
    }
    given = [flag for flag, value in cloud_only.items() if value]
    if given:
        raise ConfigurationError(
            f"{', '.join(given)}: for SageMaker tuning jobs only, not with --local "
            "(a local tuning job always waits; its trials run one container each)"
        )
    if not LOCAL_TUNING_JOB_NAME.match(tuning_job_name):
        raise ConfigurationError(
            f"--tuning-job-name {tuning_job_name!r}: 1 to 32 letters, digits and hyphens "
            "(SageMaker's rule for tuning job names), starting with a letter or digit"
        )


def build_tuner(ctx: AwsContext, settings: TuningSettings, job_name: str):
    """The SDK HyperparameterTuner of tuning job ``job_name``: our ModelTrainer plus ranges,
    objective and metrics."""
    from sagemaker.core.shapes import (
        HyperParameterTuningJobWarmStartConfig,
        ParentHyperParameterTuningJob,
    )

    ctx.require_role()
    training, search = settings.training, settings.search
    additions = search.strategy.static_additions(training.hyperparameters)
    if additions:
        training = replace(training, hyperparameters={**training.hyperparameters, **additions})
    tensorboard = training.watching.tensorboard_s3_uri
    if tensorboard:
        # HyperParameterTrainingJobDefinition has no TensorBoardOutputConfig: the trials write
        # their event files under the checkpoint folder, which SageMaker syncs while they run
        # (classifier_client.watching), so the TensorBoard URI becomes the checkpoint prefix.
        if training.checkpoint_s3_uri:
            raise ConfigurationError(
                "--tensorboard-s3-uri and --checkpoint-s3-uri: a tuning job's trials sync one folder "
                "to S3 (their checkpoints, with the TensorBoard files in it); give one of them"
            )
        training = replace(training, checkpoint_s3_uri=f"{tensorboard.rstrip('/')}/{job_name}")
    if training.checkpointing and not training.checkpoint_s3_uri:
        training = replace(training, checkpoint_s3_uri=tuning_checkpoint_s3_uri(ctx, settings, job_name))
    trainer = build_model_trainer(training, ctx)
    trainer.environment = job_environment(training, tuning_job_name=job_name)
    warm_start = None
    if settings.warm_start_parents:
        warm_start = HyperParameterTuningJobWarmStartConfig(
            parent_hyper_parameter_tuning_jobs=[
                ParentHyperParameterTuningJob(hyper_parameter_tuning_job_name=name)
                for name in settings.warm_start_parents
            ],
            warm_start_type=WARM_START_TYPES[settings.warm_start_type],
        )
    request = training.request
    return _account_tuner()(
        model_trainer=trainer,
        objective_metric_name=OBJECTIVE_METRIC,
        objective_type=OBJECTIVE_TYPE,
        hyperparameter_ranges={name: r.to_sdk() for name, r in search.ranges.items()},
        metric_definitions=[dict(d) for d in METRIC_DEFINITIONS],
        max_jobs=search.max_jobs,
        max_parallel_jobs=search.max_parallel_jobs,
        **search.strategy.request(bool(search.early_stopping)),
        warm_start_config=warm_start,
        tags=request.tag_list() or None,
    ).with_account(request)


def _account_tuner():
    """HyperparameterTuner whose training job definition also carries the account's volume
    key, network isolation and inter-container encryption: the SDK (3.27) copies the VPC,
    output key, tags and retry strategy from the ModelTrainer into the definition, not these
    (HyperParameterTrainingJobDefinition has all three)."""
    from sagemaker.train.tuner import HyperparameterTuner

    class AccountTuner(HyperparameterTuner):
        account: RequestSettings | None = None

        def with_account(self, account: RequestSettings) -> AccountTuner:
            self.account = account
            return self

        # Private in sagemaker 3.27: the only place the definition exists before it is sent.
        # tests/sdk/test_account_requests.py fails when it goes or stops being used.
        def _build_training_job_definition(self, inputs):
            definition = super()._build_training_job_definition(inputs)
            account = self.account
            if account is not None:
                if account.volume_kms_key:
                    definition.resource_config.volume_kms_key_id = account.volume_kms_key
                if account.network_isolation:
                    definition.enable_network_isolation = True
                if account.inter_container_encryption:
                    definition.enable_inter_container_traffic_encryption = True
            return definition

    return AccountTuner


def tuning_checkpoint_s3_uri(ctx: AwsContext, settings: TuningSettings, job_name: str) -> str:
    """The checkpoint prefix of one tuning job's training jobs (ModelTrainer makes one per
    training job; a tuning job's TrainingJobDefinition has one CheckpointConfig for all).

    Nothing in AWS's documentation adds the training job's name to that S3Uri, and it is
    restored whole: "Existing checkpoints in S3 are written to the SageMaker container at the
    start of the job" (developer guide, "Use Checkpoints in Amazon SageMaker"), which also
    says "The high-level SageMaker checkpoint configuration specifies a single Amazon S3
    location without additional suffixes or prefixes" and leaves separating writers to the
    training script. So: one prefix per tuning job (never shared with another tuning job),
    and under it one folder per trial, which the image names after TRAINING_JOB_NAME
    (classifier.training.environment.TrainingEnvironment.checkpoint_dir).
    """
    return f"s3://{ctx.default_bucket()}/{settings.base_name}/{job_name}/checkpoints"


def start_tuning_job(ctx: AwsContext, settings: TuningSettings, *, wait: bool = False) -> str:
    """Create the tuning job; returns its name."""
    from sagemaker.core.training.configs import InputData

    for channel, uri in settings.training.channels.items():
        if not uri.startswith("s3://"):
            raise ConfigurationError(f"channel {channel}: tuning reads from S3, got {uri}")
    name = unique_name(settings.base_name, TUNING_JOB_NAME_MAX_LENGTH)
    pinned = replace(settings.training, image_uri=pin_image(ctx, settings.training.image_uri))
    tuner = build_tuner(ctx, replace(settings, training=pinned), name)
    inputs = [
        InputData(channel_name=channel, data_source=uri)
        for channel, uri in sorted(settings.training.channels.items())
    ]
    tuner.tune(inputs=inputs, job_name=name, wait=wait)
    return name


def best_training_job(ctx: AwsContext, tuning_job_name: str) -> dict[str, Any]:
    """The best job so far: name, objective value, tuned and full hyperparameters."""
    from sagemaker.core.resources import HyperParameterTuningJob, TrainingJob

    tuning = HyperParameterTuningJob.get(
        hyper_parameter_tuning_job_name=tuning_job_name, session=ctx.boto_session, region=ctx.region
    )
    best = getattr(tuning, "best_training_job", None)
    if not best or not getattr(best, "training_job_name", None):
        counters = getattr(tuning, "training_job_status_counters", None)
        raise ConfigurationError(
            f"tuning job {tuning_job_name} ({tuning.hyper_parameter_tuning_job_status}) has no "
            f"completed training job with an objective value yet (jobs: {counters})"
        )
    job = TrainingJob.get(
        training_job_name=best.training_job_name, session=ctx.boto_session, region=ctx.region
    )
    metric = best.final_hyper_parameter_tuning_job_objective_metric
    hyperparameters = {
        k: v for k, v in sorted((job.hyper_parameters or {}).items()) if not is_sagemaker_key(k)
    }
    artifacts = getattr(job, "model_artifacts", None)
    return {
        "tuning_job": tuning_job_name,
        "tuning_job_status": tuning.hyper_parameter_tuning_job_status,
        "training_job": best.training_job_name,
        "training_job_status": best.training_job_status,
        "objective": {"name": metric.metric_name, "value": metric.value},
        "tuned_hyperparameters": dict(sorted(best.tuned_hyper_parameters.items())),
        "hyperparameters": hyperparameters,
        "model_artifacts": getattr(artifacts, "s3_model_artifacts", None),
    }


def format_best_table(best: dict[str, Any]) -> str:
    """A plain two-column table for the terminal."""
    rows = [
        ("tuning job", f"{best['tuning_job']} ({best['tuning_job_status']})"),
        ("best training job", f"{best['training_job']} ({best['training_job_status']})"),
        (best["objective"]["name"], f"{best['objective']['value']:.4f}"),
        ("model artifacts", best["model_artifacts"] or "-"),
    ]
    tuned = set(best["tuned_hyperparameters"])
    rows += [
        (f"{key}{' *' if key in tuned else ''}", value) for key, value in best["hyperparameters"].items()
    ]
    width = max(len(key) for key, _ in rows)
    lines = [f"{key.ljust(width)}  {value}" for key, value in rows]
    lines.append("(* tuned by this job)")
    return "\n".join(lines)
