"""``tune --local``: a hyperparameter tuning job on this machine, with Optuna.

The same settings as a SageMaker tuning job (``classifier_client.tuning.TuningSettings``,
its search checked by ``classifier_client.strategies``); each trial a real training job of the image
(``runner``); the objective read from its log with the shared metric regexes (``logs``);
SageMaker's strategies and early stopping as Optuna samplers and pruners (each strategy's
own, with ``search``'s distributions and pruner); the
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
    from classifier_client.local_tuning.study import LocalTuner, open_study, storage_url
    from classifier_client.local_tuning.warm_start import warm_start
    from classifier_client.training import job_environment
    from classifier_client.tuning import check_local_tuning

    check_local_tuning(settings.training, name)
    # Our progress lines say what Optuna's INFO lines would, per training job; the report says
    # which plots need more trials, instead of Optuna's warnings.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    folder = Path(local_dir).expanduser().resolve() / name
    study, created = open_study(name, folder, settings, seed)
    if created and settings.warm_start_parents:
        try:
            added = warm_start(study, settings, folder.parent)
        except BaseException:
            # A refused warm start leaves no study behind, so fixing the command just works.
            optuna.delete_study(study_name=name, storage=storage_url(folder))
            raise
        progress(f"warm start: {added} trial(s) of {', '.join(settings.warm_start_parents)}")
    environment = job_environment(settings.training, tuning_job_name=name)
    parent = tracking.open_parent_run(study, name, settings, environment)
    finished = False
    try:
        if runner is None:
            runner = _docker_runner(settings, {**environment, **tracking.trial_environment(parent)})
        finished = LocalTuner(name, folder, settings, runner, progress, seed).run(study)
        report, summary = write_report(study, folder)
    except KeyboardInterrupt:
        # Every trial is stored: a re-run finds nothing left to train and writes the report.
        progress("interrupted while writing the report: re-run the same command to write it")
        return LocalTuningResult(name, folder, False, folder / REPORT_FILE, folder / SUMMARY_FILE)
    finally:
        best = _best_or_none(study, folder) if finished else None
        tracking.close_parent_run(parent, best, [folder / REPORT_FILE, folder / SUMMARY_FILE], finished)
    return LocalTuningResult(name, folder, finished, report, summary)


def _docker_runner(settings, environment: dict[str, str]):
    """Docker with the cores divided among the parallel trials, on the host's network when the
    MLflow tracking server is on this machine's loopback."""
    from classifier_client.local_tuning import tracking
    from classifier_client.local_tuning.runner import DockerTrialRunner, per_trial_cpus

    return DockerTrialRunner(
        image=settings.training.image_uri,
        channels=settings.training.channels,
        cpus=per_trial_cpus(settings.search.max_parallel_jobs),
        environment=environment,
        host_network=tracking.trials_need_host_network(settings.training.watching.mlflow_tracking_uri),
    )


def _best_or_none(study, folder: Path) -> dict | None:
    """The best trial for the parent run; None if there is none, never an error that would hide
    the tuning job's own."""
    from classifier_client.local_tuning.report import best_local_training_job

    try:
        return best_local_training_job(study, folder)
    except Exception:  # noqa: BLE001 - no completed trial, or a study that cannot be read
        return None


def best_local(local_dir: str | Path, name: str) -> dict:
    from classifier_client.local_tuning.report import best_local_training_job, load_local_study

    study, folder = load_local_study(Path(local_dir).expanduser(), name)
    return best_local_training_job(study, folder)
