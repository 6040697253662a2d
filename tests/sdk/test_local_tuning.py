"""``tune --local`` without Docker: a stubbed trial runner that prints real metric lines.

The stub writes what the training program writes (``format_metrics_line``) and goes through
the same regexes; it stops, like the image, with exit code 143 when asked to. Covered: the
tuners' shared refusals, grid, pruning, the report, resume after a Ctrl-C and warm start. The
rules they apply are in test_tuning_rules.py.
"""

from __future__ import annotations

import json
import signal
import threading
from dataclasses import dataclass, field

import optuna
import pytest
from optuna.trial import TrialState

from classifier.constants import EXIT_SIGTERM
from classifier.metric_definitions import format_metrics_line
from classifier_client.config import ConfigurationError
from classifier_client.local_tuning import best_local, run_local_tuning
from classifier_client.local_tuning.logs import LogMetrics
from classifier_client.local_tuning.runner import TrialOutcome, per_trial_cpus
from classifier_client.local_tuning.study import own_trials
from classifier_client.strategies import strategy_named
from classifier_client.training import TrainingSettings
from classifier_client.tuning import Range, SearchSettings, TuningSettings, format_best_table

SEARCH_FIELDS = ("ranges", "strategy", "early_stopping", "max_jobs", "max_parallel_jobs")


def settings_for(tmp_path, **overrides) -> TuningSettings:
    data = tmp_path / "data"
    for split in ("train", "valid"):
        (data / split).mkdir(parents=True, exist_ok=True)
    hyperparameters = overrides.pop("hyperparameters", {"epochs": "3", "image_size": "16"})
    training = TrainingSettings(
        image_uri="img:test",
        channels={"train": str(data / "train"), "valid": str(data / "valid")},
        hyperparameters=hyperparameters,
    )
    search = {
        "ranges": {
            "learning_rate": Range("continuous", 1e-4, 1e-1, scaling="Logarithmic"),
            "optimizer": Range("categorical", values=("sgd", "adam")),
        },
        "max_jobs": 4,
        "max_parallel_jobs": 2,
        **{key: overrides.pop(key) for key in SEARCH_FIELDS if key in overrides},
    }
    search["strategy"] = strategy_named(search.get("strategy", "Bayesian"))
    return TuningSettings(training=training, search=SearchSettings(**search), **overrides)


def accuracy_curve(hyperparameters: dict[str, str], epochs: int) -> list[float]:
    """A made-up but deterministic learning curve: adam learns, large lr learns faster."""
    rate = float(hyperparameters.get("learning_rate", "0.01"))
    base = 0.5 if hyperparameters.get("optimizer") == "adam" else 0.2
    return [min(0.99, base + epoch * min(rate, 0.1)) for epoch in range(1, epochs + 1)]


@dataclass
class StubRunner:
    """run(job, on_objective) as DockerTrialRunner, printing metric lines instead of training."""

    curve: object = accuracy_curve
    interrupt_on_job: str | None = None
    jobs: list[str] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)
    lines: list[str] | None = None
    stopped_by_the_tuner: bool = False

    def run(self, job, on_objective) -> TrialOutcome:
        self.jobs.append(job.name)
        assert all(isinstance(v, str) for v in job.hyperparameters.values())
        metrics, epochs = LogMetrics(), int(job.hyperparameters["epochs"])
        lines = self.lines or [
            format_metrics_line({"epoch": epoch}, train_loss=1.0, valid_accuracy=value)
            for epoch, value in enumerate(self.curve(job.hyperparameters, epochs), start=1)
        ]
        if job.name == self.interrupt_on_job:
            for line in lines:  # every epoch done, then the Ctrl-C during the test pass
                if (parsed := metrics.feed(line)) is not None:
                    on_objective(*parsed)
            # A terminal's Ctrl-C while this job runs: SIGINT wakes the main thread, which waits
            # on the trials (_thread.interrupt_main would only flag it, so the tuner heard of it
            # after this wait had timed out).
            signal.pthread_kill(threading.main_thread().ident, signal.SIGINT)
            self.stopped_by_the_tuner = self.stopped.wait(10)
            return TrialOutcome(EXIT_SIGTERM, True, metrics, 0.1, "TrainingInterrupted: SIGTERM")
        for line in lines:
            parsed = metrics.feed(line)
            if parsed and on_objective(*parsed):
                return TrialOutcome(EXIT_SIGTERM, True, metrics, 0.1, "TrainingInterrupted: SIGTERM")
        return TrialOutcome(0, False, metrics, 0.1)

    def stop_all(self):
        self.stopped.set()
        return []


def run(tmp_path, settings, runner, name="job", seed=0, lines=None):
    return run_local_tuning(
        settings,
        name,
        tmp_path / "runs",
        runner=runner,
        progress=(lines if lines is not None else []).append,
        seed=seed,
    )


def load(tmp_path, name="job"):
    folder = tmp_path / "runs" / name
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'study.db'}")


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--strategy", "Grid"], "Grid takes categorical ranges only"),
        (["--strategy", "Hyperband", "--early-stopping", "Auto"], "Hyperband stops unpromising jobs"),
        (["--strategy", "Hyperband", "--range", "epochs=integer:1:3"], "epochs cannot be tuned"),
    ],
)
def test_local_and_cloud_tuners_refuse_the_same_settings(cli, capsys, tmp_path, extra, message):
    """The same words from both, before any AWS call or container."""
    errors = []
    for local in ([], ["--local", "--data", tmp_path]):
        args = ["tune", "--range", "learning_rate=continuous:0.001:0.1", *extra, *local]
        assert cli(*args) == 2
        errors.append(capsys.readouterr().err.strip())
    assert message in errors[0]
    assert errors[0] == errors[1]


GRID_RANGES = {
    "optimizer": Range("categorical", values=("sgd", "adam")),
    "learning_rate": Range("categorical", values=("0.01", "0.001")),
}


def test_grid_runs_each_combination_once(tmp_path):
    settings = settings_for(tmp_path, strategy="Grid", ranges=GRID_RANGES, max_jobs=None)
    assert settings.search.max_jobs == 4  # as SageMaker computes MaxNumberOfTrainingJobs for Grid
    runner = StubRunner()
    result = run(tmp_path, settings, runner)
    combos = {tuple(sorted(t.params.items())) for t in load(tmp_path).trials}
    assert len(runner.jobs) == 4 and len(combos) == 4
    # Every combination ran, so the job is complete (with max_jobs 12 it stayed InProgress).
    assert json.loads(result.summary.read_text())["tuning_job_status"] == "Completed"


def test_grid_with_max_jobs_other_than_its_combinations_is_refused(tmp_path):
    with pytest.raises(ConfigurationError, match="4 combinations .* not --max-jobs 12"):
        settings_for(tmp_path, strategy="Grid", ranges=GRID_RANGES, max_jobs=12, early_stopping=False)


def test_local_and_cloud_tuners_give_grid_the_same_number_of_jobs(cli, capsys, tmp_path):
    """Grid's default ranges make 12 combinations; --max-jobs 8 is refused by both, before any
    AWS call or container, with the same words."""
    errors = []
    for local in ([], ["--local", "--data", tmp_path]):
        assert cli("tune", "--strategy", "Grid", "--max-jobs", "8", *local) == 2
        errors.append(capsys.readouterr().err.strip())
    assert "12 combinations" in errors[0] and "--max-jobs 8" in errors[0]
    assert errors[0] == errors[1]


def test_cores_are_divided_among_the_parallel_trials():
    assert per_trial_cpus(2, cores=2) == 1
    assert per_trial_cpus(3, cores=16) == 5
    assert per_trial_cpus(4, cores=2) == 1


# --- a whole job: progress, pruning, best --------------------------------------------------------


def test_a_job_runs_max_jobs_trials_prunes_and_reports_the_best(tmp_path):
    settings = settings_for(tmp_path, max_jobs=6, strategy="Random")
    lines: list[str] = []
    result = run(tmp_path, settings, StubRunner(), lines=lines)
    study = load(tmp_path)
    states = [t.state for t in study.trials]
    assert result.finished and len(states) == 6
    assert TrialState.PRUNED in states and TrialState.COMPLETE in states
    assert sum("started" in line for line in lines) == 6
    assert any("stopped (pruned)" in line for line in lines)
    assert all("best so far" in line for line in lines if "completed" in line)
    best = best_local(tmp_path / "runs", "job")
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert best["objective"]["value"] == max(t.value for t in complete)
    assert best["tuning_job_status"] == "Completed"
    assert best["hyperparameters"]["image_size"] == "16"  # the static ones too, for train
    assert set(best["tuned_hyperparameters"]) == {"learning_rate", "optimizer"}
    assert "(* tuned by this job)" in format_best_table(best)
    summary = json.loads(result.summary.read_text())
    assert summary["best"] == best and len(summary["trials"]) == 6
    assert "plotly" in result.report.read_text()


def test_a_log_without_an_objective_fails_the_trial_loudly(tmp_path):
    lines: list[str] = []
    runner = StubRunner(lines=["epoch=1 train_loss=0.5\n", "done\n"])
    run(tmp_path, settings_for(tmp_path, max_jobs=1, max_parallel_jobs=1), runner, lines=lines)
    trial = load(tmp_path).trials[0]
    assert trial.state == TrialState.FAIL
    assert "regex matches" in trial.user_attrs["failure_reason"]
    assert any("FAILED" in line for line in lines)
    with pytest.raises(ConfigurationError, match="no completed trial"):
        best_local(tmp_path / "runs", "job")


def test_a_cli_bests_table_and_json_work_on_a_local_job(tmp_path, cli, capsys, monkeypatch):
    run(tmp_path, settings_for(tmp_path, max_jobs=2), StubRunner())
    out = tmp_path / "best.json"
    assert cli("best", "job", "--local", "--local-dir", tmp_path / "runs", "--output", out) == 0
    printed = capsys.readouterr().out
    assert "best training job" in printed and "valid_accuracy" in printed
    from classifier_client.training import load_hyperparameters_file

    assert load_hyperparameters_file(out)["epochs"] == "3"


# --- resume ------------------------------------------------------------------------------------


@pytest.fixture
def ctrl_c_reaches_python():
    """SIGINT is ignored in a test run started in the background (``cmd &`` without job
    control): give it Python's own handler, as an interactive tuner has."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("ctrl_c_reaches_python")
def test_ctrl_c_then_rerun_continues_with_no_trial_lost_or_repeated(tmp_path):
    settings = settings_for(tmp_path, max_jobs=5, early_stopping=False)
    first = StubRunner(interrupt_on_job="job-003")
    result = run(tmp_path, settings, first)
    assert not result.finished and first.stopped_by_the_tuner
    study = load(tmp_path)
    left = [t.user_attrs["training_job"] for t in own_trials(study, (TrialState.RUNNING,))]
    assert "job-003" in left
    finished_first = [t.user_attrs["training_job"] for t in own_trials(study, (TrialState.COMPLETE,))]

    second = StubRunner()
    assert run(tmp_path, settings, second).finished
    study = load(tmp_path)
    names = sorted(t.user_attrs["training_job"] for t in study.trials)
    assert names == [f"job-{n:03d}" for n in range(1, 6)]
    assert all(t.state == TrialState.COMPLETE for t in study.trials)
    assert not set(second.jobs) & set(finished_first)  # nothing repeated
    assert set(left) <= set(second.jobs)  # the interrupted ones continued under their names
    assert run(tmp_path, settings, third := StubRunner()).finished and third.jobs == []


@pytest.mark.usefixtures("ctrl_c_reaches_python")
def test_a_trial_interrupted_after_its_last_epoch_keeps_its_objective(tmp_path):
    settings = settings_for(tmp_path, max_jobs=1, max_parallel_jobs=1, early_stopping=False)
    interrupted = StubRunner(interrupt_on_job="job-001")
    assert not run(tmp_path, settings, interrupted).finished and interrupted.stopped_by_the_tuner
    reported = load(tmp_path).trials[0].intermediate_values
    # The resumed job has no epoch left: it prints no objective line and ends well.
    resumed = StubRunner(lines=["resumed from checkpoint: epoch=3 of 3\n"])
    assert run(tmp_path, settings, resumed).finished
    trial = load(tmp_path).trials[0]
    assert trial.state == TrialState.COMPLETE and trial.value == reported[3]


def test_rerunning_with_other_settings_is_refused(tmp_path):
    run(tmp_path, settings_for(tmp_path, max_jobs=1, max_parallel_jobs=1), StubRunner())
    other = settings_for(tmp_path, max_jobs=1, max_parallel_jobs=1, strategy="Random")
    with pytest.raises(ConfigurationError, match="other strategy"):
        run(tmp_path, other, StubRunner())


# --- warm start --------------------------------------------------------------------------------


def test_identical_warm_start_adds_the_parents_trials_as_prior_knowledge(tmp_path):
    run(tmp_path, settings_for(tmp_path, max_jobs=3), StubRunner(), name="parent")
    child_settings = settings_for(tmp_path, max_jobs=2, warm_start_parents=("parent",))
    runner = StubRunner()
    lines: list[str] = []
    run(tmp_path, child_settings, runner, name="child", lines=lines)
    child = load(tmp_path, "child")
    priors = [t for t in child.trials if "warm_start_from" in t.user_attrs]
    parent = load(tmp_path, "parent")
    finished = [t for t in parent.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert len(priors) == len(finished) and len(runner.jobs) == 2
    assert len(own_trials(child)) == 2  # the budget is the child's own
    assert {t.params["optimizer"] for t in priors} == {t.params["optimizer"] for t in finished}
    assert best_local(tmp_path / "runs", "child")["training_job"].startswith("child-")
    assert any("warm start: " in line for line in lines)


def test_identical_warm_start_refuses_other_data_and_leaves_no_study(tmp_path):
    run(tmp_path, settings_for(tmp_path, max_jobs=1, max_parallel_jobs=1), StubRunner(), name="parent")
    changed = settings_for(
        tmp_path,
        max_jobs=1,
        max_parallel_jobs=1,
        warm_start_parents=("parent",),
        hyperparameters={"epochs": "3", "image_size": "32"},
    )
    with pytest.raises(ConfigurationError, match="use --warm-start-type transfer"):
        run(tmp_path, changed, StubRunner(), name="child")
    changed.warm_start_type = "transfer"
    assert run(tmp_path, changed, StubRunner(), name="child").finished


def test_transfer_warm_start_leaves_out_trials_outside_the_new_ranges(tmp_path):
    run(tmp_path, settings_for(tmp_path, max_jobs=4), StubRunner(), name="parent")
    ranges = {"optimizer": Range("categorical", values=("adam",))}
    child = settings_for(
        tmp_path,
        max_jobs=1,
        max_parallel_jobs=1,
        ranges=ranges,
        hyperparameters={"epochs": "3", "image_size": "32", "learning_rate": "0.01"},
        warm_start_parents=("parent",),
        warm_start_type="transfer",
    )
    run(tmp_path, child, StubRunner(), name="child")
    priors = [t for t in load(tmp_path, "child").trials if "warm_start_from" in t.user_attrs]
    parent_adam = [
        t
        for t in load(tmp_path, "parent").trials
        if t.params["optimizer"] == "adam" and t.state != TrialState.FAIL
    ]
    assert len(priors) == len(parent_adam)
    assert all(set(t.params) == {"optimizer"} for t in priors)


@pytest.mark.parametrize(
    ("hyperparameters", "ranges", "moved"),
    [
        # static -> tunable: image_size was fixed at 16 in the parent
        (
            {"epochs": "3"},
            {
                "learning_rate": Range("continuous", 1e-4, 1e-1, scaling="Logarithmic"),
                "optimizer": Range("categorical", values=("sgd", "adam")),
                "image_size": Range("categorical", values=("16", "32")),
            },
            "image_size",
        ),
        # tunable -> static: learning_rate was tuned in the parent
        (
            {"epochs": "3", "image_size": "16", "learning_rate": "0.01"},
            {"optimizer": Range("categorical", values=("sgd", "adam"))},
            "learning_rate",
        ),
    ],
)
def test_identical_warm_start_lets_a_hyperparameter_move_between_static_and_tunable(
    tmp_path, hyperparameters, ranges, moved
):
    """AWS (IdenticalDataAndAlgorithm): "You can also change hyperparameters from tunable to
    static, and from static to tunable"."""
    run(tmp_path, settings_for(tmp_path, max_jobs=3), StubRunner(), name="parent")
    child = settings_for(
        tmp_path, max_jobs=1, max_parallel_jobs=1, hyperparameters=hyperparameters, ranges=ranges,
        warm_start_parents=("parent",),
    )  # fmt: skip
    assert run(tmp_path, child, StubRunner(), name="child").finished
    priors = [t for t in load(tmp_path, "child").trials if "warm_start_from" in t.user_attrs]
    finished = [t for t in load(tmp_path, "parent").trials if t.state != TrialState.FAIL]
    assert len(priors) == len(finished) > 0
    assert all(set(t.params) == set(ranges) for t in priors)
    if moved in ranges:  # the parent ran every trial at its static value
        assert {t.params[moved] for t in priors} == {"16"}


@pytest.mark.parametrize("warm_start_type", ["identical", "transfer"])
def test_warm_start_refuses_another_set_of_hyperparameters(tmp_path, warm_start_type):
    """AWS, both types: "the total number of static plus tunable hyperparameters must remain
    the same as it is in all parent jobs": a new range is refused, as is a dropped one."""
    run(tmp_path, settings_for(tmp_path, max_jobs=1, max_parallel_jobs=1), StubRunner(), name="parent")
    ranges = {
        "learning_rate": Range("continuous", 1e-4, 1e-1, scaling="Logarithmic"),
        "momentum": Range("continuous", 0.8, 0.99),
    }
    child = settings_for(
        tmp_path, max_jobs=1, max_parallel_jobs=1, ranges=ranges, warm_start_parents=("parent",),
        warm_start_type=warm_start_type,
    )  # fmt: skip
    with pytest.raises(ConfigurationError, match="momentum not in parent; optimizer of parent missing"):
        run(tmp_path, child, StubRunner(), name="child")
    assert not (tmp_path / "runs" / "child" / "jobs").exists()
