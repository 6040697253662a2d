"""``train``, ``tune`` and ``best``: training jobs, tuning jobs and the best job of one."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

from classifier_client.cli.common import (
    CHANNEL_HELP,
    account_settings,
    aws_context_for,
    image_uri,
    print_json,
)
from classifier_client.config import ConfigurationError
from classifier_client.data import discover_channels


def _channels(args, ctx, local: bool) -> dict[str, str]:
    channels: dict[str, str] = {}
    if args.data:
        channels.update(discover_channels(args.data, ctx, local))
    for channel in CHANNEL_HELP:
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


def _hyperparameters(args, defaults: dict[str, str] | None = None):
    """--hyperparameters-file, then --hp: checked as they are read, before anything talks to AWS."""
    from classifier_client.training import Hyperparameters

    return Hyperparameters.load(args.hyperparameters_file, args.hp, defaults)


def _training_settings(args, ctx, local: bool, hyperparameters, debugger=None):
    from classifier_client.training import (
        DEFAULT_INSTANCE_TYPE,
        LOCAL_INSTANCE_TYPES,
        TrainingSettings,
        parse_assignments,
    )
    from classifier_client.watching import WatchSettings

    instance_type = args.instance_type or (LOCAL_INSTANCE_TYPES[0] if local else DEFAULT_INSTANCE_TYPE)
    kwargs = {"debugger": debugger} if debugger is not None else {}
    watching = WatchSettings(
        tensorboard_s3_uri=args.tensorboard_s3_uri,
        mlflow_tracking_uri=args.mlflow_tracking_uri,
        mlflow_experiment=args.mlflow_experiment,
        mlflow_register_model=args.mlflow_register_model,
    )
    return TrainingSettings(
        account=account_settings(args, local),
        max_retries=None if local else args.max_retries,
        weights_in_image=args.weights_in_image,
        image_uri=image_uri(args, local),
        channels=_channels(args, ctx, local),
        hyperparameters=hyperparameters,
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
        watching=watching,
        **kwargs,
    )


def _rule_parameters(items: list[str] | None) -> dict[str, dict[str, str]]:
    """``["overfit.patience=2"]`` -> ``{"overfit": {"patience": "2"}}``."""
    rule_parameters: dict[str, dict[str, str]] = {}
    for item in items or []:
        target, sep, value = item.partition("=")
        rule, dot, key = target.partition(".")
        if not sep or not dot:
            raise ConfigurationError(f"--rule-param {item!r} is not RULE.KEY=VALUE")
        rule_parameters.setdefault(rule, {})[key] = value
    return rule_parameters


def _debugger_settings(args):
    from classifier_client.debugger import DebuggerSettings, parse_rule_names

    rule_parameters = _rule_parameters(args.rule_param)
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


def _train_locally(args) -> int:
    from classifier_client import training

    hyperparameters = _hyperparameters(args, {"debug": "true"} if args.debug_local else None)
    debugger = _debugger_settings(args)
    ctx = aws_context_for(args, local=True)
    settings = _training_settings(args, ctx, True, hyperparameters, debugger)
    if args.wait:
        # --wait is SageMaker's; train_locally refuses the rest, and with it all are named together.
        training.check_local_training(settings, wait=True)
    # The SDK streams the containers' logs to stdout; keep stdout for the result.
    with contextlib.redirect_stdout(sys.stderr):
        result = training.train_locally(ctx, settings, args.local_dir)
    print(f"local job folder: {result.job_dir}", file=sys.stderr)
    print_json({"model_data": str(result.model_archive), "output_data": str(result.output_archive)})
    return 0


def cmd_train(args) -> int:
    from classifier_client import training

    if args.local:
        return _train_locally(args)
    hyperparameters = _hyperparameters(args)
    debugger = _debugger_settings(args)
    ctx = aws_context_for(args)
    settings = _training_settings(args, ctx, False, hyperparameters, debugger)
    job = training.start_training_job(ctx, settings, wait=args.wait)
    print_json(training.describe_training_job(ctx, job.training_job_name))
    return 0


def _search_settings(args):
    """The ranges, strategy, early stopping and number of jobs of ``args``, checked as they are
    made: offline, before anything else."""
    from classifier_client.ranges import parse_range
    from classifier_client.strategies import strategy_named
    from classifier_client.tuning import SearchSettings

    strategy = strategy_named(args.strategy)
    ranges = {} if args.only_ranges else strategy.default_ranges()
    ranges.update(parse_range(text) for text in args.range or [])
    return SearchSettings(
        ranges=ranges,
        strategy=strategy,
        early_stopping=None if args.early_stopping is None else args.early_stopping == "Auto",
        max_jobs=args.max_jobs,
        max_parallel_jobs=args.max_parallel_jobs,
    )


def _tuning_settings(args, ctx, local: bool, search, hyperparameters):
    from classifier_client.tuning import TuningSettings

    settings = TuningSettings(
        training=_training_settings(args, ctx, local, hyperparameters),
        search=search,
        warm_start_parents=tuple(args.warm_start_from or ()),
        warm_start_type=args.warm_start_type,
    )
    print("tuning ranges:", file=sys.stderr)
    for name, spec in sorted(search.ranges.items()):
        print(f"  {name} = {spec.describe()}", file=sys.stderr)
    return settings


def _tune_locally(args, search, hyperparameters) -> int:
    from classifier_client.local_tuning import run_local_tuning
    from classifier_client.tuning import check_local_tuning

    # Local channels and the local image: nothing here talks to AWS, so no context.
    settings = _tuning_settings(args, None, True, search, hyperparameters)
    if args.wait:
        # --wait is SageMaker's; run_local_tuning refuses the rest, and with it all are named together.
        check_local_tuning(settings.training, args.tuning_job_name, wait=True)
    result = run_local_tuning(
        settings,
        args.tuning_job_name,
        args.local_dir,
        progress=lambda line: print(line, file=sys.stderr, flush=True),
    )
    print(f"report: {result.report}", file=sys.stderr)
    print_json(
        {
            "tuning_job": result.name,
            "folder": str(result.folder),
            "finished": result.finished,
            "report": str(result.report),
            "summary": str(result.summary),
            "next": f"sm-classifier best {result.name} --local --output best.json"
            if result.finished
            else "interrupted: re-run the same command to continue",
        }
    )
    return 0 if result.finished else 130


def cmd_tune(args) -> int:
    from classifier_client.tuning import start_tuning_job

    # Offline and first: both tuners refuse what the strategy refuses, with the same message.
    search = _search_settings(args)
    hyperparameters = _hyperparameters(args)
    if args.local:
        return _tune_locally(args, search, hyperparameters)
    ctx = aws_context_for(args)
    settings = _tuning_settings(args, ctx, False, search, hyperparameters)
    name = start_tuning_job(ctx, settings, wait=args.wait)
    print_json({"tuning_job": name, "next": f"sm-classifier best {name} --output best.json"})
    return 0


def cmd_best(args) -> int:
    from classifier_client.tuning import best_training_job, format_best_table

    if args.local:
        from classifier_client.local_tuning import best_local

        best = best_local(args.local_dir, args.tuning_job)
    else:
        best = best_training_job(aws_context_for(args), args.tuning_job)
    print(format_best_table(best))
    print()
    print_json(best)
    if args.output:
        Path(args.output).write_text(json.dumps(best, indent=2) + "\n")
        print(
            f"wrote {args.output} (use: train --hyperparameters-file {args.output})",
            file=sys.stderr,
        )
    return 0
