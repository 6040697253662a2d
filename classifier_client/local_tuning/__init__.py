"""``tune --local``: a hyperparameter tuning job on this machine, with Optuna.

The same settings as a SageMaker tuning job (``classifier_client.tuning.TuningSettings``,
validated by ``classifier_client.strategies``); each trial a real training job of the image
(``runner``); the objective read from its log with the shared metric regexes (``logs``);
SageMaker's strategies and early stopping as Optuna samplers and pruners (``search``); the
study, resume and warm start (``study``, ``warm_start``); the report and ``best`` (``report``).
See docs/local-tuning.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

DEFAULT_LOCAL_TUNING_JOB = "img-clf-hpo-local"


@dataclass
class LocalTuningResult:
    name: str
    folder: Path
    finished: bool
    report: Path
    summary: Path


def run_local_tuning(
    settings,
    name: str,
    local_dir: str | Path,
    *,
    runner=None,
    progress: Callable[[str], None] = print,
    seed: int | None = None,
) -> LocalTuningResult:
    """Create or continue the local tuning job ``name`` under ``local_dir``; run it to the end
    (or to a Ctrl-C) and write its report. ``runner`` defaults to Docker with the cores
    divided among the parallel trials."""
    import optuna

    from classifier_client.local_tuning import tracking
    from classifier_client.local_tuning.report import REPORT_FILE, SUMMARY_FILE, write_report
    from classifier_client.local_tuning.runner import DockerTrialRunner, per_trial_cpus
    from classifier_client.local_tuning.study import LocalTuner, open_study
    from classifier_client.local_tuning.warm_start import warm_start
    from classifier_client.training import job_environment

    # Our progress lines say what Optuna's INFO lines would, per training job; the report says
    # which plots need more trials, instead of Optuna's warnings.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    folder = Path(local_dir).expanduser().resolve() / name
    study, created = open_study(name, folder, settings, seed)
    environment = job_environment(settings.training, tuning_job_name=name)
    parent = tracking.open_parent_run(study, name, settings, environment)
    if runner is None:
        uri = settings.training.watching.mlflow_tracking_uri
        runner = DockerTrialRunner(
            image=settings.training.image_uri,
            channels=settings.training.channels,
            cpus=per_trial_cpus(settings.max_parallel_jobs),
            environment={**environment, **tracking.trial_environment(parent)},
            host_network=tracking.trials_need_host_network(uri),
        )
    if created and settings.warm_start_parents:
        try:
            added = warm_start(study, settings, folder.parent)
        except BaseException:
            # A refused warm start leaves no study behind, so fixing the command just works.
            optuna.delete_study(study_name=name, storage=study._storage)
            raise
        progress(f"warm start: {added} trial(s) of {', '.join(settings.warm_start_parents)}")
    tuner = LocalTuner(name, folder, settings, runner, progress, seed)
    finished = False
    try:
        finished = tuner.run(study)
        report, summary = write_report(study, folder)
    except KeyboardInterrupt:
        # Every trial is stored: a re-run finds nothing left to train and writes the report.
        progress("interrupted while writing the report: re-run the same command to write it")
        return LocalTuningResult(name, folder, False, folder / REPORT_FILE, folder / SUMMARY_FILE)
    finally:
        best = _best_or_none(study, folder) if finished else None
        tracking.close_parent_run(parent, best, [folder / REPORT_FILE, folder / SUMMARY_FILE], finished)
    return LocalTuningResult(name, folder, finished, report, summary)


def _best_or_none(study, folder: Path) -> dict | None:
    from classifier_client.config import ConfigurationError
    from classifier_client.local_tuning.report import best_local_training_job

    try:
        return best_local_training_job(study, folder)
    except ConfigurationError:  # no completed trial
        return None


def best_local(local_dir: str | Path, name: str) -> dict:
    from classifier_client.local_tuning.report import best_local_training_job, load_local_study

    study, folder = load_local_study(Path(local_dir).expanduser(), name)
    return best_local_training_job(study, folder)
