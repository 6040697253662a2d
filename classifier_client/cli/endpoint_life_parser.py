"""``update``, ``weights`` and ``captured``, and the variant and capture options ``deploy``
shares with ``update``: a live endpoint's life (docs/endpoints.md)."""

from __future__ import annotations

import argparse

from classifier_client import capture, deployments
from classifier_client.cli.arguments import add_account, add_aws, add_image, add_local
from classifier_client.cli.endpoint_life_commands import cmd_captured, cmd_update, cmd_weights


def add_variant_options(p: argparse.ArgumentParser, updating: bool = False) -> None:
    group = p.add_argument_group("variants", "A/B tests and shadow variants (docs/endpoints.md)")
    group.add_argument(
        "--variant", action="append", metavar="NAME=MODEL_DATA[:WEIGHT]",
        help="the variant NAME's new model (and weight)" if updating else
        "a production variant serving MODEL_DATA with this share of the traffic (weight / sum of "
        "weights, default 1); repeatable, instead of --model-data",
    )  # fmt: skip
    group.add_argument(
        "--shadow", action="append", metavar="NAME=MODEL_DATA:PERCENT",
        help="the shadow variant NAME's new model and share" if updating else
        "a shadow variant that gets a copy of PERCENT %% of the requests; its answers are not "
        "returned (compare them in CloudWatch and the captured data)",
    )  # fmt: skip


def add_capture_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("data capture", "record requests and answers in S3 (see `captured`)")
    group.add_argument(
        "--data-capture", metavar="S3_URI",
        help="capture inputs and outputs under S3_URI (encrypted with --kms-key when given)",
    )  # fmt: skip
    group.add_argument(
        "--capture-percent", type=int, metavar="P",
        help=f"share of the requests captured, 0-100 (default {capture.DEFAULT_CAPTURE_PERCENT})",
    )  # fmt: skip


def _add_traffic_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group(
        "deployment", "how SageMaker moves the traffic (default: blue/green, all at once)"
    )
    shift = group.add_mutually_exclusive_group()
    shift.add_argument(
        "--canary", metavar="PERCENT:SECONDS",
        help="blue/green: PERCENT of the capacity first, the rest after SECONDS without an alarm",
    )  # fmt: skip
    shift.add_argument("--linear", metavar="PERCENT:SECONDS", help="blue/green: PERCENT more every SECONDS")
    shift.add_argument(
        "--rolling", metavar="PERCENT:SECONDS",
        help="replace PERCENT of the instances at a time, SECONDS apart (no second fleet)",
    )  # fmt: skip
    group.add_argument(
        "--termination-wait", type=int, default=0, metavar="SECONDS",
        help="blue/green: keep the old fleet this long after the last shift, for the alarms",
    )  # fmt: skip
    group.add_argument(
        "--rollback-alarm", action="append", metavar="NAME",
        help="a CloudWatch alarm that rolls the update back (repeatable)",
    )  # fmt: skip
    group.add_argument(
        "--no-default-alarms", action="store_true",
        help="do not add the client's alarms on the new fleet's Invocation5XXErrors and ModelLatency",
    )  # fmt: skip
    group.add_argument(
        "--latency-alarm-ms", type=int, default=deployments.DEFAULT_LATENCY_ALARM_MS, metavar="MS",
        help="the default latency alarm's threshold (mean ModelLatency, default %(default)s ms)",
    )  # fmt: skip


def add_update(sub) -> None:
    p = sub.add_parser(
        "update",
        help="ship a new model to a live endpoint, with no downtime and automatic rollback",
        description="Make a new model and endpoint config from the live ones (hosting options, "
        "scaling, data capture, VPC, keys and tags carry over unless changed here) and "
        "UpdateEndpoint with a blue/green or rolling deployment that rolls back when an alarm "
        "fires. With --local: start a second container with the new model, wait for its /ping, "
        "and switch the endpoint to it.",
    )
    p.add_argument("endpoint_name", metavar="ENDPOINT")
    p.add_argument("--model-data", help="the new s3://.../model.tar.gz (--local: also a local archive)")
    add_image(p, "keep the live model's image")
    p.add_argument("--instance-type", help="of the replaced variants (default: as now)")
    p.add_argument("--instance-count", type=int, help="instances per variant (default: as many as now)")
    p.add_argument(
        "--env", action="append", metavar="KEY=VALUE", help="container environment to add or change"
    )
    p.add_argument(
        "--wait", action="store_true", help="follow the deployment: completed or rolled back, and why"
    )
    add_variant_options(p, updating=True)
    add_capture_options(p)
    _add_traffic_options(p)
    add_local(p, "replace the model of a local endpoint")
    add_account(p)
    add_aws(p, role=True, role_help="(default: the live model's role)")
    p.set_defaults(func=cmd_update)


def add_weights(sub) -> None:
    p = sub.add_parser(
        "weights",
        help="move traffic between an endpoint's production variants",
        description="UpdateEndpointWeightsAndCapacities: each named variant gets its weight; a "
        "variant's share of the traffic is its weight over the sum. Variants not named keep theirs.",
    )
    p.add_argument("endpoint_name", metavar="ENDPOINT")
    p.add_argument("weights", nargs="+", metavar="NAME=WEIGHT")
    p.add_argument("--wait", action="store_true", help="wait until the endpoint is InService again")
    add_aws(p)
    p.set_defaults(func=cmd_weights)


def add_captured(sub) -> None:
    p = sub.add_parser(
        "captured",
        help="turn an endpoint's captured traffic into a review set",
        description="Read the endpoint's data capture files (every variant) and write each "
        "image to DIR/<predicted label>/<event id>.<ext>, a row per image to DIR/captured.csv, "
        "and print per label and per variant the count, mean top-1 probability and share under 0.5.",
    )
    p.add_argument("endpoint_name", metavar="ENDPOINT")
    p.add_argument("--output", required=True, metavar="DIR", help="the review set's folder")
    p.add_argument("--since", metavar="TIME", help="only requests since an ISO time or an age (30m, 6h, 2d)")
    p.add_argument("--limit", type=int, metavar="N", help="only the newest N images")
    p.add_argument(
        "--capture-uri", metavar="S3_URI",
        help="the capture destination (default: the endpoint's DataCaptureConfig; use it after the "
        "endpoint is deleted)",
    )  # fmt: skip
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_aws(p)
    p.set_defaults(func=cmd_captured)


def add_target_variant(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--target-variant", metavar="NAME",
        help="send every request to this production variant, whatever the weights",
    )  # fmt: skip
