"""Warm start from earlier local tuning jobs, as SageMaker's warm start does.

The parents' finished trials join the new study as prior knowledge (Optuna ``add_trial``):
the sampler learns from them and the early-stopping rule counts them as earlier jobs, but
they are not this job's trials (not in its budget, not its best). Per SageMaker's types:

- ``identical`` (IdenticalDataAndAlgorithm): the same data, image and static hyperparameters;
  the ranges may change. Anything else is refused with the fix (use ``transfer``).
- ``transfer`` (TransferLearning): data, image, static values and ranges may all differ.

In both, a parent trial whose values lie outside the new ranges is left out.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.trial import TrialState

from classifier_client.config import ConfigurationError
from classifier_client.local_tuning import search
from classifier_client.local_tuning.study import (
    JOB_ATTR,
    SETTINGS_ATTR,
    STATUS_ATTR,
    STUDY_FILE,
    WARM_START_ATTR,
    job_settings,
    own_trials,
    storage_url,
)

MAX_PARENTS = 5
IDENTICAL_KEYS = ("channels", "image", "static_hyperparameters")


def load_parent(local_dir: Path, parent: str):
    folder = Path(parent) if Path(parent).is_dir() else local_dir / parent
    if not (folder / STUDY_FILE).exists():
        raise ConfigurationError(f"--warm-start-from {parent}: no local tuning job at {folder}")
    return optuna.load_study(study_name=folder.name, storage=storage_url(folder))


def _check_identical(parent_name: str, parent_settings: dict, settings) -> None:
    mine = job_settings(settings)
    differing = [k for k in IDENTICAL_KEYS if parent_settings.get(k) != mine[k]]
    if differing:
        raise ConfigurationError(
            f"--warm-start-type identical needs the same data and image as {parent_name} "
            f"(IdenticalDataAndAlgorithm), but {', '.join(differing)} differ; "
            "use --warm-start-type transfer"
        )


def _inside(distribution, value) -> bool:
    try:
        return distribution._contains(distribution.to_internal_repr(value))
    except ValueError:  # a categorical value the new range does not list
        return False


def _prior(trial, distributions: dict, parent_name: str):
    """A parent trial as a trial of the new study, or None if it lies outside its ranges."""
    params = {}
    for name, distribution in distributions.items():
        if name in trial.params:
            if not _inside(distribution, trial.params[name]):
                return None
            params[name] = trial.params[name]
    if not params:
        return None
    return optuna.trial.create_trial(
        state=trial.state,
        value=trial.value if trial.state == TrialState.COMPLETE else None,
        params=params,
        distributions={name: distributions[name] for name in params},
        intermediate_values=dict(trial.intermediate_values),
        user_attrs={
            WARM_START_ATTR: parent_name,
            JOB_ATTR: trial.user_attrs.get(JOB_ATTR),
            STATUS_ATTR: trial.user_attrs.get(STATUS_ATTR),
        },
    )


def warm_start(study, settings, local_dir: Path) -> int:
    """Copy the parents' trials into a new study; returns how many joined."""
    if len(settings.warm_start_parents) > MAX_PARENTS:
        raise ConfigurationError(f"at most {MAX_PARENTS} warm start parent jobs")
    distributions = search.distributions(settings.ranges)
    added = 0
    for parent_name in settings.warm_start_parents:
        parent = load_parent(local_dir, parent_name)
        if settings.warm_start_type == "identical":
            _check_identical(parent_name, parent.user_attrs.get(SETTINGS_ATTR, {}), settings)
        for trial in own_trials(parent, (TrialState.COMPLETE, TrialState.PRUNED)):
            prior = _prior(trial, distributions, parent_name)
            if prior is not None:
                study.add_trial(prior)
                added += 1
    return added
