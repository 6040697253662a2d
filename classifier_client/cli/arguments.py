"""Argument groups that several ``sm-classifier`` subcommands share."""

from __future__ import annotations

import argparse
import os
from typing import Any, Protocol

from classifier_client import training
from classifier_client.cli.common import CHANNEL_HELP, LOCAL_IMAGE_DEFAULT
from classifier_client.config import IMAGE_ENV, ROLE_ENV

LOCAL_RUNS_DIR = "local-runs"


class TakesArguments(Protocol):
    """A parser or one of its argument groups."""

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action: ...


def add_aws(parser: argparse.ArgumentParser, role: bool = False, role_help: str | None = None) -> None:
    """``role_help``: the role is kept from what exists unless given (no environment default)."""
    group = parser.add_argument_group("AWS")
    group.add_argument("--region", help="AWS region (default: AWS_REGION or the profile's)")
    group.add_argument("--profile", help="AWS profile (default: AWS_PROFILE or default)")
    if role:
        group.add_argument(
            "--role",
            default=None if role_help else os.environ.get(ROLE_ENV),
            help=f"SageMaker execution role ARN {role_help or f'(default: ${ROLE_ENV})'}",
        )


def add_local(parser: TakesArguments, what: str) -> None:
    parser.add_argument(
        "--local", action="store_true", help=f"{what} on this machine with Docker; no AWS needed"
    )


def add_image(parser: argparse.ArgumentParser, keep: str | None = None) -> None:
    """``keep``: what an update keeps without --image (then no environment default)."""
    parser.add_argument(
        "--image",
        default=None if keep else os.environ.get(IMAGE_ENV),
        help=f"image URI, sent by digest (default: {keep})"
        if keep
        else f"image URI, sent by digest (default: ${IMAGE_ENV}; else the newest image `push` made, "
        f"{LOCAL_IMAGE_DEFAULT} with --local)",
    )


def add_channels(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data channels", "S3 URIs, or local folders/archives with --local")
    group.add_argument(
        "--data",
        help="root holding train/ valid/ [test/] (as upload-data writes it); "
        "the per-channel options below override it",
    )
    for channel, text in CHANNEL_HELP.items():
        group.add_argument(f"--{channel}", metavar="URI", help=text)


def add_hyperparameters(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("hyperparameters")
    group.add_argument(
        "--hp",
        action="append",
        metavar="KEY=VALUE",
        help="a hyperparameter of ./train (repeatable), e.g. --hp epochs=5 --hp model=resnet50",
    )
    group.add_argument(
        "--hyperparameters-file",
        metavar="JSON",
        help="a JSON object of hyperparameters, or the file `best --output` writes",
    )


def add_watching(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("watching the job (TensorBoard, MLflow; docs/watching.md)")
    group.add_argument(
        "--tensorboard-s3-uri",
        metavar="S3_URI",
        help="where SageMaker syncs the job's TensorBoard event files (a folder per training job; "
        "for tune, the trials' checkpoint prefix, which holds them)",
    )
    group.add_argument(
        "--mlflow-tracking-uri",
        metavar="URI",
        help="an MLflow tracking server the job logs to: http(s)://... or a SageMaker managed "
        "tracking server's ARN; a server that is down never fails the job",
    )
    group.add_argument(
        "--mlflow-experiment",
        metavar="NAME",
        help="the MLflow experiment (default: the tuning job's name, or the base job name)",
    )
    group.add_argument(
        "--mlflow-register-model",
        metavar="NAME",
        help="also register the trained model in MLflow's model registry under NAME",
    )


def add_compute(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("compute")
    group.add_argument(
        "--instance-type",
        help=f"SageMaker instance type (default: {training.DEFAULT_INSTANCE_TYPE}; "
        f"{training.LOCAL_INSTANCE_TYPES[0]} with --local)",
    )
    group.add_argument("--instance-count", type=int, default=1, help="instances (default: 1)")
    group.add_argument(
        "--volume-size", type=int, default=training.DEFAULT_VOLUME_SIZE_GB, help="EBS GB per instance"
    )
    group.add_argument(
        "--max-run",
        type=int,
        default=training.DEFAULT_MAX_RUN_SECONDS,
        help=f"max training seconds (default: {training.DEFAULT_MAX_RUN_SECONDS})",
    )
    group.add_argument(
        "--spot",
        action="store_true",
        help="managed spot instances; checkpoints go to S3 and an interrupted job resumes",
    )
    group.add_argument("--max-wait", type=int, help="spot: max seconds incl. waiting (2x max-run)")
    group.add_argument("--checkpoint-s3-uri", help="checkpoint location (default: under the job)")
    group.add_argument("--output-s3-uri", help="where model.tar.gz goes (default bucket/prefix)")
    group.add_argument(
        "--env", action="append", metavar="KEY=VALUE", help="container environment (repeatable)"
    )
    group.add_argument("--base-job-name", default=training.DEFAULT_BASE_JOB_NAME, help="job name prefix")


# --- one builder per subcommand ----------------------------------------------------------------


def add_account(parser: argparse.ArgumentParser, training: bool = False) -> None:
    """The settings a regulated account requires (docs/security.md); each wins over the SageMaker
    SDK defaults file's value."""
    group = parser.add_argument_group(
        "account settings", "VPC, KMS, isolation and tags; override the SageMaker SDK defaults file"
    )
    group.add_argument("--subnets", metavar="ID,ID", help="VpcConfig subnets (with --security-group-ids)")
    group.add_argument("--security-group-ids", metavar="ID,ID", help="VpcConfig security groups")
    group.add_argument(
        "--kms-key", metavar="KEY", help="KMS key (ARN, id or alias) for outputs and storage volumes"
    )
    group.add_argument(
        "--network-isolation", action="store_true", help="no network and no AWS credentials in the container"
    )
    group.add_argument(
        "--tag", action="append", metavar="KEY=VALUE", help="a tag on every resource (repeatable)"
    )
    if training:
        group.add_argument(
            "--encrypt-inter-container-traffic", action="store_true",
            help="encrypt traffic between the instances of a distributed job",
        )  # fmt: skip
        group.add_argument(
            "--max-retries", type=int, metavar="N",
            help="retry a job that failed with an InternalServerError up to N times (RetryStrategy, 1-30)",
        )  # fmt: skip
        group.add_argument(
            "--weights-in-image", action="store_true",
            help="the image holds the pretrained weights (built with PRETRAINED_MODELS): "
            "pretrained=true under --network-isolation needs no pretrained channel",
        )  # fmt: skip
