"""Warm start from earlier local tuning jobs, as SageMaker's warm start does.

The parents' finished trials join the new study as prior knowledge (Optuna ``add_trial``):
the sampler learns from them and the early-stopping rule counts them as earlier jobs, but
they are not this job's trials (not in its budget, not its best). Per SageMaker's types:

- ``identical`` (IdenticalDataAndAlgorithm): the same data and image, and the same values of
  the hyperparameters static in both jobs; the ranges may change. Anything else is refused
  with the fix (use ``transfer``).
- ``transfer`` (TransferLearning): data, image, static values and ranges may all differ.

In both, the job has the parents' hyperparameters, static plus tunable, and each may move
between static and tunable (API reference, HyperParameterTuningJobWarmStartConfig,
WarmStartType, for both types: "You can also change hyperparameters from tunable to static,
and from static to tunable, but the total number of static plus tunable hyperparameters must
remain the same as it is in all parent jobs"). A hyperparameter the parent fixed and this job
tunes takes, in the parent's trials, the parent's static value. A parent trial whose values
lie outside the new ranges is left out.
"""

from __future__ import annotations

from pathlib import Path

import optuna
from optuna.distributions import FloatDistribution, IntDistribution
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
IDENTICAL_KEYS = ("channels", "image")


def load_parent(local_dir: Path, parent: str):
    folder = Path(parent) if Path(parent).is_dir() else local_dir / parent
    if not (folder / STUDY_FILE).exists():
        raise ConfigurationError(f"--warm-start-from {parent}: no local tuning job at {folder}")
    return optuna.load_study(study_name=folder.name, storage=storage_url(folder))


def _hyperparameter_names(settings: dict) -> set[str]:
    return set(settings.get("static_hyperparameters", {})) | set(settings.get("ranges", {}))


def _check_same_hyperparameters(parent_name: str, parent_settings: dict, mine: dict) -> None:
    theirs, ours = _hyperparameter_names(parent_settings), _hyperparameter_names(mine)
    if theirs == ours:
        return
    differences = []
    if ours - theirs:
        differences.append(f"{', '.join(sorted(ours - theirs))} not in {parent_name}")
    if theirs - ours:
        differences.append(f"{', '.join(sorted(theirs - ours))} of {parent_name} missing")
    raise ConfigurationError(
        f"--warm-start-from {parent_name}: a warm start keeps the parent's hyperparameters, "
        "static (--hp) plus tunable (--range), and each may move from one to the other, but "
        f"here {'; '.join(differences)} (SageMaker: the total number of static plus tunable "
        "hyperparameters must remain the same as in all parent jobs)"
    )


def _check_identical(parent_name: str, parent_settings: dict, mine: dict) -> None:
    differing = [k for k in IDENTICAL_KEYS if parent_settings.get(k) != mine[k]]
    theirs, ours = parent_settings.get("static_hyperparameters", {}), mine["static_hyperparameters"]
    changed = sorted(k for k in set(theirs) & set(ours) if theirs[k] != ours[k])
    if changed:
        differing.append(f"static {', '.join(changed)}")
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


def _typed(distribution, value):
    """A parent's static value (a string) as the new range's type; None if it is not one."""
    try:
        if isinstance(distribution, FloatDistribution):
            return float(value)
        if isinstance(distribution, IntDistribution):
            return int(value)
    except ValueError:
        return None
    return value


def _prior(trial, distributions: dict, parent_name: str, parent_static: dict[str, str]):
    """A parent trial as a trial of the new study, or None if it lies outside its ranges."""
    values = {**parent_static, **trial.params}
    params = {}
    for name, distribution in distributions.items():
        if name in values:
            value = _typed(distribution, values[name])
            if value is None or not _inside(distribution, value):
                return None
            params[name] = value
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
    distributions = search.distributions(settings.search.ranges)
    mine = job_settings(settings)
    added = 0
    for parent_name in settings.warm_start_parents:
        parent = load_parent(local_dir, parent_name)
        parent_settings = parent.user_attrs.get(SETTINGS_ATTR, {})
        _check_same_hyperparameters(parent_name, parent_settings, mine)
        if settings.warm_start_type == "identical":
            _check_identical(parent_name, parent_settings, mine)
        parent_static = parent_settings.get("static_hyperparameters", {})
        for trial in own_trials(parent, (TrialState.COMPLETE, TrialState.PRUNED)):
            prior = _prior(trial, distributions, parent_name, parent_static)
            if prior is not None:
                study.add_trial(prior)
                added += 1
    return added
