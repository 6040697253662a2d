"""A local tuning job: an Optuna study in ``<local dir>/<tuning job>/study.db`` and its trials.

Each trial is one training job (``classifier_client.local_tuning.runner``) named
``<tuning job>-NNN`` with its /opt/ml tree under ``jobs/``. The study persists: a re-run of
the same command continues it. Trials that an interrupted run left RUNNING (their containers
were stopped with SIGTERM and checkpointed) are run again under the same trial and job name,
so they resume from their checkpoint: no trial is lost or repeated.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from classifier.hyperparameter_schema import as_text
from classifier.metric_definitions import OBJECTIVE_METRIC
from classifier_client.config import ConfigurationError
from classifier_client.local_tuning import search
from classifier_client.local_tuning.runner import TrialJob, TrialOutcome

STUDY_FILE = "study.db"
JOBS_DIR = "jobs"
# User attributes of the study and its trials.
SETTINGS_ATTR = "settings"
WARM_START_ATTR = "warm_start_from"
JOB_ATTR = "training_job"
STATUS_ATTR = "training_job_status"
FAILURE_ATTR = "failure_reason"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# While interrupted, how often to stop whatever is still running (a trial may start late).
STOP_POLL_SECONDS = 2.0


def storage_url(folder: Path) -> str:
    return f"sqlite:///{(folder / STUDY_FILE).resolve()}"


def job_settings(settings) -> dict[str, Any]:
    """What makes two runs the same tuning job (and what identical warm start compares)."""
    training, tuned = settings.training, settings.search
    return {
        "strategy": tuned.strategy.name,
        "early_stopping": tuned.early_stopping,
        "ranges": {name: spec.describe() for name, spec in sorted(tuned.ranges.items())},
        "static_hyperparameters": static_hyperparameters(settings),
        "channels": dict(sorted(training.channels.items())),
        "image": training.image_uri,
        "max_jobs": tuned.max_jobs,
    }


def static_hyperparameters(settings) -> dict[str, str]:
    static = dict(settings.training.hyperparameters)
    return dict(sorted({**static, **settings.search.strategy.static_additions(static)}.items()))


def own_trials(study, states=None) -> list:
    """The trials this job ran (not the ones a warm start copied in)."""
    trials = study.get_trials(deepcopy=False, states=states)
    return [t for t in trials if WARM_START_ATTR not in t.user_attrs]


def open_study(name: str, folder: Path, settings, seed: int | None = None):
    """Create the study, or load it and check that it is this job (same settings)."""
    folder.mkdir(parents=True, exist_ok=True)
    wanted = job_settings(settings)
    tuned = settings.search
    study = optuna.create_study(
        study_name=name,
        storage=storage_url(folder),
        direction="maximize",
        sampler=tuned.strategy.sampler(tuned.ranges, tuned.max_jobs, seed),
        pruner=tuned.strategy.pruner(tuned.early_stopping, static_hyperparameters(settings)),
        load_if_exists=True,
    )
    stored = study.user_attrs.get(SETTINGS_ATTR)
    if stored is None:
        study.set_user_attr(SETTINGS_ATTR, wanted)
        return study, True
    changed = sorted(k for k in wanted if k != "max_jobs" and stored.get(k) != wanted[k])
    if changed:
        raise ConfigurationError(
            f"tuning job {name} in {folder} was started with other {', '.join(changed)}; re-run "
            "it with its own settings to continue it, or pick a new --tuning-job-name"
        )
    if stored.get("max_jobs") != wanted["max_jobs"]:
        study.set_user_attr(SETTINGS_ATTR, wanted)  # a bigger budget continues the search
    return study, False


@dataclass
class LocalTuner:
    """Runs the trials of one local tuning job, ``max_parallel_jobs`` at a time."""

    name: str
    folder: Path
    settings: Any  # classifier_client.tuning.TuningSettings
    runner: Any  # DockerTrialRunner, or a stub with run(job, on_objective) and stop_all()
    progress: Callable[[str], None] = print
    seed: int | None = None
    interrupted: bool = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _started: float = field(default_factory=time.monotonic, repr=False)

    def run(self, study) -> bool:
        """Run what is left of the job; False when interrupted (Ctrl-C) part-way."""
        # Optuna has no public handle on a stored RUNNING trial; Trial(study, id) is its own.
        left_running = own_trials(study, (TrialState.RUNNING,))
        resume = [optuna.trial.Trial(study, t._trial_id) for t in left_running]
        # With Grid, max_jobs is the number of combinations (Grid.max_jobs_for), as on SageMaker.
        tuned = self.settings.search
        new = max(0, tuned.max_jobs - len(own_trials(study)))
        if resume:
            self._say(f"continuing {len(resume)} interrupted trial(s) from their checkpoints")
        pool = ThreadPoolExecutor(tuned.max_parallel_jobs, thread_name_prefix="trial")
        running: set = set()
        try:
            while resume or new or running:
                while (resume or new) and len(running) < tuned.max_parallel_jobs:
                    if resume:
                        trial = resume.pop(0)
                    else:
                        trial, new = self._ask(study), new - 1
                    running.add(pool.submit(self._run_trial, study, trial))
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    future.result()  # a tuner error (no docker, a bad storage) ends the job
        except KeyboardInterrupt:
            self._interrupt(running)
        except BaseException:
            # The other trials stop and stay RUNNING: a re-run resumes them.
            self.interrupted = True
            self.runner.stop_all()
            raise
        finally:
            pool.shutdown(wait=True)
        return not self.interrupted

    def _ask(self, study):
        with self._lock:
            return study.ask(search.distributions(self.settings.search.ranges))

    def _interrupt(self, running: set) -> None:
        self.interrupted = True
        self._say("interrupted: stopping the running trials with SIGTERM (they checkpoint)")
        while running:
            self.runner.stop_all()
            try:
                _, running = wait(running, timeout=STOP_POLL_SECONDS)
            except KeyboardInterrupt:
                continue  # the trials are stopping; a second Ctrl-C changes nothing

    def _job(self, trial) -> TrialJob:
        name = f"{self.name}-{trial.number + 1:03d}"
        params = {k: as_text(v) for k, v in sorted(trial.params.items())}
        hyperparameters = {**static_hyperparameters(self.settings), **params}
        return TrialJob(name, self.folder / JOBS_DIR / name, hyperparameters)

    def _run_trial(self, study, trial) -> None:
        if self.interrupted:
            return  # asked just before the Ctrl-C: left RUNNING, a re-run starts it
        job = self._job(trial)
        reported = set(_frozen(study, trial).intermediate_values)
        with self._lock:
            trial.set_user_attr(JOB_ATTR, job.name)
            trial.set_user_attr(STATUS_ATTR, "InProgress")
        tuned = " ".join(f"{k}={job.hyperparameters[k]}" for k in sorted(trial.params))
        self._say(f"{job.name} started: {tuned}")
        pruned = threading.Event()

        def on_objective(epoch: int, value: float) -> bool:
            with self._lock:
                if epoch not in reported:  # a resumed job goes on from its checkpoint
                    trial.report(value, epoch)
                    reported.add(epoch)
                if trial.should_prune():
                    pruned.set()
                    self._say(
                        f"{job.name} stopping (pruned) at epoch {epoch}: {OBJECTIVE_METRIC}={value:.4f}"
                    )
            return pruned.is_set()

        outcome = self.runner.run(job, on_objective)
        self._finish(study, trial, job, outcome, pruned.is_set())

    def _finish(self, study, trial, job: TrialJob, outcome: TrialOutcome, pruned: bool) -> None:
        final = outcome.metrics.final(OBJECTIVE_METRIC)
        with self._lock:
            earlier = _frozen(study, trial).intermediate_values
            if final is None and outcome.completed and earlier:
                # Resumed after its last epoch: the job's metric series, as SageMaker keeps it
                # across a restart, ends with what the interrupted attempt printed.
                final = earlier[max(earlier)]
            if self.interrupted and not pruned and not outcome.completed:
                self._say(f"{job.name} interrupted; a re-run resumes it from its checkpoint")
                return
            if pruned:
                trial.set_user_attr(STATUS_ATTR, "Stopped")
                study.tell(trial, state=TrialState.PRUNED)
                self._say(f"{job.name} stopped (pruned) after {outcome.seconds:.0f}s{self._best_text(study)}")
            elif outcome.completed and final is not None:
                trial.set_user_attr(STATUS_ATTR, "Completed")
                study.tell(trial, final)
                self._say(
                    f"{job.name} completed: {OBJECTIVE_METRIC}={final:.4f} in "
                    f"{outcome.seconds:.0f}s{self._best_text(study)}"
                )
            else:
                reason = _failure_reason(outcome)
                trial.set_user_attr(STATUS_ATTR, "Failed")
                trial.set_user_attr(FAILURE_ATTR, reason)
                study.tell(trial, state=TrialState.FAIL)
                self._say(f"{job.name} FAILED: {reason} (log: {job.log_path})")

    def _best_text(self, study) -> str:
        complete = own_trials(study, (TrialState.COMPLETE,))
        if not complete:
            return "; no completed trial yet"
        best = max(complete, key=lambda t: t.value)
        return f"; best so far {best.value:.4f} ({best.user_attrs.get(JOB_ATTR)})"

    def _say(self, text: str) -> None:
        elapsed = int(time.monotonic() - self._started)
        self.progress(f"[{elapsed // 60:3d}:{elapsed % 60:02d}] {text}")


def _frozen(study, trial):
    return next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)


def _failure_reason(outcome: TrialOutcome) -> str:
    if outcome.regex_error:
        return outcome.regex_error
    if outcome.exit_code == 0:
        return (
            f"the job ended without a {OBJECTIVE_METRIC} line that the metric-definition regex "
            "matches; SageMaker would record no objective for it"
        )
    first_line = (outcome.failure or "").strip().splitlines()[:1]
    return f"exit code {outcome.exit_code}" + (f": {first_line[0]}" if first_line else "")
