"""The job report: one self-contained HTML page (plots inlined as PNG) plus report.json.

It must read well when opened from output.tar.gz on a laptop with no network, so there
are no scripts, no external CSS and no remote images: every plot is rendered off-screen
into a base64 data URI. The page itself is templates/report.html.j2 (Jinja2, autoescaped);
this module prepares the values it shows and draws the plots.
"""

from __future__ import annotations

import base64
import io
import json
import math
from datetime import UTC, datetime
from functools import cache
from pathlib import Path

import jinja2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

REPORT_HTML = "report.html"
REPORT_JSON = "report.json"
TEMPLATE = "report.html.j2"
MAX_CLASSES_LABELLED = 30  # beyond this, the confusion matrix drops tick labels
MAX_CLASSES_ANNOTATED = 15  # beyond this, the confusion matrix cells have no counts


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    return str(value)


@cache
def _templates() -> jinja2.Environment:
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("classifier.debugging", "templates"),
        # Class names, rule messages and parameters come from the job's data and settings.
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.filters["fmt"] = _fmt
    return environment


# --- plots ---------------------------------------------------------------------------------


def new_figure(figsize: tuple[float, float]) -> Figure:
    """A figure on its own Agg canvas: no pyplot state and no process-wide backend switch."""
    figure = Figure(figsize=figsize)
    FigureCanvasAgg(figure)
    return figure


def _plot(figure: Figure, alt: str) -> dict:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    uri = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    return {"alt": alt, "uri": uri}


def _finite(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _curves(history: list[dict]) -> dict | None:
    if not history:
        return None
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    figure = new_figure((11, 3.6))
    loss_ax, acc_ax = figure.subplots(1, 2)
    for key, style in (("train_loss", "o-"), ("valid_loss", "s-")):
        loss_ax.plot(epochs, [_finite(r.get(key)) for r in history], style, label=key)
    for key, style in (("train_accuracy", "o-"), ("valid_accuracy", "s-")):
        acc_ax.plot(epochs, [_finite(r.get(key)) for r in history], style, label=key)
    loss_ax.set(title="Loss", xlabel="epoch")
    acc_ax.set(title="Accuracy", xlabel="epoch", ylim=(0, 1.02))
    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    return {
        "plot": _plot(figure, "training curves"),
        "nonfinite_epochs": [r.get("epoch") for r in history if _finite(r.get("train_loss")) is None],
    }


def _utilisation_plot(timelines: dict) -> dict | None:
    times = timelines.get("time_seconds") or []
    if not times:
        return None
    figure = new_figure((11, 3.2))
    ax = figure.subplots()
    ax.plot(times, timelines.get("cpu_percent", []), label="CPU %")
    ax.plot(times, timelines.get("memory_percent", []), label="memory %")
    for i, series in enumerate(timelines.get("gpu_util_percent") or []):
        ax.plot(times[: len(series)], series, label=f"GPU {i} util %")
    for i, series in enumerate(timelines.get("gpu_memory_percent") or []):
        ax.plot(times[: len(series)], series, "--", label=f"GPU {i} memory %")
    ax.set(title="System utilisation", xlabel="seconds since training started", ylim=(0, 105))
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    return _plot(figure, "system utilisation timeline")


def _step_split_plot(timelines: dict) -> dict | None:
    data = timelines.get("step_data_seconds") or []
    compute = timelines.get("step_compute_seconds") or []
    if not (data and compute):
        return None
    figure = new_figure((11, 3.2))
    ax = figure.subplots()
    ax.stackplot(
        range(len(data)),
        [1000 * d for d in data],
        [1000 * c for c in compute],
        labels=["waiting for data", "compute"],
        alpha=0.8,
    )
    ax.set(title="Step time split (train steps, thinned)", xlabel="step", ylabel="ms")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper right", fontsize=8)
    return _plot(figure, "step time split")


def _annotate_counts(ax, matrix: np.ndarray, shares: np.ndarray) -> None:
    for i in range(matrix.shape[0]):
        for j in range(matrix.shape[1]):
            if matrix[i, j]:
                colour = "white" if shares[i, j] > 0.5 else "black"
                ax.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7, color=colour)


def _confusion_plot(names: list[str], matrix: np.ndarray) -> dict | None:
    figure = confusion_figure(names, matrix)
    return _plot(figure, "confusion matrix") if figure is not None else None


def confusion_figure(names: list[str], matrix: np.ndarray, title: str = "Confusion matrix") -> Figure | None:
    """Shares of each true class (rows) predicted as each class; None for an empty matrix."""
    matrix = np.asarray(matrix, dtype=float)
    if not matrix.size:
        return None
    size = matrix.shape[0]
    labelled = size <= MAX_CLASSES_LABELLED
    side = min(10.0, max(4.0, 0.45 * size)) if labelled else 9.0
    figure = new_figure((side + 1.5, side))
    ax = figure.subplots()
    rows = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    figure.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
    ax.set(title=f"{title} (rows: true class)", xlabel="predicted", ylabel="true")
    if labelled:
        ax.set_xticks(range(size), names, rotation=90, fontsize=8)
        ax.set_yticks(range(size), names, fontsize=8)
        if size <= MAX_CLASSES_ANNOTATED:
            _annotate_counts(ax, matrix, shares)
    return figure


def _per_class_plot(per_class: dict) -> dict | None:
    if not per_class:
        return None
    items = sorted(((str(k), v) for k, v in per_class.items() if v is not None), key=lambda kv: kv[1])
    shown = items[:MAX_CLASSES_LABELLED]
    figure = new_figure((9, max(2.5, 0.28 * len(shown) + 1)))
    ax = figure.subplots()
    ax.barh([k for k, _ in shown], [v for _, v in shown], color="#4c72b0")
    worst = f" (worst {len(shown)} of {len(items)})" if len(items) > len(shown) else ""
    ax.set(xlim=(0, 1), xlabel="accuracy", title="Per-class test accuracy" + worst)
    ax.grid(alpha=0.3, axis="x")
    return _plot(figure, "per-class accuracy")


# --- what each section shows ---------------------------------------------------------------


def _as_dict(result) -> dict:
    return result.to_dict() if hasattr(result, "to_dict") else dict(result)


def _why(result: dict) -> str:
    if result.get("message"):
        return str(result["message"])
    if result.get("status") == "NoData":
        return "none of the tensors this rule needs were saved"
    return f"{result.get('datapoints', 0)} datapoints checked"


def _rule_rows(rule_results: list[dict] | None) -> list[dict] | None:
    if rule_results is None:
        return None
    return [
        {
            "name": str(r.get("rule")),
            "status": str(r.get("status")),
            "fired": bool(r.get("fired")),
            "fired_at_step": r.get("fired_at_step"),
            "violations": r.get("violations"),
            "why": _why(r),
            "parameters": ", ".join(f"{k}={v}" for k, v in (r.get("parameters") or {}).items()),
        }
        for r in rule_results
    ]


def _profiler_cards(summary: dict) -> list[dict]:
    steps = summary.get("steps", {})
    system = summary.get("system", {})
    cards = [
        ("images/s (train steps)", steps.get("images_per_second")),
        ("data wait share", steps.get("data_wait_share")),
        ("mean CPU %", (system.get("cpu_percent") or {}).get("mean")),
        ("max memory %", (system.get("memory_percent") or {}).get("max")),
        ("dataloader workers", summary.get("num_workers")),
        ("batch size", summary.get("batch_size")),
    ]
    return [{"label": label, "value": value} for label, value in cards]


def _recommendation_rows(recommendations: list[dict]) -> list[dict]:
    return [
        {
            "rule": r["rule"],
            "triggered": r["triggered"],
            "message": r["message"],
            "evidence": ", ".join(f"{k}={_fmt(v, 3)}" for k, v in r.get("evidence", {}).items()),
        }
        for r in recommendations
    ]


def _profiler(summary: dict | None) -> dict | None:
    if not summary:
        return None
    timelines = summary.get("timelines", {})
    settings = summary.get("settings", {})
    plots = (_utilisation_plot(timelines), _step_split_plot(timelines))
    return {
        "cards": _profiler_cards(summary),
        "plots": [plot for plot in plots if plot is not None],
        "recommendations": _recommendation_rows(summary.get("recommendations") or []),
        "interval_ms": settings.get("interval_ms"),
        "samples": summary.get("system", {}).get("samples", 0),
        "source": str(settings.get("source")),
        "device": str(summary.get("device")),
    }


def _test(test_results: dict | None) -> dict | None:
    if not test_results:
        return None
    names = [str(n) for n in test_results.get("class_names", [])]
    matrix = np.asarray(test_results.get("confusion_matrix", []), dtype=float)
    plots = (
        _confusion_plot(names, matrix),
        _per_class_plot(test_results.get("per_class_accuracy") or {}),
    )
    return {
        "accuracy": test_results.get("accuracy"),
        "plots": [plot for plot in plots if plot is not None],
    }


def _facts(history, rule_results, profiler_summary, test_results) -> dict:
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "history": history,
        "rules": rule_results,
        "rules_fired": [r["rule"] for r in rule_results or [] if r.get("fired")],
        "profiler": profiler_summary,
        "test": test_results,
    }


def render_html(facts: dict) -> str:
    """The page for ``_facts(...)``: every section heading, whatever the job left out."""
    history = facts["history"]
    last = history[-1] if history else {}
    return (
        _templates()
        .get_template(TEMPLATE)
        .render(
            generated_at=facts["generated_at"],
            epochs=len(history),
            last_valid_accuracy=last.get("valid_accuracy"),
            last_valid_loss=last.get("valid_loss"),
            rules_fired=facts["rules_fired"],
            rules=_rule_rows(facts["rules"]),
            curves=_curves(history),
            profiler=_profiler(facts["profiler"]),
            test=_test(facts["test"]),
        )
    )


def write_job_report(
    output_data_dir: Path,
    history: list[dict],
    rule_results: list | None,
    profiler_summary: dict | None,
    test_results: dict | None,
) -> Path:
    """Write ``report.html`` and ``report.json`` to ``output_data_dir``; returns the HTML path."""
    output_data_dir = Path(output_data_dir)
    output_data_dir.mkdir(parents=True, exist_ok=True)
    rules = [_as_dict(r) for r in rule_results] if rule_results is not None else None
    facts = _facts(history, rules, profiler_summary, test_results)
    html_path = output_data_dir / REPORT_HTML
    html_path.write_text(render_html(facts), encoding="utf-8")
    (output_data_dir / REPORT_JSON).write_text(json.dumps(_clean(facts), indent=2, default=str))
    return html_path


def _clean(value):
    """NaN/inf as strings: report.json must be valid JSON for any reader, not just Python."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value
