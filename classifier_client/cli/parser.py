"""The ``sm-classifier`` argument parser: one builder per subcommand.

Defaults that the library modules also use are their constants, so ``--help`` shows what a
job gets when the option is left out.
"""

from __future__ import annotations

import argparse
import os

from classifier.debugging.hook import TENSOR_SAVE_INTERVAL
from classifier.debugging.rules import RULE_NAMES
from classifier_client import debugger, endpoints, hosting, image, training, transform, tuning
from classifier_client.cli.common import CHANNEL_HELP, LOCAL_IMAGE_DEFAULT
from classifier_client.cli.data_commands import cmd_metric_definitions, cmd_push, cmd_upload_data
from classifier_client.cli.endpoint_commands import cmd_delete, cmd_deploy, cmd_invoke
from classifier_client.cli.training_commands import cmd_best, cmd_train, cmd_tune
from classifier_client.cli.transform_commands import cmd_transform
from classifier_client.config import IMAGE_ENV, ROLE_ENV
from classifier_client.local_tuning import DEFAULT_LOCAL_TUNING_JOB
from classifier_client.strategies import DEFAULT_STRATEGY, STRATEGIES

LOCAL_RUNS_DIR = "local-runs"

EPILOG = f"""\
typical flow (see docs/sagemaker.md):
  sm-classifier push --region eu-west-1
  sm-classifier upload-data dogImages.zip s3://BUCKET/dogImages
  sm-classifier tune --data s3://BUCKET/dogImages --max-jobs 12 --max-parallel-jobs 3 --wait
  sm-classifier best TUNING_JOB --output best.json
  sm-classifier train --data s3://BUCKET/dogImages --hyperparameters-file best.json --wait
  sm-classifier deploy --model-data s3://.../model.tar.gz --endpoint-name dogs
  sm-classifier invoke dogs dog.jpg --top-k 3
  sm-classifier delete dogs
offline: add --local to train, tune, best, deploy, invoke and delete (local data folders,
local image; docs/local-tuning.md).
environment: AWS_PROFILE / AWS_REGION, {ROLE_ENV} (execution role), {IMAGE_ENV} (image URI).
"""


# --- argument groups shared by several subcommands ------------------------------------------


def _add_aws(parser: argparse.ArgumentParser, role: bool = False) -> None:
    group = parser.add_argument_group("AWS")
    group.add_argument("--region", help="AWS region (default: AWS_REGION or the profile's)")
    group.add_argument("--profile", help="AWS profile (default: AWS_PROFILE or default)")
    if role:
        group.add_argument(
            "--role",
            default=os.environ.get(ROLE_ENV),
            help=f"SageMaker execution role ARN (default: ${ROLE_ENV})",
        )


def _add_local(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--local", action="store_true", help=f"{what} on this machine with Docker; no AWS needed"
    )


def _add_image(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--image",
        default=os.environ.get(IMAGE_ENV),
        help=f"image URI (default: ${IMAGE_ENV}; else the ECR image `push` makes, "
        f"{LOCAL_IMAGE_DEFAULT} with --local)",
    )


def _add_channels(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "data channels", "S3 URIs, or local folders/archives with --local"
    )
    group.add_argument(
        "--data",
        help="root holding train/ valid/ [test/] (as upload-data writes it); "
        "the per-channel options below override it",
    )
    for channel, text in CHANNEL_HELP.items():
        group.add_argument(f"--{channel}", metavar="URI", help=text)


def _add_hyperparameters(parser: argparse.ArgumentParser) -> None:
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


def _add_compute(parser: argparse.ArgumentParser) -> None:
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
    group.add_argument(
        "--base-job-name", default=training.DEFAULT_BASE_JOB_NAME, help="job name prefix"
    )


# --- one builder per subcommand ----------------------------------------------------------------


def _add_metric_definitions(sub) -> None:
    p = sub.add_parser(
        "metric-definitions",
        help="print the HPO metric definitions as JSON",
        description="Print [{Name, Regex}] exactly as `tune` and `train` send them (from "
        "classifier.metric_definitions, the module ./train prints its metric lines with), "
        "ready to paste into the console or another tool.",
    )
    p.add_argument(
        "--with-objective", action="store_true", help="also print the objective metric and type"
    )
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
    _add_aws(p)
    p.set_defaults(func=cmd_upload_data)


def _add_push(sub) -> None:
    p = sub.add_parser(
        "push",
        help="build the image and push it to ECR (wraps build_and_push.sh)",
        description="Build container/Dockerfile and push it to Amazon ECR (repository created "
        "if missing) or to --registry. Prints the pushed image URI: use it as --image or $"
        f"{IMAGE_ENV}. With --no-push it only builds, for --local runs.",
    )
    p.add_argument("--name", default=image.DEFAULT_IMAGE_NAME, help="repository/image name")
    p.add_argument("--tag", default=image.DEFAULT_TAG, help="image tag")
    p.add_argument("--region", help="ECR region (default: AWS_REGION or the profile's)")
    p.add_argument("--account", help="AWS account id (default: from STS)")
    p.add_argument("--registry", help="push to this registry instead of ECR (HOST[:PORT][/PATH])")
    p.add_argument("--base-image", help="Docker base image build argument")
    p.add_argument("--no-push", action="store_true", help="build only")
    p.add_argument("--skip-build", action="store_true", help="push an already built image")
    p.set_defaults(func=cmd_push)


def _ranges_text(strategy: str) -> str:
    return ", ".join(f"{name} {r.describe()}" for name, r in tuning.default_ranges(strategy).items())


def _tune_description() -> str:
    return (
        "Start a SageMaker hyperparameter tuning job over the image: objective valid_accuracy "
        "(maximised), metric regexes from classifier.metric_definitions. Default ranges "
        f"(Bayesian, Random): {_ranges_text('Bayesian')}; Hyperband: the same without epochs "
        "(static, --hp epochs=N is its maximum, 10 by default); "
        f"Grid: {_ranges_text('Grid')}. Settings a strategy refuses fail before any AWS call. "
        "With --local: the same settings as a tuning job on this machine (Optuna): each trial is "
        "a training job of the local image in Docker, on local data folders; the study, its "
        "report.html and summary.json are kept in --local-dir/--tuning-job-name, and re-running "
        "the same command continues it (docs/local-tuning.md)."
    )


def _add_tuning_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("tuning")
    group.add_argument(
        "--range",
        action="append",
        metavar="SPEC",
        help="NAME=continuous:LOW:HIGH[:log] | NAME=integer:LOW:HIGH[:log] | "
        "NAME=categorical:A,B,C (repeatable; replaces the default range of NAME)",
    )
    group.add_argument("--only-ranges", action="store_true", help="tune only the --range ones")
    group.add_argument(
        "--max-jobs",
        type=int,
        default=tuning.DEFAULT_MAX_JOBS,
        help=f"training jobs in all ({tuning.DEFAULT_MAX_JOBS})",
    )
    group.add_argument(
        "--max-parallel-jobs",
        type=int,
        default=tuning.DEFAULT_MAX_PARALLEL_JOBS,
        help=f"at once ({tuning.DEFAULT_MAX_PARALLEL_JOBS})",
    )
    group.add_argument(
        "--strategy",
        default=DEFAULT_STRATEGY,
        choices=STRATEGIES,
        help=f"{DEFAULT_STRATEGY} (default), Random, Hyperband (epochs static: its resource) or "
        "Grid (categorical ranges only); each has default ranges that it accepts",
    )
    group.add_argument(
        "--early-stopping",
        choices=["Auto", "Off"],
        help="stop unpromising jobs early (default: Auto, Off for Hyperband, which requires it)",
    )
    group.add_argument(
        "--no-early-stopping",
        dest="early_stopping",
        action="store_const",
        const="Off",
        help="the same as --early-stopping Off",
    )
    group.add_argument(
        "--warm-start-from",
        action="append",
        metavar="TUNING_JOB",
        help="warm start from a previous tuning job (repeatable, up to 5)",
    )
    group.add_argument(
        "--warm-start-type",
        default=tuning.DEFAULT_WARM_START_TYPE,
        choices=list(tuning.WARM_START_TYPES),
        help="identical: same data and image; transfer: changed data/ranges",
    )
    group.add_argument("--wait", action="store_true", help="wait for the tuning job to finish")


def _add_tune(sub) -> None:
    p = sub.add_parser(
        "tune",
        help="start a hyperparameter tuning job (SageMaker, or this machine with --local)",
        description=_tune_description(),
    )
    _add_image(p)
    _add_channels(p)
    _add_hyperparameters(p)
    _add_tuning_options(p)
    _add_compute(p)
    _add_aws(p, role=True)
    _add_local_tuning_options(p)
    p.set_defaults(func=cmd_tune)


def _add_local_tuning_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("local tuning (--local)")
    _add_local(group, "tune (Optuna, one training container per trial)")
    group.add_argument(
        "--local-dir",
        default=LOCAL_RUNS_DIR,
        help=f"where local tuning jobs are kept (default: ./{LOCAL_RUNS_DIR})",
    )
    group.add_argument(
        "--tuning-job-name",
        default=DEFAULT_LOCAL_TUNING_JOB,
        help="the local tuning job to create or continue, its folder under --local-dir and the "
        f"prefix of its trials' job names (default: {DEFAULT_LOCAL_TUNING_JOB}); with --local, "
        "--warm-start-from names earlier local tuning jobs",
    )


def _add_best(sub) -> None:
    p = sub.add_parser(
        "best",
        help="show the best training job of a tuning job, as a table and JSON",
        description="Print the best training job of TUNING_JOB: its objective value and its "
        "hyperparameters (tuned ones starred), then the same as JSON. --output writes the "
        "JSON for `train --hyperparameters-file`.",
    )
    p.add_argument("tuning_job")
    p.add_argument("--output", metavar="FILE", help="also write the JSON to FILE")
    p.add_argument(
        "--local", action="store_true", help="TUNING_JOB is a local one (`tune --local`); no AWS"
    )
    p.add_argument(
        "--local-dir",
        default=LOCAL_RUNS_DIR,
        help=f"--local: where local tuning jobs are kept (default: ./{LOCAL_RUNS_DIR})",
    )
    _add_aws(p)
    p.set_defaults(func=cmd_best)


TRAIN_DESCRIPTION = (
    "Run one training job. On SageMaker: the Debugger hook saves the tensors our rules "
    "read and the job evaluates our rules itself at its end; for accounts that still have "
    "SageMaker Debugger, --debugger-rules also attaches them as custom rules (evaluated by "
    "AWS's rule-evaluator image), the profiler is on, --spot uses managed spot with S3 "
    "checkpoints, and --instance-count N makes one torch.distributed job across N instances. "
    "With --local: the same job in SDK local mode (one container per instance), data from "
    "local folders; prints the local model.tar.gz."
)


def _add_debugger_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("debugger and profiler (SageMaker)")
    group.add_argument(
        "--debugger-rules",
        default="none",
        metavar="RULES",
        help="our rules to attach as SageMaker custom rules: all, none, or a comma list of "
        f"{', '.join(RULE_NAMES)} (default: none; the job itself "
        "evaluates all of them at the end and logs the verdicts)",
    )
    group.add_argument(
        "--rule-param", action="append", metavar="RULE.KEY=VALUE", help="a rule parameter"
    )
    group.add_argument(
        "--rule-instance-type", default=debugger.RULE_INSTANCE_TYPE, help="rule job instance"
    )
    group.add_argument(
        "--rule-evaluator-image",
        metavar="URI",
        help="AWS's custom-rule evaluator image for the job's region (built in for us-west-2; "
        "see the developer guide, \"Amazon SageMaker Debugger image URIs for custom rule "
        "evaluators\"). Rule jobs need an account that still has SageMaker Debugger.",
    )
    group.add_argument(
        "--no-debugger-hook", action="store_true", help="save no tensors (no DebugHookConfig)"
    )
    group.add_argument(
        "--tensor-save-interval",
        type=int,
        default=TENSOR_SAVE_INTERVAL,
        help="steps between saved weight/gradient reductions (losses, labels: every step)",
    )
    group.add_argument("--no-profiler", action="store_true", help="switch the profiler off")
    group.add_argument(
        "--profiling-interval-ms",
        type=int,
        default=debugger.DEFAULT_PROFILING_INTERVAL_MS,
        choices=debugger.PROFILING_INTERVALS_MS,
        help="system metrics sampling interval",
    )
    group.add_argument("--wait", action="store_true", help="wait and stream the job's logs")


def _add_local_training_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("local mode")
    _add_local(group, "train in SDK local mode (Mode.LOCAL_CONTAINER)")
    group.add_argument(
        "--local-dir",
        default=LOCAL_RUNS_DIR,
        help=f"local job folders (default: ./{LOCAL_RUNS_DIR})",
    )
    group.add_argument(
        "--no-debug-local",
        dest="debug_local",
        action="store_false",
        help="local mode: do not set debug=true (the tensors and rule verdicts)",
    )


def _add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="run a training job with Debugger hook, rules and profiler",
        description=TRAIN_DESCRIPTION,
    )
    _add_image(p)
    _add_channels(p)
    _add_hyperparameters(p)
    _add_compute(p)
    _add_debugger_options(p)
    _add_local_training_options(p)
    _add_aws(p, role=True)
    p.set_defaults(func=cmd_train)


def _add_deploy(sub) -> None:
    p = sub.add_parser(
        "deploy",
        help="deploy a model.tar.gz to an endpoint (Model + EndpointConfig + Endpoint)",
        description="Create a SageMaker Model (our image + model.tar.gz), an EndpointConfig "
        "and an Endpoint, and wait until it is InService. With --local: run `IMAGE serve` with "
        "the unpacked model on 127.0.0.1, as SageMaker hosting does, and wait for /ping.",
    )
    _add_image(p)
    p.add_argument(
        "--model-data",
        required=True,
        help="s3://.../model.tar.gz (with --local also a local model.tar.gz or model folder)",
    )
    p.add_argument("--endpoint-name", required=True, help="endpoint name (local: container name)")
    p.add_argument(
        "--instance-type", default=endpoints.DEFAULT_INSTANCE_TYPE, help="hosting instance type"
    )
    p.add_argument("--instance-count", type=int, default=1, help="hosting instances")
    p.add_argument("--workers", type=int, help="gunicorn workers per instance (default: auto)")
    p.add_argument("--timeout", type=int, help="model server timeout in seconds")
    p.add_argument("--env", action="append", metavar="KEY=VALUE", help="container environment")
    p.add_argument("--no-wait", action="store_true", help="return before InService")
    _add_local(p, "serve the model")
    p.add_argument("--port", type=int, default=0, help="--local: host port (default: a free one)")
    _add_hosting_options(p)
    _add_aws(p, role=True)
    p.set_defaults(func=cmd_deploy)


def _add_hosting_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group(
        "hosting options", "see docs/async-inference.md, serverless.md, multi-model.md, autoscaling.md"
    )
    group.add_argument(
        "--async-output", metavar="S3_URI", help="asynchronous endpoint: where results are written"
    )
    group.add_argument("--async-failure", metavar="S3_URI", help="async: where failures are written")
    group.add_argument("--success-topic", metavar="SNS_ARN", help="async: SNS topic for results")
    group.add_argument("--error-topic", metavar="SNS_ARN", help="async: SNS topic for failures")
    group.add_argument(
        "--async-max-concurrency", type=int, metavar="N",
        help="async: concurrent requests per instance (MaxConcurrentInvocationsPerInstance)",
    )  # fmt: skip
    group.add_argument(
        "--serverless", type=int, metavar="MEMORY_MB",
        help=f"serverless endpoint with this memory, one of {hosting.SERVERLESS_MEMORY_SIZES}",
    )  # fmt: skip
    group.add_argument("--max-concurrency", type=int, metavar="N", help="serverless: concurrent invocations")
    group.add_argument(
        "--multi-model", action="store_true",
        help="multi-model endpoint: --model-data is the s3://.../ prefix of the model.tar.gz files",
    )  # fmt: skip
    group.add_argument(
        "--autoscale", metavar="MIN:MAX", help="scale the instance count with Application Auto Scaling"
    )
    group.add_argument(
        "--target-invocations", type=int, metavar="N",
        help="--autoscale: target of SageMakerVariantInvocationsPerInstance (per minute)",
    )  # fmt: skip


def _add_invoke(sub) -> None:
    p = sub.add_parser(
        "invoke",
        help="send image files to an endpoint and print the top-k classes",
        description="POST each image to the endpoint (Content-Type from the file extension; "
        "top-k via the X-Amzn-SageMaker-Custom-Attributes header) and print the top-k labels.",
    )
    p.add_argument("endpoint_name")
    p.add_argument("images", nargs="+", metavar="IMAGE_FILE")
    p.add_argument(
        "--top-k",
        type=int,
        default=endpoints.DEFAULT_TOP_K,
        help=f"classes to return (default: {endpoints.DEFAULT_TOP_K})",
    )
    p.add_argument("--json", action="store_true", help="print the raw JSON responses")
    _add_invoke_hosting_options(p)
    _add_local(p, "invoke a local endpoint made by `deploy --local`")
    _add_aws(p)
    p.set_defaults(func=cmd_invoke)


def _add_invoke_hosting_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--target-model", metavar="NAME.tar.gz",
        help="multi-model endpoint: the model archive under the endpoint's S3 prefix",
    )  # fmt: skip
    p.add_argument(
        "--async", dest="async_input", metavar="S3_PREFIX",
        help="asynchronous endpoint: upload each image under this prefix, InvokeEndpointAsync, "
        "and poll the output location",
    )  # fmt: skip
    p.add_argument(
        "--async-timeout", type=float, default=hosting.ASYNC_TIMEOUT_S,
        help="--async: seconds to wait for the result (the invocation timeout too, at most 3600)",
    )  # fmt: skip
    p.add_argument("--poll-interval", type=float, default=5.0, help="--async: seconds between polls")


def _add_delete(sub) -> None:
    p = sub.add_parser(
        "delete",
        help="delete an endpoint with its endpoint config and model",
        description="Delete the endpoint, its endpoint config and its model(s). With --local: "
        "stop and remove the local serving container and its unpacked model.",
    )
    p.add_argument("endpoint_name")
    _add_local(p, "delete a local endpoint")
    _add_aws(p)
    p.set_defaults(func=cmd_delete)


def _add_transform(sub) -> None:
    p = sub.add_parser(
        "transform",
        help="classify a whole folder with batch transform (one <name>.out per input)",
        description="Create a SageMaker transform job over an S3 prefix. With --local: run "
        "`IMAGE serve` here as SageMaker does, honour its /execution-parameters, POST every file "
        "of a folder to /invocations and write <name>.out per input (<name>.error on failure). "
        "See docs/batch-transform.md.",
    )
    _add_image(p)
    p.add_argument("--input", required=True, help="s3://prefix/ of the inputs (--local: a folder)")
    p.add_argument("--output", required=True, help="s3://prefix/ for the .out files (--local: a folder)")
    p.add_argument("--model-name", help="an existing SageMaker model (else --model-data makes one)")
    p.add_argument("--model-data", help="s3://.../model.tar.gz (--local: also a local archive or folder)")
    p.add_argument(
        "--content-type", default=transform.IMAGE_CONTENT_TYPE,
        help=f"of each input (default: {transform.IMAGE_CONTENT_TYPE}; "
        f"{transform.JSONLINES_CONTENT_TYPE} with --split-type Line)",
    )  # fmt: skip
    p.add_argument("--split-type", choices=transform.SPLIT_TYPES, default="None", help="SplitType")
    p.add_argument("--batch-strategy", choices=transform.BATCH_STRATEGIES, help="default: the container's")
    p.add_argument("--max-payload-mb", type=int, help="MaxPayloadInMB (default: the container's, 6)")
    p.add_argument("--max-concurrent-transforms", type=int, help="default: the container's workers")
    p.add_argument("--instance-type", default=transform.DEFAULT_INSTANCE_TYPE, help="transform instance type")
    p.add_argument("--instance-count", type=int, default=1, help="transform instances")
    p.add_argument("--env", action="append", metavar="KEY=VALUE", help="container environment")
    p.add_argument("--job-name", help="transform job name (default: a unique one)")
    p.add_argument("--wait", action="store_true", help="wait until the job completes")
    _add_local(p, "run the transform")
    _add_aws(p, role=True)
    p.set_defaults(func=cmd_transform)


SUBCOMMAND_BUILDERS = (
    _add_metric_definitions,
    _add_upload_data,
    _add_push,
    _add_tune,
    _add_best,
    _add_train,
    _add_deploy,
    _add_invoke,
    _add_delete,
    _add_transform,
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
