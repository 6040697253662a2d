"""What each SageMaker tuning strategy accepts, checked before any request is sent.

One place for these rules, so every tuner built on them (the SageMaker one, an offline
one) accepts and refuses the same settings with the same messages. The rules come from
the API reference:

- HyperParameterTuningJobConfig.TrainingJobEarlyStoppingType: "Because the Hyperband
  strategy has its own advanced internal early stopping mechanism,
  TrainingJobEarlyStoppingType must be OFF to use Hyperband."
- HyperbandStrategyConfig.MaxResource: "If a value for MaxResource is not provided, and
  Hyperband is selected as the hyperparameter tuning strategy, HyperbandTraining attempts
  to infer MaxResource from the following keys (if present) in StaticsHyperParameters:
  epochs ...". Our resource is the epoch count, so with Hyperband ``epochs`` is static.
- Grid search enumerates every combination of categorical values, so it takes categorical
  ranges only. Developer guide, "How Hyperparameter Tuning Works", Grid search: "You do not
  need to specify the MaxNumberOfTrainingJobs. The number of training jobs created by the
  tuning job is automatically calculated to be the total number of distinct categorical
  combinations possible. If specified, the value of MaxNumberOfTrainingJobs should equal the
  total number of distinct categorical combinations possible." (:func:`max_jobs_for`).
"""

from __future__ import annotations

import math

from classifier_client.config import ConfigurationError

STRATEGIES = ("Bayesian", "Random", "Hyperband", "Grid")
DEFAULT_STRATEGY = "Bayesian"
RESOURCE_HYPERPARAMETER = "epochs"
# Hyperband's MaxResource when the user fixes no epoch count: the training default.
DEFAULT_MAX_EPOCHS = "10"


def default_early_stopping(strategy: str) -> bool:
    """``Auto`` early stopping where SageMaker allows it (every strategy but Hyperband)."""
    return strategy != "Hyperband"


def static_additions(strategy: str, static: dict[str, str]) -> dict[str, str]:
    """Static hyperparameters a strategy needs that the user did not give."""
    if strategy == "Hyperband" and RESOURCE_HYPERPARAMETER not in static:
        return {RESOURCE_HYPERPARAMETER: DEFAULT_MAX_EPOCHS}
    return {}


def grid_combinations(ranges: dict) -> int:
    """How many training jobs a Grid search runs: the product of the categorical value counts."""
    return math.prod(len(spec.values) for spec in ranges.values())


def max_jobs_for(strategy: str, ranges: dict, max_jobs: int | None, default: int) -> int:
    """MaxNumberOfTrainingJobs: with Grid the number of combinations (``max_jobs`` None, or
    equal to it; anything else is refused), else ``max_jobs`` or ``default``."""
    if strategy != "Grid":
        return default if max_jobs is None else max_jobs
    combinations = grid_combinations(ranges)
    if max_jobs is not None and max_jobs != combinations:
        raise ConfigurationError(
            f"--strategy Grid runs each of the {combinations} combinations of the categorical "
            f"ranges once, so its number of training jobs is {combinations}, not --max-jobs "
            f"{max_jobs} (SageMaker requires MaxNumberOfTrainingJobs to equal the number of "
            f"combinations): drop --max-jobs or pass --max-jobs {combinations}"
        )
    return combinations


def check_strategy(strategy: str, ranges: dict, early_stopping: bool) -> None:
    """Every problem of these settings for ``strategy`` at once, each with what to change.

    ``ranges`` maps names to objects with a ``kind`` (``continuous``, ``integer`` or
    ``categorical``), such as ``classifier_client.tuning.Range``.
    """
    if strategy not in STRATEGIES:
        raise ConfigurationError(f"strategy {strategy!r}: use one of {', '.join(STRATEGIES)}")
    problems = []
    if strategy == "Hyperband":
        if early_stopping:
            problems.append(
                "Hyperband stops unpromising jobs itself and SageMaker requires early stopping "
                "Off with it: drop --early-stopping Auto (or use another strategy)"
            )
        if RESOURCE_HYPERPARAMETER in ranges:
            problems.append(
                "Hyperband's resource is the epoch count, so epochs cannot be tuned: remove "
                "--range epochs=... and fix the maximum with --hp epochs=N"
            )
    if strategy == "Grid":
        for name, spec in sorted(ranges.items()):
            if spec.kind != "categorical":
                problems.append(
                    f"Grid takes categorical ranges only, but {name} is {spec.kind}: give its "
                    f"values, e.g. --range {name}=categorical:A,B,C"
                )
    if problems:
        raise ConfigurationError(f"--strategy {strategy}: " + "; ".join(problems))
