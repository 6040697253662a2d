"""``transform``: batch transform on SageMaker (CreateTransformJob), or the same run locally."""

from __future__ import annotations

from classifier_client.cli.common import account_settings, aws_context_for, image_uri, print_json


def _settings(args, ctx, local: bool):
    from classifier_client.batch_transform import TransformSettings
    from classifier_client.training import parse_assignments

    settings = TransformSettings(
        input=args.input,
        output=args.output,
        image_uri=args.image or "",
        model_name=args.model_name,
        model_data=args.model_data,
        content_type=args.content_type,
        split_type=args.split_type,
        batch_strategy=args.batch_strategy,
        max_payload_mb=args.max_payload_mb,
        max_concurrent=args.max_concurrent_transforms,
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        environment=parse_assignments(args.env, "--env"),
        account=account_settings(args, local, ("model", "transform")),
    )
    if args.job_name:
        settings.job_name = args.job_name
    # Offline, before the image URI (which may ask STS for the account) or any request.
    settings.validate()
    settings.image_uri = image_uri(args, local)
    return settings


def cmd_transform(args) -> int:
    from classifier_client import batch_transform

    if args.local:
        if not args.model_data:
            raise SystemExit("transform --local needs --model-data (a model.tar.gz or model folder)")
        summary = batch_transform.run_local(_settings(args, None, local=True))
        print_json(summary)
        return 1 if summary["failed"] else 0
    ctx = aws_context_for(args)
    print_json(batch_transform.create_transform_job(ctx, _settings(args, ctx, False), wait=args.wait))
    return 0
