"""TensorBoard event files of a training job, where SageMaker syncs them to S3.

SageMaker uploads what the job writes under the ``LocalPath`` of its TensorBoard output
config (API reference, TensorBoardOutputConfig: "LocalPath — Path to local storage location
for tensorBoard output. Defaults to /opt/ml/output/tensorboard"), which it passes to the
container in ``/opt/ml/input/config/tensorboardoutputconfig.json`` as ``{"LocalPath": ...}``
(the file smdebug reads, ``smdebug.core.json_config.get_tensorboard_dir_from_json_config``).

Written: per epoch the losses, accuracies, learning rate and images per second; every
``log_steps`` steps the batch loss; at the end the profiler's CPU/GPU utilisation, the rule
verdicts (a text, and each rule's firing step as a scalar), the confusion matrix and the worst
mispredicted validation images as figures, and the hyperparameters with the final metrics
through the HParams plugin, so the trials of a tuning job compare in its dashboard.
"""

from __future__ import annotations

import logging
from pathlib import Path

from classifier.watching.base import JobEnd, JobFacts, JobWatcher

logger = logging.getLogger(__name__)

# How the HParams plugin shows a hyperparameter: numbers and text as they are, anything else as text.
_HPARAM_TYPES = (bool, int, float, str)


class TensorBoardWatcher(JobWatcher):
    """Event files in ``log_dir`` through torch's SummaryWriter (flushed every few seconds)."""

    name = "TensorBoard"

    def __init__(self, log_dir: Path, flush_secs: int = 10):
        from torch.utils.tensorboard import SummaryWriter

        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(str(self.log_dir), flush_secs=flush_secs)
        self._facts: JobFacts | None = None
        self._epoch = 0
        self._last_epoch: dict[str, float] = {}
        self._session_written = False

    def start(self, facts: JobFacts) -> None:
        self._facts = facts
        text = "\n".join(f"    {key}: {value}" for key, value in sorted(facts.hyperparameters.items()))
        self.writer.add_text("job", f"    job: {facts.job_name}\n    instance: {facts.instance_type}\n{text}")
        logger.info("TensorBoard event files go to %s", self.log_dir)

    def step(self, step: int, loss: float) -> None:
        self.writer.add_scalar("train/batch_loss", loss, step)

    def epoch(self, epoch: int, values: dict[str, float]) -> None:
        self._epoch = epoch
        self._last_epoch = dict(values)
        for name, value in values.items():
            self.writer.add_scalar(_tag(name), value, epoch)

    def rules(self, results: list, profile: dict | None) -> None:
        lines = [f"    {result}" for result in results] or [
            "    no Debugger rule ran (hyperparameter debug=false)"
        ]
        self.writer.add_text("debugger/rules", "\n".join(lines), self._epoch)
        if results:
            for result in results:
                if result.fired_at_step is not None:
                    self.writer.add_scalar(f"debugger/fired_at_step/{result.rule}", result.fired_at_step, 0)
        timelines = (profile or {}).get("timelines") or {}
        times = timelines.get("time_seconds") or []
        series = {"profiler/cpu_percent": timelines.get("cpu_percent") or []}
        for gpu, values in enumerate(timelines.get("gpu_util_percent") or []):
            series[f"profiler/gpu{gpu}_util_percent"] = values
        for tag, values in series.items():
            for second, value in zip(times, values, strict=False):
                self.writer.add_scalar(tag, value, int(round(second)))

    def finish(self, end: JobEnd) -> None:
        for name, figure in end.figures.items():
            self.writer.add_figure(name, figure, self._epoch, close=False)
        if self._facts is not None:
            # The last epoch's metrics too: a trial stopped early has only those (see close).
            self._write_hparams(self._facts, {**self._last_epoch, **end.metrics})
        self.writer.flush()

    def _write_hparams(self, facts: JobFacts, metrics: dict[str, float]) -> None:
        """The HParams session in this run's own event file (SummaryWriter.add_hparams would open
        a second run in a subfolder), so each job or trial is one row of the dashboard."""
        from torch.utils.tensorboard.summary import hparams

        values = {k: _hparam(v) for k, v in facts.hyperparameters.items()}
        final = {f"final/{k}": float(v) for k, v in metrics.items() if isinstance(v, (int, float))}
        experiment, session_start, session_end = hparams(values, final)
        file_writer = self.writer.file_writer
        assert file_writer is not None, "SummaryWriter opens its file writer when it is made"
        for summary in (experiment, session_start, session_end):
            file_writer.add_summary(summary)
        self._session_written = True
        for tag, value in final.items():
            self.writer.add_scalar(tag, value, self._epoch)

    def close(self) -> list[str]:
        """A job that ends before its finish (stopped, pruned by the tuner, failed) still gets its
        HParams session, with its last epoch's metrics, so every trial is a row of the dashboard."""
        if not self._session_written and self._facts is not None and self._last_epoch:
            self._write_hparams(self._facts, self._last_epoch)
        self.writer.close()
        return []


def _hparam(value):
    """A value the HParams plugin shows as it is: true/false as text (not 1.0/0.0), numbers, text."""
    if isinstance(value, bool):
        return str(value).lower()
    return value if isinstance(value, _HPARAM_TYPES) else str(value)


def _tag(name: str) -> str:
    """``train_loss`` → ``train/loss``, ``learning_rate`` → ``train/learning_rate``: one
    TensorBoard section per split."""
    split, _, rest = name.partition("_")
    if split in ("train", "valid", "test") and rest:
        return f"{split}/{rest}"
    return f"train/{name}"
