"""The rules' plumbing: names, string parameters, errors. Fast: no training."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

from classifier.debugger_contract import RULE_NAMES, custom_rule_source_path
from classifier.debugging.rules import __main__ as cli
from classifier.debugging.rules import run_rules
from classifier.debugging.rules.debugger_rules import RULES, ClassImbalance, LossNotDecreasing, rule_class


class _Trial:
    """Just enough of a trial for a constructor (smdebug's Rule keeps a reference)."""

    def __init__(self) -> None:
        import logging

        self.name, self.path = "t", "/nowhere"
        self.logger = logging.getLogger("fake-trial")


def test_rule_names_match_the_classes():
    assert tuple(RULES) == RULE_NAMES
    assert rule_class("PoorWeightInitialization") is rule_class("poor_weight_initialization")
    with pytest.raises(KeyError, match="unknown rule"):
        rule_class("dead_relu")


def test_aws_parameter_names_and_defaults():
    defaults = {
        name: {
            p.name: p.default
            for p in inspect.signature(cls.__init__).parameters.values()
            if p.default is not inspect.Parameter.empty and p.name not in ("action_str", "other_trials")
        }
        for name, cls in RULES.items()
    }
    assert defaults["loss_not_decreasing"] == {
        "collection_names": None,
        "tensor_regex": None,
        "use_losses_collection": True,
        "num_steps": 10,
        "diff_percent": 0.1,
        "increase_threshold_percent": 5,
        "mode": None,
    }
    assert defaults["vanishing_gradient"] == {"threshold": 1e-7}
    assert defaults["exploding_tensor"] == {
        "collection_names": None,
        "tensor_regex": None,
        "only_nan": False,
    }
    assert defaults["overfit"] == {
        "tensor_regex": None,
        "start_step": 0,
        "patience": 1,
        "ratio_threshold": 0.1,
    }
    assert defaults["overtraining"] == {
        "patience_train": 5,
        "patience_validation": 10,
        "delta": 0.01,
    }
    assert defaults["poor_weight_initialization"] == {
        "activation_inputs_regex": ".*relu_input",
        "threshold": 10.0,
        "distribution_range": 0.001,
        "patience": 5,
        "steps": 10,
    }
    assert defaults["class_imbalance"] == {
        "threshold_imbalance": 10,
        "threshold_misprediction": 0.7,
        "samples": 500,
        "argmax": True,
        "labels_regex": ".*labels",
        "predictions_regex": ".*predictions",
    }


def test_string_parameters_as_sagemaker_sends_them():
    rule = ClassImbalance(_Trial(), samples="40", argmax="False", threshold_imbalance="2.5")
    assert (rule.samples, rule.argmax, rule.threshold_imbalance) == (40, False, 2.5)
    loss = LossNotDecreasing(_Trial(), num_steps="3", mode="train")
    assert loss.num_steps == 3 and loss.mode.name == "TRAIN"
    with pytest.raises(ValueError, match="num_steps must be an integer"):
        LossNotDecreasing(_Trial(), num_steps="2.5")


def test_custom_rule_source_is_self_contained():
    source = Path(custom_rule_source_path())
    assert source.name == "debugger_rules.py" and source.is_file()
    imports = [
        line.split()[1] for line in source.read_text().splitlines() if line.startswith(("import ", "from "))
    ]
    assert {name.split(".")[0] for name in imports} <= {
        "__future__",
        "math",
        "re",
        "numpy",
        "smdebug",
    }


def test_missing_tensors_fail_fast(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        run_rules(str(tmp_path / "absent"))
    with pytest.raises(FileNotFoundError, match="no smdebug collections"):
        run_rules(str(tmp_path))


def test_command_exit_codes_for_bad_input(tmp_path, capsys):
    assert cli.main([str(tmp_path)]) == cli.EXIT_ERROR
    assert "no smdebug collections" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.main([str(tmp_path), "--param", "nonsense"])


def test_the_late_step_wait_run_rules_turns_off_is_the_one_smdebug_sleeps_on():
    """run_rules sets the private ``Trial._training_end_delay_refresh`` to 0; this fails when
    smdebug renames it or its refresh loop stops sleeping on it."""
    from smdebug.trials.trial import Trial

    source = inspect.getsource(Trial)
    assert "self._training_end_delay_refresh = int(" in source
    assert "time.sleep(self._training_end_delay_refresh)" in source


class _SavedTrial(_Trial):
    """A trial holding TRAIN ``labels`` and ``predictions`` tensors, one batch per step."""

    def __init__(self, batches: list[tuple[list[int], list[list[float]]]]) -> None:
        super().__init__()
        self.saved = {
            "labels": {step: np.array(labels) for step, (labels, _) in enumerate(batches)},
            "predictions": {step: np.array(scores) for step, (_, scores) in enumerate(batches)},
        }

    def collections(self):
        return {"labels": None, "predictions": None}

    def tensor_names(self, collection=None, regex=None, step=None):
        return [collection] if collection in self.saved else []

    def tensor(self, name):
        saved = self.saved[name]

        class _Tensor:
            def value(self, step):
                return saved[step]

        return _Tensor()

    def mode(self, step):
        from smdebug.core.modes import ModeKeys

        return ModeKeys.TRAIN


def _scores(predicted: list[int], classes: int = 4) -> list[list[float]]:
    return [[1.0 if c == p else 0.0 for c in range(classes)] for p in predicted]


def _fired_at(rule) -> list[int]:
    return [step for step in range(len(rule.base_trial.saved["labels"])) if rule.invoke_at_step(step)]


def test_class_imbalance_fires_on_label_counts_once_enough_samples_were_seen():
    labels = [0] * 11 + [1]  # 11 to 1 after the first step, over the 10x threshold
    rule = ClassImbalance(_SavedTrial([(labels, _scores(labels))] * 2), samples=12)
    assert _fired_at(rule) == [0, 1]
    # The evidence is the first firing's.
    assert rule.evidence["check"] == "imbalance" and rule.evidence["counts"] == {"0": 11, "1": 1}
    waiting = ClassImbalance(_SavedTrial([(labels, _scores(labels))]), samples=13)
    assert _fired_at(waiting) == [] and waiting.datapoints == 1


def test_class_imbalance_fires_on_one_mostly_mispredicted_class_of_a_model_that_is_right_otherwise():
    labels = [0, 1, 2, 3] * 3
    one_wrong = [0, 1, 2, 0] * 3  # class 3 always called 0; overall 1 in 4 wrong, under 1 - 0.7
    rule = ClassImbalance(_SavedTrial([(labels, _scores(one_wrong))]), samples=12)
    assert _fired_at(rule) == [0]
    assert rule.evidence["check"] == "misprediction"
    assert rule.evidence["misprediction_rates"] == {"0": 0.0, "1": 0.0, "2": 0.0, "3": 1.0}
    # Every class mostly wrong (a model trained from scratch): no single class to blame.
    all_wrong = [1, 2, 3, 0] * 3
    assert _fired_at(ClassImbalance(_SavedTrial([(labels, _scores(all_wrong))]), samples=12)) == []
