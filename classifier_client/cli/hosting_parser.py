"""``deploy``, ``invoke``, ``delete`` and ``transform``: their options and help."""

from __future__ import annotations

import argparse

from classifier_client import batch_transform, endpoints, hosting
from classifier_client.cli.arguments import (
    add_account,
    add_aws,
    add_image,
    add_local,
)
from classifier_client.cli.endpoint_commands import cmd_delete, cmd_deploy, cmd_invoke
from classifier_client.cli.endpoint_life_parser import (
    add_capture_options,
    add_target_variant,
    add_variant_options,
)
from classifier_client.cli.transform_commands import cmd_transform


def add_deploy(sub) -> None:
    p = sub.add_parser(
        "deploy",
        help="deploy a model.tar.gz to an endpoint (Model + EndpointConfig + Endpoint)",
        description="Create a SageMaker Model (our image + model.tar.gz), an EndpointConfig "
        "and an Endpoint, and wait until it is InService. With --local: run `IMAGE serve` with "
        "the unpacked model on 127.0.0.1, as SageMaker hosting does, and wait for /ping.",
    )
    add_image(p)
    p.add_argument(
        "--serving-image", action="store_true",
        help="without --image: the newest serving image `push --serve-only` made (no torch, a tenth "
        "of the size; serves models with an OpenVINO export), "
        f"{endpoints.LOCAL_SERVING_IMAGE} with --local",
    )  # fmt: skip
    p.add_argument(
        "--model-data",
        help="s3://.../model.tar.gz (with --local also a local model.tar.gz or model folder); "
        "or --variant per model",
    )
    p.add_argument("--endpoint-name", required=True, help="endpoint name (local: container name)")
    p.add_argument("--instance-type", default=endpoints.DEFAULT_INSTANCE_TYPE, help="hosting instance type")
    p.add_argument("--instance-count", type=int, default=1, help="hosting instances")
    p.add_argument("--workers", type=int, help="gunicorn workers per instance (default: auto)")
    p.add_argument("--timeout", type=int, help="model server timeout in seconds")
    p.add_argument("--env", action="append", metavar="KEY=VALUE", help="container environment")
    p.add_argument("--no-wait", action="store_true", help="return before InService")
    add_local(p, "serve the model")
    p.add_argument("--port", type=int, default=0, help="--local: host port (default: a free one)")
    _add_hosting_options(p)
    add_variant_options(p)
    add_capture_options(p)
    add_account(p)
    add_aws(p, role=True)
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
    group.add_argument(
        "--target-backlog", type=float, metavar="N",
        help="--async-output with --autoscale 0:MAX: target of ApproximateBacklogSizePerInstance "
        "(queued requests per instance); a HasBacklogWithoutCapacity alarm scales out from zero",
    )  # fmt: skip


def add_invoke(sub) -> None:
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
    add_target_variant(p)
    _add_invoke_hosting_options(p)
    add_local(p, "invoke a local endpoint made by `deploy --local`")
    add_aws(p)
    p.set_defaults(func=cmd_invoke)


def _add_invoke_hosting_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--target-model", metavar="NAME.tar.gz",
        help="multi-model endpoint: the model archive under the endpoint's S3 prefix "
        "(not with --async: InvokeEndpointAsync has no TargetModel)",
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


def add_delete(sub) -> None:
    p = sub.add_parser(
        "delete",
        help="delete an endpoint with its endpoint config and model",
        description="Delete the endpoint, its endpoint config and its model(s). With --local: "
        "stop and remove the local serving container and its unpacked model.",
    )
    p.add_argument("endpoint_name")
    add_local(p, "delete a local endpoint")
    add_aws(p)
    p.set_defaults(func=cmd_delete)


def add_transform(sub) -> None:
    p = sub.add_parser(
        "transform",
        help="classify a whole folder with batch transform (one <name>.out per input)",
        description="Create a SageMaker transform job over an S3 prefix. With --local: run "
        "`IMAGE serve` here as SageMaker does, honour its /execution-parameters, POST every file "
        "of a folder to /invocations and write <name>.out per input (<name>.error on failure). "
        "See docs/batch-transform.md.",
    )
    add_image(p)
    p.add_argument("--input", required=True, help="s3://prefix/ of the inputs (--local: a folder)")
    p.add_argument("--output", required=True, help="s3://prefix/ for the .out files (--local: a folder)")
    p.add_argument("--model-name", help="an existing SageMaker model (else --model-data makes one)")
    p.add_argument("--model-data", help="s3://.../model.tar.gz (--local: also a local archive or folder)")
    p.add_argument(
        "--content-type", default=batch_transform.IMAGE_CONTENT_TYPE,
        help=f"of each input (default: {batch_transform.IMAGE_CONTENT_TYPE}; "
        f"{batch_transform.JSONLINES_CONTENT_TYPE} with --split-type Line)",
    )  # fmt: skip
    p.add_argument("--split-type", choices=batch_transform.SPLIT_TYPES, default="None", help="SplitType")
    p.add_argument(
        "--batch-strategy", choices=batch_transform.BATCH_STRATEGIES, help="default: the container's"
    )
    p.add_argument("--max-payload-mb", type=int, help="MaxPayloadInMB (default: the container's, 6)")
    p.add_argument("--max-concurrent-transforms", type=int, help="default: the container's workers")
    p.add_argument(
        "--instance-type", default=batch_transform.DEFAULT_INSTANCE_TYPE, help="transform instance type"
    )
    p.add_argument("--instance-count", type=int, default=1, help="transform instances")
    p.add_argument("--env", action="append", metavar="KEY=VALUE", help="container environment")
    p.add_argument("--job-name", help="transform job name (default: a unique one)")
    p.add_argument("--wait", action="store_true", help="wait until the job completes")
    add_local(p, "run the transform")
    add_account(p)
    add_aws(p, role=True)
    p.set_defaults(func=cmd_transform)
