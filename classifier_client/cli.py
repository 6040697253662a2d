"""``sm-classifier``: every step from data to a deployed endpoint, on SageMaker or locally.

Each subcommand is a thin layer over one library module; ``--local`` runs the same step
in SDK local mode / the same container on this machine. Progress and SDK logs go to
stderr, results to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
from pathlib import Path

from classifier.debugging.hook import TENSOR_SAVE_INTERVAL
from classifier_client.config import IMAGE_ENV, ROLE_ENV, ConfigurationError
from classifier_client.strategies import STRATEGIES

LOCAL_IMAGE_DEFAULT = "sagemaker-image-classifier:latest"
LOCAL_RUNS_DIR = "local-runs"
DATA_SPLITS = {"train": "train", "valid": "valid", "validation": "valid", "test": "test"}

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
offline: add --local to train, deploy, invoke and delete (local data folders, local image).
environment: AWS_PROFILE / AWS_REGION, {ROLE_ENV} (execution role), {IMAGE_ENV} (image URI).
"""


# --- shared argument groups ------------------------------------------------------------------


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
    for channel, text in [
        ("train", "training images (ImageFolder or one .zip/.tar.gz of it)"),
        ("valid", "validation images"),
        ("test", "test images (optional; evaluated once at the end)"),
        ("pretrained", "a torchvision state_dict for jobs without internet (optional)"),
    ]:
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


def _add_compute(parser: argparse.ArgumentParser, default_instance: str) -> None:
    group = parser.add_argument_group("compute")
    group.add_argument(
        "--instance-type",
        help=f"SageMaker instance type (default: {default_instance}; local_cpu with --local)",
    )
    group.add_argument("--instance-count", type=int, default=1, help="instances (default: 1)")
    group.add_argument("--volume-size", type=int, default=30, help="EBS GB per instance")
    group.add_argument(
        "--max-run", type=int, default=24 * 3600, help="max training seconds (default: 86400)"
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
    group.add_argument("--base-job-name", default="image-classifier", help="job name prefix")


# --- helpers ----------------------------------------------------------------------------------


def _context(args, *, local: bool = False):
    from classifier_client.config import aws_context

    return aws_context(
        region=getattr(args, "region", None),
        profile=getattr(args, "profile", None),
        role_arn=getattr(args, "role", None),
        local=local,
    )


def _image_uri(args, ctx, local: bool) -> str:
    if args.image:
        return args.image
    if local:
        return LOCAL_IMAGE_DEFAULT
    from classifier_client.image import DEFAULT_IMAGE_NAME, DEFAULT_TAG

    return f"{ctx.account}.dkr.ecr.{ctx.region}.amazonaws.com/{DEFAULT_IMAGE_NAME}:{DEFAULT_TAG}"


def _channels(args, ctx, local: bool) -> dict[str, str]:
    channels: dict[str, str] = {}
    if args.data:
        channels.update(_discover_channels(args.data, ctx, local))
    for channel in ("train", "valid", "test", "pretrained"):
        if getattr(args, channel):
            channels[channel] = getattr(args, channel)
    if "train" not in channels:
        raise ConfigurationError("no training data: pass --data ROOT or --train URI")
    if "valid" not in channels:
        raise ConfigurationError(
            "no validation data: pass --valid URI (or a --data root with valid/); the tuner's "
            "objective is valid_accuracy"
        )
    return channels


def _discover_channels(root: str, ctx, local: bool) -> dict[str, str]:
    """train/valid(ation)/test under a local folder or an S3 prefix (one ListObjects call)."""
    if root.startswith("s3://"):
        if local:
            raise ConfigurationError("--local trains on local folders; pass a local --data path")
        from classifier_client.config import parse_s3_uri

        bucket, prefix = parse_s3_uri(root.rstrip("/") + "/")
        response = ctx.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix, Delimiter="/")
        present = {
            p["Prefix"][len(prefix) :].rstrip("/") for p in response.get("CommonPrefixes", [])
        }
        found = {
            DATA_SPLITS[s]: f"s3://{bucket}/{prefix}{s}/"
            for s in sorted(present & set(DATA_SPLITS))
        }
    else:
        path = Path(root).expanduser()
        if not path.is_dir():
            raise ConfigurationError(f"--data {root} is not a folder")
        found = {
            DATA_SPLITS[p.name]: str(p.resolve())
            for p in sorted(path.iterdir())
            if p.name in DATA_SPLITS and p.is_dir()
        }
    if not found:
        raise ConfigurationError(f"--data {root} holds none of train/, valid/, test/")
    return found


def _hyperparameters(args) -> dict[str, str]:
    from classifier_client.training import load_hyperparameters_file, parse_assignments

    values = {}
    if args.hyperparameters_file:
        values.update(load_hyperparameters_file(args.hyperparameters_file))
    values.update(parse_assignments(args.hp))
    return values


def _training_settings(args, ctx, local: bool, debugger=None):
    from classifier_client.training import (
        DEFAULT_INSTANCE_TYPE,
        TrainingSettings,
        parse_assignments,
    )

    instance_type = args.instance_type or ("local_cpu" if local else DEFAULT_INSTANCE_TYPE)
    kwargs = {"debugger": debugger} if debugger is not None else {}
    return TrainingSettings(
        image_uri=_image_uri(args, ctx, local),
        channels=_channels(args, ctx, local),
        hyperparameters=_hyperparameters(args),
        instance_type=instance_type,
        instance_count=args.instance_count,
        volume_size_gb=args.volume_size,
        max_run_seconds=args.max_run,
        spot=args.spot,
        max_wait_seconds=args.max_wait,
        checkpoint_s3_uri=args.checkpoint_s3_uri,
        output_s3_uri=args.output_s3_uri,
        environment=parse_assignments(args.env, "--env"),
        base_job_name=args.base_job_name,
        **kwargs,
    )


def _print_json(data) -> None:
    print(json.dumps(data, indent=2, default=str))


# --- subcommands ------------------------------------------------------------------------------


def cmd_metric_definitions(args) -> int:
    from classifier.metric_definitions import METRIC_DEFINITIONS, OBJECTIVE_METRIC, OBJECTIVE_TYPE

    if args.with_objective:
        _print_json(
            {
                "MetricDefinitions": METRIC_DEFINITIONS,
                "Objective": {"MetricName": OBJECTIVE_METRIC, "Type": OBJECTIVE_TYPE},
            }
        )
    else:
        _print_json(METRIC_DEFINITIONS)
    return 0


def cmd_upload_data(args) -> int:
    from classifier_client.data import upload_data

    ctx = _context(args)
    result = upload_data(
        ctx, args.source, args.s3_uri, progress=lambda m: print(m, file=sys.stderr)
    )
    print(
        f"uploaded {result.uploaded} files ({result.bytes_uploaded / 1e6:.1f} MB), "
        f"skipped {result.skipped} already in S3",
        file=sys.stderr,
    )
    _print_json({"channels": result.channels})
    return 0


def cmd_push(args) -> int:
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
        )
    )
    print(reference)
    return 0


def _debugger_settings(args):
    from classifier_client.debugger import DebuggerSettings, parse_rule_names

    rule_parameters: dict[str, dict[str, str]] = {}
    for item in args.rule_param or []:
        target, sep, value = item.partition("=")
        rule, dot, key = target.partition(".")
        if not sep or not dot:
            raise ConfigurationError(f"--rule-param {item!r} is not RULE.KEY=VALUE")
        rule_parameters.setdefault(rule, {})[key] = value
    try:
        rules = tuple(parse_rule_names(args.debugger_rules))
        unused = set(rule_parameters) - set(rules)
        if unused:
            raise ValueError(f"--rule-param for rules not attached: {sorted(unused)}")
        return DebuggerSettings(
            hook=not args.no_debugger_hook,
            tensor_save_interval=args.tensor_save_interval,
            rules=rules,
            rule_parameters=rule_parameters,
            rule_instance_type=args.rule_instance_type,
            rule_evaluator_image=args.rule_evaluator_image,
            profiler=not args.no_profiler,
            profiling_interval_ms=args.profiling_interval_ms,
        )
    except ValueError as error:
        raise ConfigurationError(str(error)) from error


def cmd_train(args) -> int:
    from classifier_client import training

    if args.local:
        cloud_only = {
            "--spot": args.spot,
            "--checkpoint-s3-uri": args.checkpoint_s3_uri,
            "--output-s3-uri": args.output_s3_uri,
            "--debugger-rules": args.debugger_rules not in (None, "none"),
            "--wait": args.wait,
        }
        given = [flag for flag, value in cloud_only.items() if value]
        if given:
            raise ConfigurationError(
                f"{', '.join(given)}: for SageMaker jobs only, not with --local "
                "(a local job runs our rules itself when debug=true, the default)"
            )
        ctx = _context(args, local=True)
        settings = _training_settings(args, ctx, local=True)
        if args.debug_local:
            settings.hyperparameters.setdefault("debug", "true")
        # The SDK streams the containers' logs to stdout; keep stdout for the result.
        with contextlib.redirect_stdout(sys.stderr):
            result = training.train_locally(ctx, settings, args.local_dir)
        print(f"local job folder: {result.job_dir}", file=sys.stderr)
        _print_json(
            {"model_data": str(result.model_archive), "output_data": str(result.output_archive)}
        )
        return 0
    ctx = _context(args)
    settings = _training_settings(args, ctx, local=False, debugger=_debugger_settings(args))
    job = training.start_training_job(ctx, settings, wait=args.wait)
    _print_json(training.describe_training_job(ctx, job.training_job_name))
    return 0


def cmd_tune(args) -> int:
    from classifier_client.strategies import check_strategy, default_early_stopping
    from classifier_client.tuning import (
        LOCAL_MODE_MESSAGE,
        TuningSettings,
        default_ranges,
        parse_range,
        start_tuning_job,
    )

    if args.local:
        raise ConfigurationError(LOCAL_MODE_MESSAGE)
    ranges = {} if args.only_ranges else default_ranges(args.strategy)
    ranges.update(parse_range(text) for text in args.range or [])
    early_stopping = default_early_stopping(args.strategy)
    if args.early_stopping is not None:
        early_stopping = args.early_stopping == "Auto"
    # Before any AWS call: a setting the strategy refuses fails here, offline, with the fix.
    check_strategy(args.strategy, ranges, early_stopping)
    ctx = _context(args)
    training_settings = _training_settings(args, ctx, local=False)
    settings = TuningSettings(
        training=training_settings,
        ranges=ranges,
        max_jobs=args.max_jobs,
        max_parallel_jobs=args.max_parallel_jobs,
        strategy=args.strategy,
        early_stopping=early_stopping,
        warm_start_parents=tuple(args.warm_start_from or ()),
        warm_start_type=args.warm_start_type,
    )
    print("tuning ranges:", file=sys.stderr)
    for name, spec in sorted(settings.ranges.items()):
        print(f"  {name} = {spec.describe()}", file=sys.stderr)
    name = start_tuning_job(ctx, settings, wait=args.wait)
    _print_json({"tuning_job": name, "next": f"sm-classifier best {name} --output best.json"})
    return 0


def cmd_best(args) -> int:
    from classifier_client.tuning import best_training_job, format_best_table

    ctx = _context(args)
    best = best_training_job(ctx, args.tuning_job)
    print(format_best_table(best))
    print()
    _print_json(best)
    if args.output:
        Path(args.output).write_text(json.dumps(best, indent=2) + "\n")
        print(
            f"wrote {args.output} (use: train --hyperparameters-file {args.output})",
            file=sys.stderr,
        )
    return 0


def _deploy_settings(args, ctx, local: bool):
    from classifier_client.endpoints import DeploySettings, server_environment
    from classifier_client.training import parse_assignments

    return DeploySettings(
        image_uri=_image_uri(args, ctx, local),
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
        ctx = _context(args, local=True) if args.model_data.startswith("s3://") else None
        settings = _deploy_settings(args, ctx, local=True)
        _print_json(endpoints.deploy_local(settings, ctx=ctx, port=args.port))
        return 0
    ctx = _context(args)
    _print_json(endpoints.deploy(ctx, _deploy_settings(args, ctx, False), wait=not args.no_wait))
    return 0


def cmd_invoke(args) -> int:
    from classifier_client import endpoints

    ctx = None if args.local else _context(args)
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
        _print_json(results)
    return 0


def cmd_delete(args) -> int:
    from classifier_client import endpoints

    if args.local:
        deleted = endpoints.delete_local(args.endpoint_name)
    else:
        deleted = endpoints.delete(_context(args), args.endpoint_name)
    for item in deleted:
        print(f"deleted {item}")
    return 0


# --- parser -----------------------------------------------------------------------------------


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

    def add(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=description)

    p = add(
        "metric-definitions",
        "print the HPO metric definitions as JSON",
        "Print [{Name, Regex}] exactly as `tune` and `train` send them (from "
        "classifier.metric_definitions, the module ./train prints its metric lines with), "
        "ready to paste into the console or another tool.",
    )
    p.add_argument(
        "--with-objective", action="store_true", help="also print the objective metric and type"
    )
    p.set_defaults(func=cmd_metric_definitions)

    p = add(
        "upload-data",
        "upload an ImageFolder (or dogImages.zip) to S3, skipping files already there",
        "Upload SOURCE (a folder with train/ valid/ [test/], or a .zip/.tar.gz of one such as "
        "dogImages.zip) under S3_URI. Files with the same size and MD5 already in S3 are "
        "skipped, so an interrupted upload resumes. Prints the channel URIs for --data.",
    )
    p.add_argument("source", help="local folder or archive")
    p.add_argument("s3_uri", help="destination prefix, e.g. s3://my-bucket/dogImages")
    _add_aws(p)
    p.set_defaults(func=cmd_upload_data)

    p = add(
        "push",
        "build the image and push it to ECR (wraps build_and_push.sh)",
        "Build container/Dockerfile and push it to Amazon ECR (repository created if missing) "
        "or to --registry. Prints the pushed image URI: use it as --image or $"
        f"{IMAGE_ENV}. With --no-push it only builds, for --local runs.",
    )
    p.add_argument("--name", default="sagemaker-image-classifier", help="repository/image name")
    p.add_argument("--tag", default="latest", help="image tag")
    p.add_argument("--region", help="ECR region (default: AWS_REGION or the profile's)")
    p.add_argument("--account", help="AWS account id (default: from STS)")
    p.add_argument("--registry", help="push to this registry instead of ECR (HOST[:PORT][/PATH])")
    p.add_argument("--base-image", help="Docker base image build argument")
    p.add_argument("--no-push", action="store_true", help="build only")
    p.add_argument("--skip-build", action="store_true", help="push an already built image")
    p.set_defaults(func=cmd_push)

    p = add(
        "tune",
        "start a hyperparameter tuning job (SageMaker only)",
        "Start a SageMaker hyperparameter tuning job over the image: objective valid_accuracy "
        "(maximised), metric regexes from classifier.metric_definitions. Default ranges "
        "(Bayesian, Random): learning_rate continuous:1e-4:0.1:log, batch_size "
        "categorical:16,32,64,128, optimizer categorical:sgd,adam,adamw, epochs integer:2:10; "
        "Hyperband: the same without epochs (static, --hp epochs=N is its maximum, 10 by "
        "default); Grid: learning_rate categorical:0.0003,0.001,0.003, batch_size "
        "categorical:32,64, optimizer categorical:adam,sgd. Settings a strategy refuses fail "
        "before any AWS call. Needs AWS: there is no local mode for tuning.",
    )
    _add_image(p)
    _add_channels(p)
    _add_hyperparameters(p)
    group = p.add_argument_group("tuning")
    group.add_argument(
        "--range",
        action="append",
        metavar="SPEC",
        help="NAME=continuous:LOW:HIGH[:log] | NAME=integer:LOW:HIGH[:log] | "
        "NAME=categorical:A,B,C (repeatable; replaces the default range of NAME)",
    )
    group.add_argument("--only-ranges", action="store_true", help="tune only the --range ones")
    group.add_argument("--max-jobs", type=int, default=12, help="training jobs in all (12)")
    group.add_argument("--max-parallel-jobs", type=int, default=3, help="at once (3)")
    group.add_argument(
        "--strategy",
        default="Bayesian",
        choices=STRATEGIES,
        help="Bayesian (default), Random, Hyperband (epochs static: its resource) or Grid "
        "(categorical ranges only); each has default ranges that it accepts",
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
        default="identical",
        choices=["identical", "transfer"],
        help="identical: same data and image; transfer: changed data/ranges",
    )
    group.add_argument("--wait", action="store_true", help="wait for the tuning job to finish")
    _add_compute(p, "ml.m5.xlarge")
    _add_aws(p, role=True)
    p.add_argument("--local", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_tune)

    p = add(
        "best",
        "show the best training job of a tuning job, as a table and JSON",
        "Print the best training job of TUNING_JOB: its objective value and its "
        "hyperparameters (tuned ones starred), then the same as JSON. --output writes the "
        "JSON for `train --hyperparameters-file`.",
    )
    p.add_argument("tuning_job")
    p.add_argument("--output", metavar="FILE", help="also write the JSON to FILE")
    _add_aws(p)
    p.set_defaults(func=cmd_best)

    p = add(
        "train",
        "run a training job with Debugger hook, rules and profiler",
        "Run one training job. On SageMaker: the Debugger hook saves the tensors our rules "
        "read and the job evaluates our rules itself at its end; for accounts that still have "
        "SageMaker Debugger, --debugger-rules also attaches them as custom rules (evaluated by "
        "AWS's rule-evaluator image), the profiler is on, --spot uses managed spot with S3 checkpoints, and "
        "--instance-count N makes one torch.distributed job across N instances. With "
        "--local: the same job in SDK local mode (one container per instance), data from "
        "local folders; prints the local model.tar.gz.",
    )
    _add_image(p)
    _add_channels(p)
    _add_hyperparameters(p)
    _add_compute(p, "ml.m5.xlarge")
    group = p.add_argument_group("debugger and profiler (SageMaker)")
    group.add_argument(
        "--debugger-rules",
        default="none",
        metavar="RULES",
        help="our rules to attach as SageMaker custom rules: all, none, or a comma list of "
        "loss_not_decreasing, vanishing_gradient, exploding_tensor, overfit, overtraining, "
        "poor_weight_initialization, class_imbalance (default: none; the job itself "
        "evaluates all of them at the end and logs the verdicts)",
    )
    group.add_argument(
        "--rule-param", action="append", metavar="RULE.KEY=VALUE", help="a rule parameter"
    )
    group.add_argument("--rule-instance-type", default="ml.t3.medium", help="rule job instance")
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
        default=500,
        choices=[100, 200, 500, 1000, 5000, 60000],
        help="system metrics sampling interval",
    )
    group.add_argument("--wait", action="store_true", help="wait and stream the job's logs")
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
    _add_aws(p, role=True)
    p.set_defaults(func=cmd_train)

    p = add(
        "deploy",
        "deploy a model.tar.gz to an endpoint (Model + EndpointConfig + Endpoint)",
        "Create a SageMaker Model (our image + model.tar.gz), an EndpointConfig and an "
        "Endpoint, and wait until it is InService. With --local: run `IMAGE serve` with the "
        "unpacked model on 127.0.0.1, as SageMaker hosting does, and wait for /ping.",
    )
    _add_image(p)
    p.add_argument(
        "--model-data",
        required=True,
        help="s3://.../model.tar.gz (with --local also a local model.tar.gz or model folder)",
    )
    p.add_argument("--endpoint-name", required=True, help="endpoint name (local: container name)")
    p.add_argument("--instance-type", default="ml.m5.large", help="hosting instance type")
    p.add_argument("--instance-count", type=int, default=1, help="hosting instances")
    p.add_argument("--workers", type=int, help="gunicorn workers per instance (default: auto)")
    p.add_argument("--timeout", type=int, help="model server timeout in seconds")
    p.add_argument("--env", action="append", metavar="KEY=VALUE", help="container environment")
    p.add_argument("--no-wait", action="store_true", help="return before InService")
    _add_local(p, "serve the model")
    p.add_argument("--port", type=int, default=0, help="--local: host port (default: a free one)")
    _add_aws(p, role=True)
    p.set_defaults(func=cmd_deploy)

    p = add(
        "invoke",
        "send image files to an endpoint and print the top-k classes",
        "POST each image to the endpoint (Content-Type from the file extension; top-k via "
        "the X-Amzn-SageMaker-Custom-Attributes header) and print the top-k labels.",
    )
    p.add_argument("endpoint_name")
    p.add_argument("images", nargs="+", metavar="IMAGE_FILE")
    p.add_argument("--top-k", type=int, default=3, help="classes to return (default: 3)")
    p.add_argument("--json", action="store_true", help="print the raw JSON responses")
    _add_local(p, "invoke a local endpoint made by `deploy --local`")
    _add_aws(p)
    p.set_defaults(func=cmd_invoke)

    p = add(
        "delete",
        "delete an endpoint with its endpoint config and model",
        "Delete the endpoint, its endpoint config and its model(s). With --local: stop and "
        "remove the local serving container and its unpacked model.",
    )
    p.add_argument("endpoint_name")
    _add_local(p, "delete a local endpoint")
    _add_aws(p)
    p.set_defaults(func=cmd_delete)
    return parser


def _configure_logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not verbose:
        for name in ("sagemaker", "sagemaker.config", "botocore", "urllib3"):
            logging.getLogger(name).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError

    try:
        return args.func(args)
    except ConfigurationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except NoCredentialsError:
        print(
            "error: no AWS credentials (aws configure / AWS_PROFILE / --profile)", file=sys.stderr
        )
        return 2
    except NoRegionError:
        print("error: no AWS region (--region or AWS_REGION)", file=sys.stderr)
        return 2
    except ClientError as error:
        info = error.response.get("Error", {})
        print(f"error: AWS {info.get('Code')}: {info.get('Message')}", file=sys.stderr)
        return 1
    except BotoCoreError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
