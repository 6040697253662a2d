"""Hyperparameter tuning jobs over our image, and the best job of one.

The objective (``valid_accuracy``, maximised) and the metric regexes come from
``classifier.metric_definitions``, the module the training program prints with, so the
tuner reads exactly the lines the job writes. Tuning exists only on SageMaker; there is
no local mode for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

from classifier.constants import is_sagemaker_key
from classifier.hyperparameter_schema import check_range
from classifier.metric_definitions import METRIC_DEFINITIONS, OBJECTIVE_METRIC, OBJECTIVE_TYPE
from classifier_client.account_settings import RequestSettings
from classifier_client.config import AwsContext, ConfigurationError, unique_name
from classifier_client.image import pin_image
from classifier_client.strategies import (
    DEFAULT_STRATEGY,
    check_strategy,
    default_early_stopping,
    max_jobs_for,
    static_additions,
)
from classifier_client.training import TrainingSettings, build_model_trainer, job_environment

TUNING_JOB_NAME_MAX_LENGTH = 32
WARM_START_TYPES = {
    "identical": "IdenticalDataAndAlgorithm",
    "transfer": "TransferLearning",
}
DEFAULT_WARM_START_TYPE = "identical"
# Bayesian, Random and Hyperband; Grid runs one job per combination (strategies.max_jobs_for).
DEFAULT_MAX_JOBS = 12
DEFAULT_MAX_PARALLEL_JOBS = 3
# A local tuning job's name names its folder, its study and its trials' containers.
LOCAL_TUNING_JOB_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,31}$")


@dataclass(frozen=True)
class Range:
    """One tunable hyperparameter: ``continuous``/``integer`` [low, high] or ``categorical``."""

    kind: str
    low: float | None = None
    high: float | None = None
    values: tuple[str, ...] = ()
    scaling: str = "Auto"

    @property
    def bounds(self) -> tuple[float, float]:
        """A continuous or integer range's (low, high)."""
        if self.low is None or self.high is None:
            raise ConfigurationError(f"a {self.kind} range needs a low and a high bound")
        return self.low, self.high

    def to_sdk(self):
        from sagemaker.core.parameter import (
            CategoricalParameter,
            ContinuousParameter,
            IntegerParameter,
        )

        if self.kind == "continuous":
            return ContinuousParameter(*self.bounds, scaling_type=self.scaling)
        if self.kind == "integer":
            low, high = self.bounds
            return IntegerParameter(int(low), int(high), scaling_type=self.scaling)
        return CategoricalParameter(list(self.values))

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"categorical:{','.join(self.values)}"
        suffix = ":log" if self.scaling == "Logarithmic" else ""
        low, high = self.bounds
        if self.kind == "integer":
            return f"{self.kind}:{int(low)}:{int(high)}{suffix}"
        return f"{self.kind}:{low}:{high}{suffix}"


# The ranges the seed notebooks searched, widened a little; override any with --range.
DEFAULT_RANGES: dict[str, Range] = {
    "learning_rate": Range("continuous", 1e-4, 1e-1, scaling="Logarithmic"),
    "batch_size": Range("categorical", values=("16", "32", "64", "128")),
    "optimizer": Range("categorical", values=("sgd", "adam", "adamw")),
    "epochs": Range("integer", 2, 10),
    "augmentation": Range("categorical", values=("light", "standard", "strong")),
}
# Grid runs every combination: categorical values only, 3 x 2 x 2 = 12 jobs.
GRID_DEFAULT_RANGES: dict[str, Range] = {
    "learning_rate": Range("categorical", values=("0.0003", "0.001", "0.003")),
    "batch_size": Range("categorical", values=("32", "64")),
    "optimizer": Range("categorical", values=("adam", "sgd")),
}


def default_ranges(strategy: str) -> dict[str, Range]:
    """The ranges each strategy searches unless told otherwise (see classifier_client.strategies)."""
    if strategy == "Grid":
        return dict(GRID_DEFAULT_RANGES)
    ranges = dict(DEFAULT_RANGES)
    if strategy == "Hyperband":
        del ranges["epochs"]  # Hyperband's resource: static, its maximum from --hp epochs
    return ranges


def parse_range(text: str) -> tuple[str, Range]:
    """``NAME=continuous:LOW:HIGH[:log]``, ``NAME=integer:LOW:HIGH[:log]`` or
    ``NAME=categorical:A,B,C`` -> (NAME, Range)."""
    name, sep, spec = text.partition("=")
    kind, _, rest = spec.partition(":")
    kind = kind.strip().lower()
    try:
        if not sep or not name.strip():
            raise ValueError("expected NAME=KIND:...")
        if kind == "categorical":
            values = tuple(v.strip() for v in rest.split(",") if v.strip())
            if not values:
                raise ValueError("categorical needs at least one value")
            return name.strip(), Range("categorical", values=values)
        if kind in ("continuous", "integer"):
            parts = rest.split(":")
            if len(parts) not in (2, 3) or (len(parts) == 3 and parts[2].lower() != "log"):
                raise ValueError(f"{kind} needs LOW:HIGH or LOW:HIGH:log")
            cast = float if kind == "continuous" else int
            low, high = cast(parts[0]), cast(parts[1])
            if not low < high:
                raise ValueError("LOW must be below HIGH")
            scaling = "Logarithmic" if len(parts) == 3 else "Auto"
            if scaling == "Logarithmic" and low <= 0:
                raise ValueError("log scaling needs LOW > 0")
            return name.strip(), Range(kind, low, high, scaling=scaling)
        raise ValueError(f"unknown kind {kind!r} (continuous, integer or categorical)")
    except ValueError as error:
        raise ConfigurationError(f"bad --range {text!r}: {error}") from error


def check_ranges(ranges: dict[str, Range]) -> None:
    """Every value SageMaker may sample from ``ranges`` must pass the training container's
    validation: a bound outside the schema would start jobs bound to fail, each one billed."""
    problems = []
    for name, spec in sorted(ranges.items()):
        if spec.kind == "categorical":
            values = spec.values
        elif spec.kind == "integer":
            values = tuple(str(int(bound)) for bound in spec.bounds)
        else:
            values = tuple(repr(bound) for bound in spec.bounds)
        problems += check_range(name, spec.kind, values)
    if problems:
        raise ConfigurationError("; ".join(problems) + " (the training jobs would refuse it; none started)")


@dataclass
class TuningSettings:
    """``early_stopping`` and ``max_jobs`` left as None take the strategy's defaults (Grid: one
    job per combination); ``max_parallel_jobs`` None is at most 3. :func:`default_ranges` gives
    a strategy's ranges."""

    training: TrainingSettings
    ranges: dict[str, Range]
    max_jobs: int | None = None
    max_parallel_jobs: int | None = None
    strategy: str = DEFAULT_STRATEGY
    early_stopping: bool | None = None
    warm_start_parents: tuple[str, ...] = ()
    warm_start_type: str = DEFAULT_WARM_START_TYPE
    base_name: str = "img-clf-hpo"

    def _refuse_what_isolation_stops(self) -> None:
        """A tuned pretrained=true under network isolation needs the weights, as a fixed one does
        (TrainingSettings)."""
        training = self.training
        pretrained = self.ranges.get("pretrained")
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
        if self.early_stopping is None:
            self.early_stopping = default_early_stopping(self.strategy)
        if not self.ranges:
            raise ConfigurationError("tuning needs at least one --range")
        check_strategy(self.strategy, self.ranges, self.early_stopping)
        check_ranges(self.ranges)
        self.max_jobs = max_jobs_for(self.strategy, self.ranges, self.max_jobs, DEFAULT_MAX_JOBS)
        if self.max_parallel_jobs is None:
            self.max_parallel_jobs = min(DEFAULT_MAX_PARALLEL_JOBS, self.max_jobs)
        if not 1 <= self.max_parallel_jobs <= self.max_jobs:
            raise ConfigurationError(
                f"need 1 <= --max-parallel-jobs ({self.max_parallel_jobs}) <= the number of "
                f"training jobs ({self.max_jobs})"
            )
        if self.warm_start_type not in WARM_START_TYPES:
            raise ConfigurationError(f"warm start type must be one of {list(WARM_START_TYPES)}")
        if len(self.warm_start_parents) > 5:
            raise ConfigurationError("SageMaker accepts at most 5 warm start parent jobs")
        self._refuse_what_isolation_stops()
        fixed = set(self.ranges) & set(self.training.hyperparameters)
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
    training = settings.training
    additions = static_additions(settings.strategy, training.hyperparameters)
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
        hyperparameter_ranges={name: r.to_sdk() for name, r in settings.ranges.items()},
        metric_definitions=[dict(d) for d in METRIC_DEFINITIONS],
        strategy=settings.strategy,
        max_jobs=settings.max_jobs,
        max_parallel_jobs=settings.max_parallel_jobs,
        early_stopping_type="Auto" if settings.early_stopping else "Off",
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
