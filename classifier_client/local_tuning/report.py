"""What a local tuning job leaves next to its study: ``report.html``, ``summary.json``, and the
best training job in the same shape as ``classifier_client.tuning.best_training_job``.

The HTML page is Optuna's own visualisation (plotly) with plotly.js embedded once, inline:
it opens offline and loads nothing from the network.
"""

from __future__ import annotations

import html
import json
import logging
import math
import warnings
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from classifier.metric_definitions import OBJECTIVE_METRIC
from classifier_client.config import ConfigurationError
from classifier_client.local_tuning.study import (
    FAILURE_ATTR,
    FINISHED,
    JOB_ATTR,
    JOBS_DIR,
    SETTINGS_ATTR,
    STATUS_ATTR,
    STUDY_FILE,
    WARM_START_ATTR,
    own_trials,
    storage_url,
)

logger = logging.getLogger(__name__)

REPORT_FILE = "report.html"
SUMMARY_FILE = "summary.json"
PLOTS = (
    ("Optimisation history", "plot_optimization_history"),
    ("Intermediate values per trial (valid_accuracy per epoch)", "plot_intermediate_values"),
    ("Parallel coordinates", "plot_parallel_coordinate"),
    ("Hyperparameter importances", "plot_param_importances"),
)


def load_local_study(local_dir: Path, name: str):
    import optuna

    folder = Path(name) if Path(name).is_dir() else Path(local_dir) / name
    if not (folder / STUDY_FILE).exists():
        raise ConfigurationError(f"no local tuning job {name} (looked for {folder / STUDY_FILE})")
    return optuna.load_study(study_name=folder.name, storage=storage_url(folder)), folder


def tuning_status(study) -> str:
    settings = study.user_attrs.get(SETTINGS_ATTR, {})
    finished = own_trials(study, FINISHED)
    return "Completed" if len(finished) >= settings.get("max_jobs", math.inf) else "InProgress"


def best_local_training_job(study, folder: Path) -> dict[str, Any]:
    """The job's best completed trial, with the keys and meaning of the cloud ``best``."""
    complete = own_trials(study, (TrialState.COMPLETE,))
    if not complete:
        counts = {s.name: len(own_trials(study, (s,))) for s in TrialState}
        raise ConfigurationError(
            f"local tuning job {study.study_name} has no completed trial with an objective "
            f"value yet (trials: {counts})"
        )
    best = max(complete, key=lambda t: t.value)
    job = best.user_attrs[JOB_ATTR]
    static = study.user_attrs.get(SETTINGS_ATTR, {}).get("static_hyperparameters", {})
    tuned = {k: _string(v) for k, v in sorted(best.params.items())}
    return {
        "tuning_job": study.study_name,
        "tuning_job_status": tuning_status(study),
        "training_job": job,
        "training_job_status": best.user_attrs.get(STATUS_ATTR, "Completed"),
        "objective": {"name": OBJECTIVE_METRIC, "value": best.value},
        "tuned_hyperparameters": tuned,
        "hyperparameters": dict(sorted({**static, **tuned}.items())),
        "model_artifacts": str((folder / JOBS_DIR / job / "model").resolve()),
    }


def _string(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _trial_row(trial) -> dict[str, Any]:
    duration = trial.duration.total_seconds() if trial.duration else None
    return {
        "number": trial.number,
        "training_job": trial.user_attrs.get(JOB_ATTR),
        "state": trial.state.name,
        "training_job_status": trial.user_attrs.get(STATUS_ATTR),
        "objective": trial.value,
        "objective_by_epoch": {str(k): v for k, v in sorted(trial.intermediate_values.items())},
        "hyperparameters": {k: _string(v) for k, v in sorted(trial.params.items())},
        "seconds": duration,
        "failure_reason": trial.user_attrs.get(FAILURE_ATTR),
        "warm_start_from": trial.user_attrs.get(WARM_START_ATTR),
    }


def summary(study, folder: Path) -> dict[str, Any]:
    trials = study.get_trials(deepcopy=False)
    own = own_trials(study)
    try:
        best = best_local_training_job(study, folder)
    except ConfigurationError:
        best = None
    return {
        "tuning_job": study.study_name,
        "tuning_job_status": tuning_status(study),
        "settings": study.user_attrs.get(SETTINGS_ATTR),
        "objective": {"name": OBJECTIVE_METRIC, "type": "Maximize"},
        "trial_counts": {s.name: sum(t.state == s for t in own) for s in TrialState},
        "warm_start_trials": len(trials) - len(own),
        "best": best,
        "trials": [_trial_row(t) for t in trials],
    }


def _figure_html(study, title: str, function: str, first: bool) -> tuple[str, bool]:
    """One plot as a <section>; plotly.js goes inline into the first plot that renders."""
    from optuna import visualization

    try:
        with warnings.catch_warnings():
            # Optuna warns, not fails, when there are too few trials for importances.
            warnings.simplefilter("ignore", UserWarning)
            figure = getattr(visualization, function)(study)
    except Exception as error:  # noqa: BLE001 - e.g. importances need two completed trials
        note = f"<p class='note'>not available yet: {html.escape(str(error))}</p>"
        return f"<section><h2>{html.escape(title)}</h2>{note}</section>", first
    figure.update_layout(title=None, height=420, margin={"l": 60, "r": 30, "t": 30, "b": 50})
    div = figure.to_html(full_html=False, include_plotlyjs=first, include_mathjax=False)
    return f"<section class='plot'><h2>{html.escape(title)}</h2>{div}</section>", False


def _table(data: dict[str, Any]) -> str:
    titles = ("trial", "training job", "state", OBJECTIVE_METRIC, "hyperparameters")
    head = "<tr>" + "".join(f"<th>{t}</th>" for t in titles) + "</tr>"
    rows = []
    for row in data["trials"]:
        value = "-" if row["objective"] is None else f"{row['objective']:.4f}"
        params = " ".join(f"{k}={v}" for k, v in row["hyperparameters"].items())
        origin = f" (warm start: {row['warm_start_from']})" if row["warm_start_from"] else ""
        cells = (row["number"], f"{row['training_job']}{origin}", row["state"], value, params)
        rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def write_report(study, folder: Path) -> tuple[Path, Path]:
    """report.html and summary.json in the tuning job's folder."""
    data = summary(study, folder)
    (folder / SUMMARY_FILE).write_text(json.dumps(data, indent=2, default=str) + "\n")
    sections, first = [], True
    for title, function in PLOTS:
        section, first = _figure_html(study, title, function, first)
        sections.append(section)
    best = data["best"]
    headline = (
        f"best {best['training_job']}: {OBJECTIVE_METRIC} {best['objective']['value']:.4f}"
        if best
        else "no completed trial yet"
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Tuning job {html.escape(study.study_name)}</title>
<style>body{{font-family:sans-serif;margin:24px;color:#222}} section.plot{{min-height:460px}}
table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}}
.note{{color:#777}}</style></head>
<body><h1>Local tuning job {html.escape(study.study_name)} ({data["tuning_job_status"]})</h1>
<p>{html.escape(headline)}; trials: {html.escape(json.dumps(data["trial_counts"]))}</p>
{"".join(sections)}
<h2>Trials</h2>{_table(data)}
</body></html>
"""
    report = folder / REPORT_FILE
    report.write_text(page)
    return report, folder / SUMMARY_FILE
