"""``metric-definitions``, ``upload-data`` and ``push``: what a job needs before it starts."""

from __future__ import annotations

import sys

from classifier_client.cli.common import aws_context_for, print_json


def cmd_metric_definitions(args) -> int:
    from classifier.metric_definitions import METRIC_DEFINITIONS, OBJECTIVE_METRIC, OBJECTIVE_TYPE

    if args.with_objective:
        print_json(
            {
                "MetricDefinitions": METRIC_DEFINITIONS,
                "Objective": {"MetricName": OBJECTIVE_METRIC, "Type": OBJECTIVE_TYPE},
            }
        )
    else:
        print_json(METRIC_DEFINITIONS)
    return 0


def cmd_upload_data(args) -> int:
    from classifier_client.data import upload_data

    ctx = aws_context_for(args)
    result = upload_data(
        ctx, args.source, args.s3_uri, progress=lambda m: print(m, file=sys.stderr), kms_key=args.kms_key
    )
    print(
        f"uploaded {result.uploaded} files ({result.bytes_uploaded / 1e6:.1f} MB), "
        f"skipped {result.skipped} already in S3",
        file=sys.stderr,
    )
    print_json({"channels": result.channels})
    return 0


def cmd_push(args) -> int:
    from classifier_client.account_settings import parse_tags
    from classifier_client.image import PushOptions, push_image

    reference = push_image(
        PushOptions(
            name=args.name,
            tag=args.tag,
            region=args.region,
            account=args.account,
            registry=args.registry,
            push=not args.no_push,
            build=not args.skip_build,
            base_image=args.base_image,
            mutable_tags=args.mutable_tags,
            repository_tags=parse_tags(args.repository_tag),
            kms_key=args.kms_key,
            serve_only=args.serve_only,
        )
    )
    print(reference)
    return 0
