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
  ranges only.
"""

from __future__ import annotations

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
