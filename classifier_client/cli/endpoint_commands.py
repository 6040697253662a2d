"""``deploy``, ``invoke`` and ``delete``: a SageMaker endpoint, or the same container locally."""

from __future__ import annotations

from pathlib import Path

from classifier_client.cli.common import aws_context_for, image_uri, print_json


def _deploy_settings(args, ctx, local: bool):
    from classifier_client.endpoints import DeploySettings, server_environment
    from classifier_client.training import parse_assignments

    return DeploySettings(
        image_uri=image_uri(args, ctx, local),
        model_data=args.model_data,
        endpoint_name=args.endpoint_name,
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        environment=server_environment(
            args.workers, args.timeout, parse_assignments(args.env, "--env")
        ),
    )


def cmd_deploy(args) -> int:
    from classifier_client import endpoints

    if args.local:
        ctx = aws_context_for(args, local=True) if args.model_data.startswith("s3://") else None
        settings = _deploy_settings(args, ctx, local=True)
        print_json(endpoints.deploy_local(settings, ctx=ctx, port=args.port))
        return 0
    ctx = aws_context_for(args)
    print_json(endpoints.deploy(ctx, _deploy_settings(args, ctx, False), wait=not args.no_wait))
    return 0


def cmd_invoke(args) -> int:
    from classifier_client import endpoints

    ctx = None if args.local else aws_context_for(args)
    results = {}
    for image in args.images:
        if args.local:
            result = endpoints.invoke_local(args.endpoint_name, Path(image), args.top_k)
        else:
            result = endpoints.invoke(ctx, args.endpoint_name, Path(image), args.top_k)
        results[image] = result
        if not args.json:
            print(endpoints.format_predictions(Path(image), result))
    if args.json:
        print_json(results)
    return 0


def cmd_delete(args) -> int:
    from classifier_client import endpoints

    if args.local:
        deleted = endpoints.delete_local(args.endpoint_name)
    else:
        deleted = endpoints.delete(aws_context_for(args), args.endpoint_name)
    for item in deleted:
        print(f"deleted {item}")
    return 0
