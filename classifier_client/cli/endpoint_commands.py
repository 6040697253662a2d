"""``deploy``, ``invoke`` and ``delete``: a SageMaker endpoint, or the same container locally."""

from __future__ import annotations

from pathlib import Path

from classifier_client.cli.common import account_settings, aws_context_for, image_uri, print_json
from classifier_client.config import ConfigurationError


def _deploy_settings(args, ctx, local: bool, hosting=None):
    from classifier_client.cli.endpoint_life_commands import variant_settings
    from classifier_client.endpoints import DeploySettings, server_environment
    from classifier_client.training import parse_assignments

    if args.capture_percent is not None and not args.data_capture:
        raise ConfigurationError("--capture-percent needs --data-capture S3_URI")
    variants, shadows, capture = variant_settings(args)
    return DeploySettings(
        image_uri=image_uri(args, local),
        model_data=args.model_data,
        endpoint_name=args.endpoint_name,
        instance_type=args.instance_type,
        instance_count=args.instance_count,
        environment=server_environment(args.workers, args.timeout, parse_assignments(args.env, "--env")),
        hosting=hosting or _hosting_options(args),
        account=account_settings(args, local, ("model", "endpoint_config", "endpoint")),
        variants=variants,
        shadows=shadows,
        data_capture=capture,
        serving_image=args.serving_image,
    )


def _hosting_options(args):
    from classifier_client.hosting import HostingOptions, parse_autoscale

    return HostingOptions(
        async_output=args.async_output,
        async_failure=args.async_failure,
        success_topic=args.success_topic,
        error_topic=args.error_topic,
        async_max_concurrency=args.async_max_concurrency,
        serverless_memory_mb=args.serverless,
        serverless_max_concurrency=args.max_concurrency,
        multi_model=args.multi_model,
        autoscale=parse_autoscale(args.autoscale) if args.autoscale else None,
        target_invocations=args.target_invocations,
        target_backlog=args.target_backlog,
    )


def cmd_deploy(args) -> int:
    from classifier_client import endpoints, local_endpoints

    if args.image and args.serving_image:
        raise ConfigurationError("--serving-image picks the image when --image names none: give one of them")
    if args.local:
        if args.data_capture:
            raise ConfigurationError("--data-capture is SageMaker's: a local endpoint captures nothing")
        model_data = args.model_data or ""
        ctx = aws_context_for(args, local=True) if model_data.startswith("s3://") else None
        settings = _deploy_settings(args, ctx, local=True)
        print_json(local_endpoints.deploy_local(settings, ctx=ctx, port=args.port))
        return 0
    # Combinations SageMaker does not serve fail here, before any request (STS included).
    settings = _deploy_settings(args, None, False, _hosting_options(args))
    settings.check(wait=not args.no_wait)
    ctx = aws_context_for(args)
    print_json(endpoints.deploy(ctx, settings, wait=not args.no_wait))
    return 0


def cmd_invoke(args) -> int:
    from classifier_client import endpoints, local_endpoints

    if args.async_input and args.target_model:
        # API reference, InvokeEndpointAsync: unlike InvokeEndpoint, its request has no TargetModel.
        raise ConfigurationError(
            "--async and --target-model cannot be combined: InvokeEndpointAsync has no "
            "TargetModel (a multi-model endpoint is invoked synchronously, without --async)"
        )
    if args.async_input and args.target_variant:
        raise ConfigurationError(
            "--async and --target-variant cannot be combined: InvokeEndpointAsync has no TargetVariant"
        )
    if args.local and args.target_variant:
        raise ConfigurationError("--target-variant: a local endpoint serves one model, without variants")
    ctx = None if args.local else aws_context_for(args)
    results = {}
    for image in args.images:
        if ctx is None:
            result = local_endpoints.invoke_local(args.endpoint_name, Path(image), args.top_k)
        elif args.async_input:
            result = _invoke_async(ctx, args, Path(image))
        else:
            result = endpoints.invoke(
                ctx, args.endpoint_name, Path(image), args.top_k, args.target_model, args.target_variant
            )
        results[image] = result
        if not args.json:
            print(endpoints.format_predictions(Path(image), result))
    if args.json:
        print_json(results)
    return 0


def _invoke_async(ctx, args, image: Path):
    from classifier_client import endpoints, hosting

    return hosting.invoke_async(
        ctx,
        args.endpoint_name,
        image,
        input_prefix=args.async_input,
        content_type=endpoints.content_type_for(image),
        top_k=args.top_k,
        timeout_s=args.async_timeout,
        poll_s=args.poll_interval,
    )


def cmd_delete(args) -> int:
    from classifier_client import endpoints, local_endpoints

    if args.local:
        deleted = local_endpoints.delete_local(args.endpoint_name)
    else:
        deleted = endpoints.delete(aws_context_for(args), args.endpoint_name)
    for item in deleted:
        print(f"deleted {item}")
    return 0
