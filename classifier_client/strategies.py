"""SageMaker's tuning strategies, one class each behind one interface (as Optuna's samplers are).

A :class:`Strategy` knows what a tuning job request carries for it (``request``), the ranges it
searches unless told otherwise, the static hyperparameters it adds, how many training jobs it
runs (``max_jobs_for``), what it refuses (``check``), and the Optuna sampler and pruner the
local tuner runs it with. Both tuners take their rules from here, so they accept and refuse
the same settings with the same messages. :func:`strategy_named` gives one by its SageMaker
name. The rules come from the API reference:

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
  total number of distinct categorical combinations possible." (:meth:`Grid.max_jobs_for`).

Locally (docs/local-tuning.md explains the differences): Bayesian is ``TPESampler``
(multivariate, constant liar for parallel trials), Random ``RandomSampler``, Grid a
``GridSampler`` over the categorical values (every combination, once); early stopping ``Auto``
is SageMaker's median rule (``local_tuning.search.SageMakerMedianPruner``). Hyperband is
``RandomSampler`` + ``HyperbandPruner`` with the epoch as the resource and the static
``epochs`` as its maximum.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

from classifier_client.config import ConfigurationError
from classifier_client.ranges import Range

if TYPE_CHECKING:
    from optuna.pruners import BasePruner
    from optuna.samplers import BaseSampler

RESOURCE_HYPERPARAMETER = "epochs"
# Hyperband's MaxResource when the user fixes no epoch count: the training default.
DEFAULT_MAX_EPOCHS = "10"
# TPE's random start-up trials: a third of the budget, between 1 and TPE's own default of 10.
TPE_MAX_STARTUP_TRIALS = 10
HYPERBAND_REDUCTION_FACTOR = 3

# The ranges the seed notebooks searched, widened a little; override any with --range.
DEFAULT_RANGES: dict[str, Range] = {
    "learning_rate": Range("continuous", 1e-4, 1e-1, scaling="Logarithmic"),
    "batch_size": Range("categorical", values=("16", "32", "64", "128")),
    "optimizer": Range("categorical", values=("sgd", "adam", "adamw")),
    "epochs": Range("integer", 2, 10),
    "augmentation": Range("categorical", values=("light", "standard", "strong")),
}
# Grid runs every combination: categorical values only, 3 x 2 x 2 = 12 jobs.
GRID_DEFAULT_RANGES: dict[str, Range] = {
    "learning_rate": Range("categorical", values=("0.0003", "0.001", "0.003")),
    "batch_size": Range("categorical", values=("32", "64")),
    "optimizer": Range("categorical", values=("adam", "sgd")),
}


@dataclass(frozen=True)
class Strategy(ABC):
    """One SageMaker tuning strategy; ``ranges`` map names to :class:`~classifier_client.ranges.Range`."""

    name: ClassVar[str]
    early_stopping_by_default: ClassVar[bool] = True

    def default_ranges(self) -> dict[str, Range]:
        return dict(DEFAULT_RANGES)

    def request(self, early_stopping: bool) -> dict[str, str]:
        """HyperparameterTuner's arguments for HyperParameterTuningJobConfig's Strategy and
        TrainingJobEarlyStoppingType."""
        return {"strategy": self.name, "early_stopping_type": "Auto" if early_stopping else "Off"}

    def static_additions(self, static: Mapping[str, str]) -> dict[str, str]:
        """Static hyperparameters this strategy needs that the user did not give."""
        return {}

    def max_jobs_for(self, ranges: Mapping[str, Range], max_jobs: int | None, default: int) -> int:
        """MaxNumberOfTrainingJobs: ``max_jobs``, or ``default`` when None."""
        return default if max_jobs is None else max_jobs

    def problems(self, ranges: Mapping[str, Range], early_stopping: bool) -> list[str]:
        """What this strategy refuses in these settings, each with what to change."""
        return []

    def check(self, ranges: Mapping[str, Range], early_stopping: bool) -> None:
        """Every problem of these settings at once."""
        problems = self.problems(ranges, early_stopping)
        if problems:
            raise ConfigurationError(f"--strategy {self.name}: " + "; ".join(problems))

    @abstractmethod
    def sampler(self, ranges: Mapping[str, Range], max_jobs: int, seed: int | None = None) -> BaseSampler:
        """The local tuner's Optuna sampler."""

    def pruner(self, early_stopping: bool, static: Mapping[str, str]) -> BasePruner:
        """The local tuner's Optuna pruner; ``static`` holds the static hyperparameters."""
        import optuna

        from classifier_client.local_tuning.search import SageMakerMedianPruner

        return SageMakerMedianPruner() if early_stopping else optuna.pruners.NopPruner()


class Bayesian(Strategy):
    name = "Bayesian"

    def sampler(self, ranges: Mapping[str, Range], max_jobs: int, seed: int | None = None) -> BaseSampler:
        import optuna

        startup = max(1, min(TPE_MAX_STARTUP_TRIALS, max_jobs // 3))
        return optuna.samplers.TPESampler(
            n_startup_trials=startup, multivariate=True, constant_liar=True, seed=seed
        )


class Random(Strategy):
    name = "Random"

    def sampler(self, ranges: Mapping[str, Range], max_jobs: int, seed: int | None = None) -> BaseSampler:
        import optuna

        return optuna.samplers.RandomSampler(seed=seed)


class Hyperband(Strategy):
    """Random search with Hyperband's early stopping; the epoch count is its resource."""

    name = "Hyperband"
    early_stopping_by_default = False

    def sampler(self, ranges: Mapping[str, Range], max_jobs: int, seed: int | None = None) -> BaseSampler:
        import optuna

        return optuna.samplers.RandomSampler(seed=seed)

    def default_ranges(self) -> dict[str, Range]:
        ranges = super().default_ranges()
        del ranges[RESOURCE_HYPERPARAMETER]  # static, its maximum from --hp epochs
        return ranges

    def static_additions(self, static: Mapping[str, str]) -> dict[str, str]:
        if RESOURCE_HYPERPARAMETER not in static:
            return {RESOURCE_HYPERPARAMETER: DEFAULT_MAX_EPOCHS}
        return {}

    def problems(self, ranges: Mapping[str, Range], early_stopping: bool) -> list[str]:
        problems = []
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
        return problems

    def pruner(self, early_stopping: bool, static: Mapping[str, str]) -> BasePruner:
        import optuna

        return optuna.pruners.HyperbandPruner(
            min_resource=1,
            max_resource=int(static[RESOURCE_HYPERPARAMETER]),
            reduction_factor=HYPERBAND_REDUCTION_FACTOR,
        )


class Grid(Strategy):
    """Every combination of the categorical values, once each."""

    name = "Grid"

    def default_ranges(self) -> dict[str, Range]:
        return dict(GRID_DEFAULT_RANGES)

    def max_jobs_for(self, ranges: Mapping[str, Range], max_jobs: int | None, default: int) -> int:
        """The number of combinations: ``max_jobs`` None or equal to it; anything else is refused."""
        combinations = math.prod(len(spec.values) for spec in ranges.values())
        if max_jobs is not None and max_jobs != combinations:
            raise ConfigurationError(
                f"--strategy Grid runs each of the {combinations} combinations of the categorical "
                f"ranges once, so its number of training jobs is {combinations}, not --max-jobs "
                f"{max_jobs} (SageMaker requires MaxNumberOfTrainingJobs to equal the number of "
                f"combinations): drop --max-jobs or pass --max-jobs {combinations}"
            )
        return combinations

    def problems(self, ranges: Mapping[str, Range], early_stopping: bool) -> list[str]:
        return [
            f"Grid takes categorical ranges only, but {name} is {spec.kind}: give its "
            f"values, e.g. --range {name}=categorical:A,B,C"
            for name, spec in sorted(ranges.items())
            if spec.kind != "categorical"
        ]

    def sampler(self, ranges: Mapping[str, Range], max_jobs: int, seed: int | None = None) -> BaseSampler:
        from classifier_client.local_tuning.search import CappedGridSampler

        space = {name: list(spec.values) for name, spec in sorted(ranges.items())}
        return CappedGridSampler(space, seed=seed)


_BY_NAME: dict[str, type[Strategy]] = {kind.name: kind for kind in (Bayesian, Random, Hyperband, Grid)}
STRATEGIES = tuple(_BY_NAME)
DEFAULT_STRATEGY = Bayesian.name


def strategy_named(name: str) -> Strategy:
    """The strategy SageMaker calls ``name``; any other name is refused."""
    kind = _BY_NAME.get(name)
    if kind is None:
        raise ConfigurationError(f"strategy {name!r}: use one of {', '.join(STRATEGIES)}")
    return kind()
