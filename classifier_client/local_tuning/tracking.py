"""``tune --local --mlflow-tracking-uri``: one MLflow parent run for the tuning job, a child run per trial.

The parent run is made here, with the same bounded, never-failing client the training container
uses (``classifier.watching.mlflow_tracking``); each trial's container logs its own run with
``mlflow.parentRunId`` set to it, so MLflow's UI nests the trials under the tuning job. A
continued job (the same command again) goes on with the parent run it stored in its study.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlparse

from classifier import constants

PARENT_RUN_ATTR = "mlflow_parent_run"
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def trials_need_host_network(tracking_uri: str | None) -> bool:
    """A server on this machine's loopback is reachable from a trial's container only on the host's
    network (the default bridge network has a loopback of its own)."""
    return bool(tracking_uri) and urlparse(tracking_uri).hostname in LOOPBACK_HOSTS


def open_parent_run(study, name: str, settings, environment: Mapping[str, str]):
    """The tuning job's parent run (created, or the stored one continued); None without a URI."""
    from classifier.watching.base import JobFacts
    from classifier.watching.mlflow_tracking import MlflowWatcher

    watching = settings.training.watching
    if not watching.mlflow_tracking_uri:
        return None
    parent = MlflowWatcher(watching.mlflow_tracking_uri, environment)
    stored = study.user_attrs.get(PARENT_RUN_ATTR)
    if stored:
        parent.attach(stored)
        return parent
    search = settings.search
    described = {f"range.{k}": r.describe() for k, r in sorted(search.ranges.items())}
    parent.start(
        JobFacts(
            job_name=name,
            tuning_job_name=name,
            instance_type="local",
            instance_count=1,
            image=settings.training.image_uri,
            hyperparameters={
                **settings.training.hyperparameters,
                **described,
                "strategy": search.strategy.name,
                "max_jobs": search.max_jobs,
                "max_parallel_jobs": search.max_parallel_jobs,
            },
        )
    )
    if parent.run_id:
        study.set_user_attr(PARENT_RUN_ATTR, parent.run_id)
    return parent


def trial_environment(parent) -> dict[str, str]:
    return {constants.MLFLOW_PARENT_RUN_ENV: parent.run_id} if parent is not None and parent.run_id else {}


def close_parent_run(parent, best: dict | None, files: list[Path], finished: bool) -> None:
    """The best trial's objective and the job's report on the parent run, FINISHED; KILLED if the
    job was interrupted (a re-run continues the same parent run)."""
    from classifier.watching.base import JobEnd

    if parent is None:
        return
    metrics = {}
    if best:
        metrics[f"best_{best['objective']['name']}"] = best["objective"]["value"]
    if finished:
        parent.finish(JobEnd(metrics=metrics, artifacts=files))
    else:
        parent.unfinished_status = "KILLED"  # interrupted: the same command continues it
    parent.close()
