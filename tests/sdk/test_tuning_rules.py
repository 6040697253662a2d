"""The local tuner's rules, without a tuner: SageMaker's median early-stopping rule against
hand-computed medians, each strategy's sampler and pruner, ranges as distributions, and the
objective read from metric lines."""

from __future__ import annotations

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState

from classifier.metric_definitions import format_metrics_line, format_resumed_line
from classifier_client.local_tuning import search
from classifier_client.local_tuning.logs import LogMetrics, MetricRegexError
from classifier_client.strategies import strategy_named
from classifier_client.tuning import Range

# --- the early-stopping rule -------------------------------------------------------------------


def test_running_average_is_the_mean_up_to_the_epoch_and_none_before_it():
    values = {1: 0.2, 2: 0.6, 3: 0.7}
    assert search.running_average(values, 2) == pytest.approx(0.4)
    assert search.running_average(values, 3) == pytest.approx(0.5)
    assert search.running_average({1: 0.9}, 2) is None


@pytest.mark.parametrize(
    ("value", "averages", "stop"),
    [
        (0.45, [0.4, 0.6], True),  # median 0.5
        (0.55, [0.4, 0.6], False),
        (0.5, [0.2, 0.5, 0.9], False),  # median 0.5: not worse
        (0.49, [0.2, 0.5, 0.9], True),
        (0.1, [None, None], False),  # no earlier job reached this epoch
        (float("nan"), [0.3], True),  # diverged
        (0.45, [0.2, float("nan"), 0.4, 0.6], False),  # median of 0.2, 0.4, 0.6 = 0.4
    ],
)
def test_should_stop_against_hand_computed_medians(value, averages, stop):
    assert search.should_stop(value, averages) is stop


def test_should_stop_when_minimising_stops_higher_values():
    assert search.should_stop(0.7, [0.4, 0.6], maximize=False)
    assert not search.should_stop(0.45, [0.4, 0.6], maximize=False)


def test_the_pruner_compares_with_the_running_averages_of_earlier_trials():
    study = optuna.create_study(direction="maximize", pruner=search.SageMakerMedianPruner())
    distributions = {"x": FloatDistribution(0, 1)}
    for curve in ({1: 0.2, 2: 0.6, 3: 0.7}, {1: 0.5, 2: 0.7}, {1: 0.9}):
        study.add_trial(
            optuna.trial.create_trial(
                state=TrialState.PRUNED,
                params={"x": 0.5},
                distributions=distributions,
                intermediate_values=curve,
            )
        )
    trial = study.ask(distributions)
    trial.report(0.5, 1)  # epoch 1: averages 0.2, 0.5, 0.9 -> median 0.5; 0.5 is not worse
    assert not trial.should_prune()
    trial.report(0.45, 2)  # epoch 2: averages 0.4 and 0.6 (the third job stopped at 1) -> 0.5
    assert trial.should_prune()
    later = study.ask(distributions)
    later.report(0.55, 2)
    assert not later.should_prune()


# --- strategies --------------------------------------------------------------------------------


def test_each_strategy_maps_to_its_sampler_and_pruner(tmp_path):
    ranges = {"optimizer": Range("categorical", values=("sgd", "adam"))}
    static = {"epochs": "7"}
    cases = {
        ("Bayesian", True): (optuna.samplers.TPESampler, search.SageMakerMedianPruner),
        ("Random", True): (optuna.samplers.RandomSampler, search.SageMakerMedianPruner),
        ("Random", False): (optuna.samplers.RandomSampler, optuna.pruners.NopPruner),
        ("Grid", False): (optuna.samplers.GridSampler, optuna.pruners.NopPruner),
        ("Hyperband", False): (optuna.samplers.RandomSampler, optuna.pruners.HyperbandPruner),
    }
    for (name, early), (sampler, pruner) in cases.items():
        strategy = strategy_named(name)
        assert isinstance(strategy.sampler(ranges, 6), sampler)
        assert isinstance(strategy.pruner(early, static), pruner)
    assert strategy_named("Hyperband").pruner(False, static)._max_resource == 7


def test_ranges_become_distributions_with_their_scaling():
    found = search.distributions(
        {
            "learning_rate": Range("continuous", 1e-4, 1e-1, scaling="Logarithmic"),
            "epochs": Range("integer", 2, 10),
            "optimizer": Range("categorical", values=("sgd", "adam")),
        }
    )
    assert found["learning_rate"].log and (found["learning_rate"].low, found["learning_rate"].high) == (
        1e-4,
        1e-1,
    )
    assert (found["epochs"].low, found["epochs"].high, found["epochs"].log) == (2, 10, False)
    assert found["optimizer"].choices == ("sgd", "adam")


# --- the objective from metric lines ---------------------------------------------------------


def test_a_resumed_job_counts_epochs_from_its_checkpoint():
    """The program's resume line is no metric; the next objective is epoch 3, where counting
    objective lines (SageMaker's way) would say 1."""
    metrics = LogMetrics()
    assert metrics.feed(format_resumed_line(2, 4)) is None
    assert metrics.metrics == {} and metrics.objective_by_epoch == {}
    line = format_metrics_line({"epoch": 3}, train_loss=0.4, valid_accuracy=0.9)
    assert metrics.feed(line) == (3, 0.9)
    assert metrics.objective_by_epoch == {3: 0.9}


def test_an_objective_line_the_regex_misses_is_an_error():
    with pytest.raises(MetricRegexError, match="does not match"):
        LogMetrics().feed("epoch=1 valid_accuracy=ninety")
