"""SageMaker's search settings as Optuna objects: ranges as distributions, and the sampler and
pruner classes of our own that ``classifier_client.strategies`` picks per strategy.

This package needs Optuna (the client environment pins it); the CLI imports it only for
``tune --local`` and ``best --local``. The mapping of each strategy is in
``classifier_client.strategies``; docs/local-tuning.md explains the differences.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping

from optuna.pruners import BasePruner
from optuna.samplers import GridSampler


def distributions(ranges: Mapping) -> dict:
    """``classifier_client.ranges.Range`` objects -> Optuna distributions, name by name."""
    from optuna.distributions import (
        BaseDistribution,
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    result: dict[str, BaseDistribution] = {}
    for name, spec in sorted(ranges.items()):
        log = spec.scaling == "Logarithmic"
        if spec.kind == "continuous":
            low, high = spec.bounds
            result[name] = FloatDistribution(low, high, log=log)
        elif spec.kind == "integer":
            low, high = spec.bounds
            result[name] = IntDistribution(int(low), int(high), log=log)
        else:
            result[name] = CategoricalDistribution(list(spec.values))
    return result


class CappedGridSampler(GridSampler):
    """Optuna's grid, without its end-of-grid ``Study.stop()``: that works only inside
    ``Study.optimize`` and the tuner runs its ``max_jobs`` (with Grid, the number of
    combinations: ``strategies.Grid.max_jobs_for``) trials itself."""

    def after_trial(self, study, trial, state, values) -> None:
        return None


# --- SageMaker's early-stopping rule --------------------------------------------------------


def running_average(intermediate: Mapping[int, float], step: int) -> float | None:
    """The mean of a job's objective over its epochs up to ``step``; None if it has not
    reached ``step`` yet (it has nothing to compare at that epoch)."""
    if step not in intermediate:
        return None
    values = [value for epoch, value in intermediate.items() if epoch <= step]
    return sum(values) / len(values)


def should_stop(value: float, previous_averages: Iterable[float | None], maximize: bool = True) -> bool:
    """SageMaker's rule: stop when the objective at epoch N is worse than the median of the
    earlier jobs' running averages up to epoch N. No earlier job at N: nothing to compare."""
    averages = [a for a in previous_averages if a is not None and math.isfinite(a)]
    if not averages:
        return False
    if not math.isfinite(value):
        return True  # a diverged job (nan/inf objective) is worse than any finite median
    median = statistics.median(averages)
    return value < median if maximize else value > median


class SageMakerMedianPruner(BasePruner):
    """Early stopping ``Auto`` as SageMaker documents it, fed one value per epoch.

    "Earlier jobs" are the trials numbered before this one (running, complete or stopped),
    so two trials started together compare the same way in every run.
    """

    def prune(self, study, trial) -> bool:
        from optuna.study import StudyDirection
        from optuna.trial import TrialState

        step = trial.last_step
        if step is None:
            return False
        earlier = study.get_trials(
            deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
        )
        averages = [
            running_average(other.intermediate_values, step)
            for other in earlier
            if other.number < trial.number
        ]
        maximize = study.direction == StudyDirection.MAXIMIZE
        return should_stop(trial.intermediate_values[step], averages, maximize)
