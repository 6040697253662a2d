"""``update``, ``weights`` and ``captured``: a live endpoint changed and looked at."""

from __future__ import annotations

import sys
from pathlib import Path

from classifier_client.cli.common import account_settings, aws_context_for, print_json
from classifier_client.config import ConfigurationError


def variant_settings(args):
    """--variant, --shadow, --data-capture and --capture-percent, parsed."""
    from classifier_client.capture import DEFAULT_CAPTURE_PERCENT, DataCapture
    from classifier_client.variants import parse_shadow, parse_variant

    capture = None
    if args.data_capture:
        percent = DEFAULT_CAPTURE_PERCENT if args.capture_percent is None else args.capture_percent
        capture = DataCapture(args.data_capture, percent).check()
    return (
        tuple(parse_variant(text) for text in args.variant or []),
        tuple(parse_shadow(text) for text in args.shadow or []),
        capture,
    )


def _traffic_shift(args):
    from classifier_client.deployments import TrafficShift

    for mode in ("canary", "linear", "rolling"):
        text = getattr(args, mode)
        if text:
            return TrafficShift.parse(mode, text)
    return TrafficShift()


def _update_settings(args):
    from classifier_client.deployments import UpdateSettings
    from classifier_client.training import parse_assignments

    variants, shadows, capture = variant_settings(args)
    return UpdateSettings(
        endpoint_name=args.endpoint_name,
        model_data=args.model_data,
        variants=variants,
        shadows=shadows,
        image_uri=args.image,
        role=args.role,
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        environment=parse_assignments(args.env, "--env"),
        shift=_traffic_shift(args),
        termination_wait=args.termination_wait,
        rollback_alarms=tuple(args.rollback_alarm or ()),
        default_alarms=not args.no_default_alarms,
        latency_alarm_ms=args.latency_alarm_ms,
        data_capture=capture,
        capture_percent=args.capture_percent if capture is None else None,
        account=account_settings(args, False, ("model", "endpoint_config", "endpoint")),
    )


def _report(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cmd_update(args) -> int:
    if args.local:
        return _update_local(args)
    # Everything refused offline is refused before the AWS context is made.
    settings = _update_settings(args)
    settings.check()
    from classifier_client import deployments

    result = deployments.update(aws_context_for(args), settings, wait=args.wait, report=_report)
    print_json(result)
    if args.wait and result.get("outcome") != "completed":
        _report(f"update of {args.endpoint_name} {result['outcome']}: {result['reason']}")
        return 1
    return 0


def _update_local(args) -> int:
    from classifier_client import local_endpoints
    from classifier_client.deployments import DEFAULT_LATENCY_ALARM_MS
    from classifier_client.training import parse_assignments

    if not args.model_data or args.variant or args.shadow:
        raise ConfigurationError(
            "update --local replaces the one model of a local endpoint: give --model-data"
        )
    cloud_only = [
        flag
        for flag, value in (
            ("--canary/--linear/--rolling", args.canary or args.linear or args.rolling),
            ("--rollback-alarm", args.rollback_alarm),
            ("--data-capture", args.data_capture),
            ("--instance-type/--instance-count", args.instance_type or args.instance_count),
            ("--termination-wait", args.termination_wait),
            ("--role", args.role),
            ("--capture-percent", args.capture_percent is not None),
            ("rollback alarms", args.no_default_alarms or args.latency_alarm_ms != DEFAULT_LATENCY_ALARM_MS),
        )
        if value
    ]
    if cloud_only:
        _report(
            f"local mode does not apply: {', '.join(cloud_only)} "
            "(SageMaker only; a local update switches at once)"
        )
    account_settings(args, True, ("model", "endpoint_config", "endpoint"))
    ctx = aws_context_for(args, local=True) if args.model_data.startswith("s3://") else None
    print_json(
        local_endpoints.update_local(
            args.endpoint_name,
            args.model_data,
            image=args.image,
            environment=parse_assignments(args.env, "--env"),
            ctx=ctx,
        )
    )
    return 0


def cmd_weights(args) -> int:
    from classifier_client import deployments
    from classifier_client.variants import parse_weights

    weights = parse_weights(args.weights)
    print_json(deployments.set_weights(aws_context_for(args), args.endpoint_name, weights, wait=args.wait))
    return 0


def cmd_captured(args) -> int:
    from classifier_client import review

    since = review.parse_since(args.since) if args.since else None
    if args.limit is not None and args.limit < 1:
        raise ConfigurationError("--limit must be at least 1")
    summary = review.review_captured(
        aws_context_for(args),
        args.endpoint_name,
        Path(args.output),
        since=since,
        limit=args.limit,
        destination=args.capture_uri,
    )
    if args.json:
        print_json(summary)
    else:
        print(review.format_summary(summary))
    return 0
