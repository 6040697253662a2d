"""What a finished (or failed) job leaves in output/data: metrics, skipped files, reports."""

from __future__ import annotations

import json
import logging
import traceback
from pathlib import Path

from sagemaker_training.errors import ClientError

from classifier import redaction

logger = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"
SKIPPED_FILES_FILE = "skipped_files.json"
TEST_REPORT_FILE = "test_report.json"


def _write_json(path: Path, payload) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(redaction.redact(json.dumps(payload, indent=2, default=str)))


def write_metrics(output_data_dir: Path, payload: dict) -> None:
    _write_json(output_data_dir / METRICS_FILE, payload)


def write_skipped(output_data_dir: Path, skipped_by_channel: dict[str, list]) -> None:
    listing = {
        channel: [{"path": s.path, "reason": s.reason} for s in files]
        for channel, files in skipped_by_channel.items()
    }
    _write_json(output_data_dir / SKIPPED_FILES_FILE, listing)
    for channel, files in skipped_by_channel.items():
        if files:
            logger.warning("skipped %d unreadable files in channel %s:", len(files), channel)
            for item in files:
                logger.warning("  %s (%s)", item.path, item.reason)


def write_test_report(output_data_dir: Path, report: dict) -> None:
    _write_json(output_data_dir / TEST_REPORT_FILE, report)


def write_failure(failure_file: Path, error: BaseException) -> None:
    """Reason first: SageMaker shows the first 1024 characters as FailureReason.

    A user error (see ``classifier.errors``) is its message alone; anything else
    adds the traceback below it.
    """
    failure_file.parent.mkdir(parents=True, exist_ok=True)
    reason = f"{type(error).__name__}: {error}\n"
    if not isinstance(error, ClientError):
        reason += "\n" + "".join(traceback.format_exception(error))
    failure_file.write_text(redaction.redact(reason))


def run_rules_and_report(
    output_data_dir: Path,
    tensors_dir: Path | None,
    history: list[dict],
    profiler_summary: dict | None,
    test_report: dict | None,
    should_stop=None,
) -> list:
    """Debugger rules on the saved tensors, then the HTML/JSON job report; returns rule results.

    A report that cannot be written must not turn a trained model into a failed job, so
    errors here are logged with their traceback and the job goes on.
    """
    from classifier.debugging import report, rules

    rule_results = None
    try:
        if tensors_dir is not None and tensors_dir.exists():
            rule_results = rules.run_rules(str(tensors_dir), should_stop=should_stop)
            for result in rule_results:
                logger.info("rule %s", result)
        report.write_job_report(output_data_dir, history, rule_results, profiler_summary, test_report)
    except Exception:  # the job's model matters more than its report; see docstring
        logger.exception("writing the debugger/profiler report failed")
    return rule_results or []
