"""The job report: one self-contained HTML page (plots inlined as PNG) plus report.json.

It must read well when opened from output.tar.gz on a laptop with no network, so there
are no scripts, no external CSS and no remote images: matplotlib (Agg) renders every plot
into a base64 data URI.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from datetime import UTC, datetime
from pathlib import Path

REPORT_HTML = "report.html"
REPORT_JSON = "report.json"
MAX_CLASSES_LABELLED = 30  # beyond this, the confusion matrix drops tick labels

_CSS = """
body{font-family:-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:24px auto;
max-width:1100px;
color:#1d2330;line-height:1.4}
h1{font-size:24px;margin-bottom:4px}
h2{font-size:19px;margin-top:32px;border-bottom:1px solid #dde}
table{border-collapse:collapse;margin:8px 0;font-size:14px;width:100%}
th,td{border:1px solid #d7dbe3;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f2f4f8}.ok{color:#17663a;font-weight:600}.bad{color:#b3261e;font-weight:600}
.muted{color:#667}.plot{max-width:100%;height:auto;border:1px solid #eee;margin:6px 0}
.summary{display:flex;gap:16px;flex-wrap:wrap}.card{border:1px solid #d7dbe3;border-radius:6px;
padding:8px 14px;min-width:150px}.card b{display:block;font-size:20px}
"""


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    _plt().close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(uri: str, alt: str) -> str:
    return f'<img class="plot" alt="{html.escape(alt)}" src="{uri}">'


def _finite(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if math.isfinite(value) else str(value)
    return html.escape(str(value))


def _as_dict(result) -> dict:
    return result.to_dict() if hasattr(result, "to_dict") else dict(result)


# --- sections --------------------------------------------------------------------------------


def _curves(history: list[dict]) -> str:
    if not history:
        return '<p class="muted">No epoch finished, so there are no training curves.</p>'
    plt = _plt()
    epochs = [row.get("epoch", i + 1) for i, row in enumerate(history)]
    fig, (loss_ax, acc_ax) = plt.subplots(1, 2, figsize=(11, 3.6))
    for key, style in (("train_loss", "o-"), ("valid_loss", "s-")):
        loss_ax.plot(epochs, [_finite(r.get(key)) for r in history], style, label=key)
    for key, style in (("train_accuracy", "o-"), ("valid_accuracy", "s-")):
        acc_ax.plot(epochs, [_finite(r.get(key)) for r in history], style, label=key)
    loss_ax.set(title="Loss", xlabel="epoch")
    acc_ax.set(title="Accuracy", xlabel="epoch", ylim=(0, 1.02))
    from matplotlib.ticker import MaxNLocator

    for ax in (loss_ax, acc_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    nonfinite = [r.get("epoch") for r in history if _finite(r.get("train_loss")) is None]
    note = (
        f'<p class="bad">Non-finite training loss in epoch(s) {nonfinite}: not plotted.</p>'
        if nonfinite
        else ""
    )
    return _img(_png(fig), "training curves") + note


def _why(result: dict) -> str:
    if result.get("message"):
        return str(result["message"])
    if result.get("status") == "NoData":
        return "none of the tensors this rule needs were saved"
    return f"{result.get('datapoints', 0)} datapoints checked"


def _params(result: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in (result.get("parameters") or {}).items())


def _rules(rule_results: list[dict] | None) -> str:
    if rule_results is None:
        return (
            '<p class="muted">No tensors were saved (the smdebug hook was off), so the debugger '
            "rules did not run. Set hyperparameter <code>debug=true</code> or attach a "
            "DebuggerHookConfig.</p>"
        )
    if not rule_results:
        return '<p class="muted">The rules ran but returned no results.</p>'
    rows = []
    for r in rule_results:
        fired = r.get("fired")
        status = (
            f'<span class="{"bad" if fired else "ok"}">{html.escape(str(r.get("status")))}</span>'
        )
        rows.append(
            f"<tr><td>{html.escape(str(r.get('rule')))}</td><td>{status}</td>"
            f"<td>{_fmt(r.get('fired_at_step'))}</td><td>{_fmt(r.get('violations'))}</td>"
            f"<td>{html.escape(_why(r))}</td>"
            f'<td class="muted">{html.escape(_params(r))}</td></tr>'
        )
    return (
        "<table><tr><th>Rule</th><th>Status</th><th>First fired at step</th><th>Violations</th>"
        "<th>Why</th><th>Parameters</th></tr>" + "".join(rows) + "</table>"
    )


def _profiler(summary: dict | None) -> str:
    if not summary:
        return '<p class="muted">The profiler was off for this job.</p>'
    plt = _plt()
    parts = []
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
    parts.append(
        '<div class="summary">'
        + "".join(f"<div class=card><b>{_fmt(v, 3)}</b>{html.escape(k)}</div>" for k, v in cards)
        + "</div>"
    )
    timelines = summary.get("timelines", {})
    times = timelines.get("time_seconds") or []
    if times:
        fig, ax = plt.subplots(figsize=(11, 3.2))
        ax.plot(times, timelines.get("cpu_percent", []), label="CPU %")
        ax.plot(times, timelines.get("memory_percent", []), label="memory %")
        for i, series in enumerate(timelines.get("gpu_util_percent") or []):
            ax.plot(times[: len(series)], series, label=f"GPU {i} util %")
        for i, series in enumerate(timelines.get("gpu_memory_percent") or []):
            ax.plot(times[: len(series)], series, "--", label=f"GPU {i} memory %")
        ax.set(title="System utilisation", xlabel="seconds since training started", ylim=(0, 105))
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
        parts.append(_img(_png(fig), "system utilisation timeline"))
    data = timelines.get("step_data_seconds") or []
    compute = timelines.get("step_compute_seconds") or []
    if data and compute:
        fig, ax = plt.subplots(figsize=(11, 3.2))
        xs = range(len(data))
        ax.stackplot(
            xs,
            [1000 * d for d in data],
            [1000 * c for c in compute],
            labels=["waiting for data", "compute"],
            alpha=0.8,
        )
        ax.set(title="Step time split (train steps, thinned)", xlabel="step", ylabel="ms")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right", fontsize=8)
        parts.append(_img(_png(fig), "step time split"))
    recs = summary.get("recommendations") or []
    if recs:
        rows = "".join(
            f"<tr><td>{html.escape(r['rule'])}</td>"
            f'<td><span class="{"bad" if r["triggered"] else "ok"}">'
            f"{'Recommendation' if r['triggered'] else 'OK'}</span></td>"
            f'<td>{html.escape(r["message"])}</td><td class="muted">'
            + html.escape(", ".join(f"{k}={_fmt(v, 3)}" for k, v in r.get("evidence", {}).items()))
            + "</td></tr>"
            for r in recs
        )
        parts.append(
            "<table><tr><th>Check</th><th>Result</th><th>Advice</th><th>Evidence</th></tr>"
            + rows
            + "</table>"
        )
    settings = summary.get("settings", {})
    parts.append(
        f'<p class="muted">Sampled every {_fmt(settings.get("interval_ms"))} ms '
        f"({system.get('samples', 0)} samples) from {html.escape(str(settings.get('source')))}; "
        f"device {html.escape(str(summary.get('device')))}.</p>"
    )
    return "".join(parts)


def _test(test_results: dict | None) -> str:
    if not test_results:
        return '<p class="muted">No test channel, so there is no confusion matrix.</p>'
    import numpy as np

    plt = _plt()
    names = [str(n) for n in test_results.get("class_names", [])]
    matrix = np.asarray(test_results.get("confusion_matrix", []), dtype=float)
    parts = [f"<p>Test accuracy: <b>{_fmt(test_results.get('accuracy'), 4)}</b></p>"]
    if matrix.size:
        size = matrix.shape[0]
        labelled = size <= MAX_CLASSES_LABELLED
        side = min(10.0, max(4.0, 0.45 * size)) if labelled else 9.0
        fig, ax = plt.subplots(figsize=(side + 1.5, side))
        rows = matrix.sum(axis=1, keepdims=True)
        shares = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
        image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
        fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class")
        ax.set(title="Confusion matrix (rows: true class)", xlabel="predicted", ylabel="true")
        if labelled:
            ax.set_xticks(range(size), names, rotation=90, fontsize=8)
            ax.set_yticks(range(size), names, fontsize=8)
            if size <= 15:
                for i in range(size):
                    for j in range(size):
                        if matrix[i, j]:
                            ax.text(
                                j,
                                i,
                                int(matrix[i, j]),
                                ha="center",
                                va="center",
                                fontsize=7,
                                color="white" if shares[i, j] > 0.5 else "black",
                            )
        parts.append(_img(_png(fig), "confusion matrix"))
    per_class = test_results.get("per_class_accuracy") or {}
    if per_class:
        items = sorted(
            ((str(k), v) for k, v in per_class.items() if v is not None), key=lambda kv: kv[1]
        )
        shown = items[:MAX_CLASSES_LABELLED]
        fig, ax = plt.subplots(figsize=(9, max(2.5, 0.28 * len(shown) + 1)))
        ax.barh([k for k, _ in shown], [v for _, v in shown], color="#4c72b0")
        ax.set(
            xlim=(0, 1),
            xlabel="accuracy",
            title="Per-class test accuracy"
            + (f" (worst {len(shown)} of {len(items)})" if len(items) > len(shown) else ""),
        )
        ax.grid(alpha=0.3, axis="x")
        parts.append(_img(_png(fig), "per-class accuracy"))
    return "".join(parts)


def _facts(history, rule_results, profiler_summary, test_results) -> dict:
    return {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "history": history,
        "rules": rule_results,
        "rules_fired": [r["rule"] for r in rule_results or [] if r.get("fired")],
        "profiler": profiler_summary,
        "test": test_results,
    }


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
    fired = facts["rules_fired"]
    last = history[-1] if history else {}
    banner = (
        f'<p class="bad">Rules that found issues: {html.escape(", ".join(fired))}</p>'
        if fired
        else '<p class="ok">No debugger rule found an issue.</p>'
        if rules
        else ""
    )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Training job report</title>
<style>{_CSS}</style></head><body>
<h1>Training job report</h1>
<p class="muted">Generated {html.escape(facts["generated_at"])} · {len(history)} epoch(s) ·
last valid accuracy {_fmt(last.get("valid_accuracy"))} ·
last valid loss {_fmt(last.get("valid_loss"))}</p>
{banner}
<h2>Training curves</h2>{_curves(history)}
<h2>Debugger rules</h2>{_rules(rules)}
<h2>Profiler</h2>{_profiler(profiler_summary)}
<h2>Test set</h2>{_test(test_results)}
</body></html>
"""
    html_path = output_data_dir / REPORT_HTML
    html_path.write_text(page, encoding="utf-8")
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
