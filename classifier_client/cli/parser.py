"""The ``sm-classifier`` argument parser: one builder per subcommand.

Defaults that the library modules also use are their constants, so ``--help`` shows what a
job gets when the option is left out.
"""

from __future__ import annotations

import argparse

from classifier_client import image
from classifier_client.cli.arguments import add_aws
from classifier_client.cli.data_commands import cmd_metric_definitions, cmd_push, cmd_upload_data
from classifier_client.cli.endpoint_life_parser import add_captured, add_update, add_weights
from classifier_client.cli.hosting_parser import add_delete, add_deploy, add_invoke, add_transform
from classifier_client.cli.training_parser import add_best, add_train, add_tune
from classifier_client.config import IMAGE_ENV, ROLE_ENV

EPILOG = f"""\
typical flow (see docs/sagemaker.md):
  sm-classifier push --region eu-west-1
  sm-classifier upload-data dogImages.zip s3://BUCKET/dogImages
  sm-classifier tune --data s3://BUCKET/dogImages --max-jobs 12 --max-parallel-jobs 3 --wait
  sm-classifier best TUNING_JOB --output best.json
  sm-classifier train --data s3://BUCKET/dogImages --hyperparameters-file best.json --wait
  sm-classifier deploy --model-data s3://.../model.tar.gz --endpoint-name dogs
  sm-classifier invoke dogs dog.jpg --top-k 3
  sm-classifier update dogs --model-data s3://.../model.tar.gz --canary 10:600 --wait
  sm-classifier captured dogs --output review/
  sm-classifier delete dogs
offline: add --local to train, tune, best, deploy, update, invoke and delete (local data folders,
local image; docs/local-tuning.md).
environment: AWS_PROFILE / AWS_REGION, {ROLE_ENV} (execution role), {IMAGE_ENV} (image URI).
"""


def _add_metric_definitions(sub) -> None:
    p = sub.add_parser(
        "metric-definitions",
        help="print the HPO metric definitions as JSON",
        description="Print [{Name, Regex}] exactly as `tune` and `train` send them (from "
        "classifier.metric_definitions, the module ./train prints its metric lines with), "
        "ready to paste into the console or another tool.",
    )
    p.add_argument("--with-objective", action="store_true", help="also print the objective metric and type")
    p.set_defaults(func=cmd_metric_definitions)


def _add_upload_data(sub) -> None:
    p = sub.add_parser(
        "upload-data",
        help="upload an ImageFolder (or dogImages.zip) to S3, skipping files already there",
        description="Upload SOURCE (a folder with train/ valid/ [test/], or a .zip/.tar.gz of "
        "one such as dogImages.zip) under S3_URI. Files with the same size and MD5 already in "
        "S3 are skipped, so an interrupted upload resumes. Prints the channel URIs for --data.",
    )
    p.add_argument("source", help="local folder or archive")
    p.add_argument("s3_uri", help="destination prefix, e.g. s3://my-bucket/dogImages")
    p.add_argument(
        "--kms-key", metavar="KEY", help="write every object with SSE-KMS and this key (ARN, id or alias)"
    )
    add_aws(p)
    p.set_defaults(func=cmd_upload_data)


def _add_push(sub) -> None:
    p = sub.add_parser(
        "push",
        help="build the image and push it to ECR (wraps build_and_push.sh)",
        description="Build container/Dockerfile and push it to Amazon ECR (repository created "
        "if missing) or to --registry. Prints the pushed image URI: use it as --image or $"
        f"{IMAGE_ENV}. It prints the image by digest (REPOSITORY@sha256:...), which every request "
        "names. With --no-push it only builds, for --local runs.",
    )
    p.add_argument("--name", default=image.DEFAULT_IMAGE_NAME, help="repository/image name")
    p.add_argument(
        "--tag",
        help=f"image tag (default: {image.DEFAULT_TAG} locally; pushed to ECR, a unique build-<time>, "
        "as the repository's tags are immutable)",
    )
    p.add_argument("--region", help="ECR region (default: AWS_REGION or the profile's)")
    p.add_argument("--account", help="AWS account id (default: from STS)")
    p.add_argument("--registry", help="push to this registry instead of ECR (HOST[:PORT][/PATH])")
    p.add_argument("--base-image", help="Docker base image build argument")
    p.add_argument("--no-push", action="store_true", help="build only")
    p.add_argument("--skip-build", action="store_true", help="push an already built image")
    p.add_argument(
        "--mutable-tags", action="store_true",
        help="the ECR repository push creates lets tags move (default: immutable tags, scan on push)",
    )  # fmt: skip
    p.add_argument(
        "--repository-tag", action="append", metavar="KEY=VALUE",
        help="a tag on the ECR repository push creates (repeatable)",
    )  # fmt: skip
    p.add_argument("--kms-key", metavar="KEY", help="the ECR repository push creates encrypts with this key")
    p.add_argument(
        "--serve-only", action="store_true",
        help="the serving image instead (no torch, no training; docs/image.md), to NAME-serve",
    )  # fmt: skip
    p.set_defaults(func=cmd_push)


SUBCOMMAND_BUILDERS = (
    _add_metric_definitions,
    _add_upload_data,
    _add_push,
    add_tune,
    add_best,
    add_train,
    add_deploy,
    add_update,
    add_weights,
    add_invoke,
    add_captured,
    add_delete,
    add_transform,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sm-classifier",
        description="Train, tune, debug, deploy and invoke the image classifier on Amazon "
        "SageMaker (SDK 3.x), or run the same steps locally with --local.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show SDK logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_subcommand in SUBCOMMAND_BUILDERS:
        add_subcommand(sub)
    return parser
