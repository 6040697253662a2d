"""Metrics from a training job's log, read the way SageMaker reads them.

Every line goes through the regexes of ``classifier.metric_definitions.METRIC_DEFINITIONS``,
the ones the client sends to SageMaker. A line that names the objective but that its regex
does not match is an error, not a silent miss: on SageMaker the same job would have no
objective value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from classifier.metric_definitions import EPOCH_REGEX, METRIC_DEFINITIONS, OBJECTIVE_METRIC

_EPOCH = re.compile(EPOCH_REGEX)


class MetricRegexError(RuntimeError):
    """The log names the objective on a line its metric-definition regex does not match."""


def _compiled() -> dict[str, re.Pattern]:
    return {d["Name"]: re.compile(d["Regex"]) for d in METRIC_DEFINITIONS}


@dataclass
class LogMetrics:
    """Feed lines with :meth:`feed`; collects every metric and the objective per epoch.

    The epoch of an objective value is the line's ``epoch=N`` (a job resumed from a
    checkpoint goes on counting from there), else the count of objective values so far,
    which is what SageMaker, knowing nothing of epochs, counts.
    """

    objective: str = OBJECTIVE_METRIC
    metrics: dict[str, list[float]] = field(default_factory=dict)
    objective_by_epoch: dict[int, float] = field(default_factory=dict)
    _regexes: dict[str, re.Pattern] = field(default_factory=_compiled, repr=False)

    def feed(self, line: str) -> tuple[int, float] | None:
        """Parse one line; returns (epoch, objective value) when the line carries one."""
        found = {}
        for name, regex in self._regexes.items():
            match = regex.search(line)
            if match:
                found[name] = float(match.group(1))
                self.metrics.setdefault(name, []).append(found[name])
        if self.objective not in found:
            if f"{self.objective}=" in line:
                raise MetricRegexError(
                    f"the log line {line.strip()!r} names {self.objective} but its metric "
                    f"definition regex {self._regexes[self.objective].pattern!r} does not match "
                    "it; SageMaker would record no objective for this job"
                )
            return None
        epoch_match = _EPOCH.search(line)
        epoch = int(epoch_match.group(1)) if epoch_match else len(self.objective_by_epoch) + 1
        self.objective_by_epoch[epoch] = found[self.objective]
        return epoch, found[self.objective]

    def final(self, name: str) -> float | None:
        """The last value of a metric, as SageMaker's FinalMetricDataList keeps it."""
        values = self.metrics.get(name)
        return values[-1] if values else None
