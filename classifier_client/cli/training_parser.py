"""``tune``, ``best`` and ``train``: their options and help."""

from __future__ import annotations

import argparse

from classifier_client import debugger, tuning
from classifier_client.cli.arguments import (
    LOCAL_RUNS_DIR,
    add_account,
    add_aws,
    add_channels,
    add_compute,
    add_hyperparameters,
    add_image,
    add_local,
    add_watching,
)
from classifier_client.cli.training_commands import cmd_best, cmd_train, cmd_tune
from classifier_client.local_tuning import DEFAULT_LOCAL_TUNING_JOB
from classifier_client.strategies import DEFAULT_STRATEGY, STRATEGIES


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
        help=f"training jobs in all (default {tuning.DEFAULT_MAX_JOBS}; Grid: the number of "
        "combinations of its categorical ranges, which is the only value SageMaker accepts)",
    )
    group.add_argument(
        "--max-parallel-jobs",
        type=int,
        help=f"at once (default {tuning.DEFAULT_MAX_PARALLEL_JOBS}, at most --max-jobs)",
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


def add_tune(sub) -> None:
    p = sub.add_parser(
        "tune",
        help="start a hyperparameter tuning job (SageMaker, or this machine with --local)",
        description=_tune_description(),
    )
    add_image(p)
    add_channels(p)
    add_hyperparameters(p)
    add_watching(p)
    _add_tuning_options(p)
    add_compute(p)
    add_account(p, training=True)
    add_aws(p, role=True)
    _add_local_tuning_options(p)
    p.set_defaults(func=cmd_tune)


def _add_local_tuning_options(p: argparse.ArgumentParser) -> None:
    group = p.add_argument_group("local tuning (--local)")
    add_local(group, "tune (Optuna, one training container per trial)")
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


def add_best(sub) -> None:
    p = sub.add_parser(
        "best",
        help="show the best training job of a tuning job, as a table and JSON",
        description="Print the best training job of TUNING_JOB: its objective value and its "
        "hyperparameters (tuned ones starred), then the same as JSON. --output writes the "
        "JSON for `train --hyperparameters-file`.",
    )
    p.add_argument("tuning_job")
    p.add_argument("--output", metavar="FILE", help="also write the JSON to FILE")
    p.add_argument("--local", action="store_true", help="TUNING_JOB is a local one (`tune --local`); no AWS")
    p.add_argument(
        "--local-dir",
        default=LOCAL_RUNS_DIR,
        help=f"--local: where local tuning jobs are kept (default: ./{LOCAL_RUNS_DIR})",
    )
    add_aws(p)
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
        f"{', '.join(debugger.RULE_NAMES)} (default: none; the job itself "
        "evaluates all of them at the end and logs the verdicts)",
    )
    group.add_argument("--rule-param", action="append", metavar="RULE.KEY=VALUE", help="a rule parameter")
    group.add_argument("--rule-instance-type", default=debugger.RULE_INSTANCE_TYPE, help="rule job instance")
    group.add_argument(
        "--rule-evaluator-image",
        metavar="URI",
        help="AWS's custom-rule evaluator image for the job's region (built in for us-west-2; "
        'see the developer guide, "Amazon SageMaker Debugger image URIs for custom rule '
        'evaluators"). Rule jobs need an account that still has SageMaker Debugger.',
    )
    group.add_argument("--no-debugger-hook", action="store_true", help="save no tensors (no DebugHookConfig)")
    group.add_argument(
        "--tensor-save-interval",
        type=int,
        default=debugger.TENSOR_SAVE_INTERVAL,
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
    add_local(group, "train in SDK local mode (Mode.LOCAL_CONTAINER)")
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


def add_train(sub) -> None:
    p = sub.add_parser(
        "train",
        help="run a training job with Debugger hook, rules and profiler",
        description=TRAIN_DESCRIPTION,
    )
    add_image(p)
    add_channels(p)
    add_hyperparameters(p)
    add_watching(p)
    add_compute(p)
    _add_debugger_options(p)
    _add_local_training_options(p)
    add_account(p, training=True)
    add_aws(p, role=True)
    p.set_defaults(func=cmd_train)
