"""Real (tiny) trainings through classifier.training.program: the rules must tell healthy from broken."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from torch import nn

from classifier.debugging.rules import run_rules

from .conftest import balanced

pytestmark = pytest.mark.slow


def _fired(run) -> dict:
    return {r["rule"]: r for r in run.report["rules"] if r["fired"]}


def test_healthy_run_reports_no_issues(train_job):
    run = train_job(train=balanced(16), test=balanced(3), hyperparameters={"epochs": "3"})
    assert run.exit_code == 0, run.failure
    report = run.report
    assert report["rules"], "the rules did not run"
    assert run.fired() == set(), (_fired(run), report["history"])
    statuses = {r["rule"]: r["status"] for r in report["rules"]}
    assert statuses["exploding_tensor"] == "NoIssuesFound"
    assert statuses["vanishing_gradient"] == "NoIssuesFound"
    assert statuses["poor_weight_initialization"] == "NoIssuesFound"
    assert report["test"]["confusion_matrix"]
    assert report["profiler"]["steps"]["count"] == 3 * 8
    assert (run.output_data / "report.html").stat().st_size > 10_000


def test_walkthrough_job_on_the_digits_raises_no_false_alarm(train_job, digits_dir):
    """The first local job of docs/sagemaker.md (digits from scratch, 3 epochs at 32 px): no rule fires.

    From scratch, every class is mostly mispredicted at first and, with little augmentation,
    the first validation loss can sit far above the training loss; neither is overfitting
    nor class imbalance.
    """
    hyperparameters = {"epochs": "3", "image_size": "32", "batch_size": "32", "augmentation": "standard"}
    run = train_job(hyperparameters={**hyperparameters, "seed": "1"}, data_from=digits_dir)
    assert run.exit_code == 0, run.failure
    history = run.report["history"]
    assert history[-1]["valid_accuracy"] > history[0]["valid_accuracy"], history
    assert run.fired() == set(), (_fired(run), history)


def test_frozen_all_zero_head_fires_vanishing_gradient(train_job, monkeypatch):
    from classifier.training import program as training

    build = training.build_model

    def frozen_zero_head(env, hp, num_classes):
        model = build(env, hp, num_classes)
        nn.init.zeros_(model.fc.weight)
        model.fc.weight.requires_grad = False
        return model

    monkeypatch.setattr(training, "build_model", frozen_zero_head)
    run = train_job(hyperparameters={"epochs": "1"})
    assert run.exit_code == 0, run.failure
    fired = _fired(run)
    assert fired["vanishing_gradient"]["fired_at_step"] == 0, run.report["rules"]


def test_learning_rate_far_too_high_fires_exploding_tensor(train_job):
    run = train_job(
        train=balanced(6),
        hyperparameters={"learning_rate": "10", "optimizer": "sgd", "epochs": "3"},
    )
    # The loss stays finite while weights and gradients blow up: the job ends normally and the
    # rule is what tells the user.
    assert run.exit_code == 0, run.failure[:300]
    fired = _fired(run)
    assert "exploding_tensor" in fired, run.report["rules"]
    assert "nan" in fired["exploding_tensor"]["message"] or "inf" in fired["exploding_tensor"]["message"]
    assert fired["exploding_tensor"]["fired_at_step"] > 0


def test_nan_training_loss_fails_the_job_and_the_report_names_the_rule(train_job, monkeypatch):
    from classifier.training import program as training

    build = training.build_model

    def poisoned(env, hp, num_classes):
        """The head starts returning NaN from the 3rd training forward: a diverged run."""
        model = build(env, hp, num_classes)
        calls = {"train": 0}

        def hook(module, inputs, output):
            if module.training:
                calls["train"] += 1
                if calls["train"] >= 3:
                    return output * float("nan")
            return output

        model.fc.register_forward_hook(hook)
        return model

    monkeypatch.setattr(training, "build_model", poisoned)
    run = train_job(hyperparameters={"epochs": "2"})
    assert run.exit_code != 0
    assert run.failure.startswith("TrainingDiverged: training loss became nan"), run.failure[:200]
    fired = _fired(run)
    assert fired["exploding_tensor"]["fired_at_step"] == 2, fired
    assert "CrossEntropyLoss_output_0" in fired["exploding_tensor"]["message"]
    assert "exploding_tensor" in (run.output_data / "report.html").read_text()


def test_zero_initialisation_fires_poor_weight_initialization(train_job, monkeypatch):
    from classifier.training import program as training

    build = training.build_model

    def zero_init(env, hp, num_classes):
        model = build(env, hp, num_classes)
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                nn.init.zeros_(module.weight)
        return model

    monkeypatch.setattr(training, "build_model", zero_init)
    run = train_job(hyperparameters={"epochs": "1"})
    fired = _fired(run)
    assert "poor_weight_initialization" in fired, run.report["rules"]
    assert fired["poor_weight_initialization"]["fired_at_step"] == 0


def test_tiny_train_set_with_many_epochs_fires_overfit(train_job):
    # Pure-noise images: the network can only memorise the 8 training images.
    run = train_job(
        train=balanced(2),
        valid=balanced(4),
        signal=False,
        hyperparameters={"epochs": "12", "learning_rate": "0.003"},
    )
    assert run.exit_code == 0, run.failure
    history = run.report["history"]
    assert history[-1]["train_loss"] < history[-1]["valid_loss"]
    assert "overfit" in _fired(run), (run.report["rules"], history)


def test_imbalanced_train_set_fires_class_imbalance(train_job, tmp_path):
    run = train_job(
        train={"a_red": 40, "b_green": 2, "c_blue": 2, "d_yellow": 2},
        hyperparameters={"epochs": "1"},
    )
    assert run.exit_code == 0, run.failure
    # The job ran the rules with AWS's default samples=500 (more than this job saw) ...
    statuses = {r["rule"]: r["status"] for r in run.report["rules"]}
    assert statuses["class_imbalance"] == "NoIssuesFound"
    # ... so judge the same tensors with fewer samples, through the API and the command.
    (result,) = run_rules(str(run.tensors), ["class_imbalance"], class_imbalance={"samples": 40})
    assert result.fired, result
    assert result.evidence["check"] == "imbalance"
    assert result.evidence["counts"]["0"] >= 10 * result.evidence["counts"]["1"]
    out = tmp_path / "rules.json"
    command = subprocess.run(
        [
            sys.executable,
            "-m",
            "classifier.debugging.rules",
            str(run.tensors),
            "--rule",
            "class_imbalance",
            "--param",
            "class_imbalance.samples=40",
            "--json",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert command.returncode == 1, command.stderr[-2000:]
    assert command.stdout.startswith("class_imbalance: IssuesFound at step"), command.stdout
    assert json.loads(out.read_text())[0]["fired"] is True
