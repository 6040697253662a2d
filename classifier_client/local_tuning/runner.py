"""One trial = one training job of the image, run under the container contract SageMaker uses.

``docker run IMAGE train`` with the job's own ``/opt/ml`` tree bind-mounted: the
``input/config`` files SageMaker writes (hyperparameters as strings, the channels, the
hosts), each channel mounted read-only at ``/opt/ml/input/data/<channel>``, and the job's
own ``model/``, ``output/`` and ``checkpoints/``. The container's log streams through the
metric regexes as it is written. Stopping a job is SageMaker's StopTrainingJob: SIGTERM,
then SIGKILL after a grace period; the program checkpoints and exits 143.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from classifier.constants import (
    FAILURE_FILE,
    INPUT_DATA_DIR,
    MODEL_DIR,
    OUTPUT_DIR,
    TRAINING_JOB_NAME_ENV,
    TUNING_OBJECTIVE_KEY,
)
from classifier.metric_definitions import OBJECTIVE_METRIC
from classifier.opt_ml import HOST, write_job_config
from classifier_client.local_tuning.logs import LogMetrics, MetricRegexError

# SageMaker's StopTrainingJob: "SIGTERM ... waits for 120 seconds ... then SIGKILL".
STOP_GRACE_SECONDS = 120


@dataclass(frozen=True)
class TrialJob:
    """A training job of a trial: its name, its /opt/ml tree and its string hyperparameters."""

    name: str
    job_dir: Path
    hyperparameters: dict[str, str]

    @property
    def log_path(self) -> Path:
        return self.job_dir.parent / f"{self.name}.log"

    @property
    def model_dir(self) -> Path:
        return self.job_dir / MODEL_DIR


@dataclass
class TrialOutcome:
    exit_code: int
    stop_requested: bool
    metrics: LogMetrics
    seconds: float
    failure: str | None = None
    regex_error: str | None = None

    @property
    def completed(self) -> bool:
        return self.exit_code == 0 and self.regex_error is None


# Called with (epoch, objective value) for every objective line; True stops the job.
ObjectiveCallback = Callable[[int, float], bool]


def per_trial_cpus(max_parallel_jobs: int, cores: int | None = None) -> int:
    """This machine's cores shared by the trials that run at once (at least one each)."""
    return max(1, (cores or os.cpu_count() or 1) // max_parallel_jobs)


@dataclass
class DockerTrialRunner:
    image: str
    channels: Mapping[str, str]
    cpus: int = 1
    environment: Mapping[str, str] = field(default_factory=dict)
    # On the host's network: a tracking server on this machine's loopback (local_tuning.tracking).
    host_network: bool = False
    _running: dict[str, subprocess.Popen] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def prepare(self, job: TrialJob) -> None:
        """The /opt/ml tree of a new attempt: fresh config, model and output; checkpoints kept,
        so an interrupted trial resumes from its last epoch as a restarted spot job does."""
        for sub in (MODEL_DIR, OUTPUT_DIR):
            shutil.rmtree(job.job_dir / sub, ignore_errors=True)
            (job.job_dir / sub).mkdir(parents=True)
        hyperparameters = {**job.hyperparameters, TUNING_OBJECTIVE_KEY: OBJECTIVE_METRIC}
        write_job_config(job.job_dir, hyperparameters, self.channels)
        for channel in self.channels:
            (job.job_dir / INPUT_DATA_DIR / channel).mkdir(parents=True, exist_ok=True)

    def _mounts(self, job: TrialJob) -> list[str]:
        args = ["--volume", f"{job.job_dir.resolve()}:/opt/ml"]
        for channel, source in sorted(self.channels.items()):
            path = Path(source).expanduser().resolve()
            target = f"/opt/ml/{INPUT_DATA_DIR}/{channel}"
            if path.is_file():  # an archive: the channel folder holds that one file
                target = f"{target}/{path.name}"
            args += ["--volume", f"{path}:{target}:ro"]
        return args

    def command(self, job: TrialJob) -> list[str]:
        env = {"OMP_NUM_THREADS": str(self.cpus), TRAINING_JOB_NAME_ENV: job.name}
        env.update(self.environment)
        env_args = [arg for key, value in env.items() for arg in ("--env", f"{key}={value}")]
        network = ["--network", "host"] if self.host_network else ["--hostname", HOST]
        return [
            "docker", "run", "--rm", "--name", job.name, *network,
            "--sig-proxy=false", "--cpus", str(self.cpus), *env_args, *self._mounts(job),
            self.image, "train",
        ]  # fmt: skip

    def run(self, job: TrialJob, on_objective: ObjectiveCallback) -> TrialOutcome:
        """Run the job to its end; ``on_objective`` sees each epoch's objective as it streams."""
        self.prepare(job)
        # A container left behind by a killed tuner would hold the name.
        subprocess.run(["docker", "rm", "--force", job.name], capture_output=True, check=False)
        started = time.monotonic()
        metrics, stop_requested, regex_error = LogMetrics(), False, None
        # Its own session: a Ctrl-C in the terminal reaches the tuner, which stops the jobs
        # with SIGTERM (their checkpoint path), not the docker client.
        process = subprocess.Popen(
            self.command(job),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        assert process.stdout is not None, "stdout=PIPE"
        with self._lock:
            self._running[job.name] = process
        try:
            with job.log_path.open("a") as log:
                for line in process.stdout:
                    log.write(line)
                    log.flush()
                    try:
                        parsed = metrics.feed(line)
                    except MetricRegexError as error:
                        regex_error = str(error)
                        parsed = None
                        stop_requested = stop_requested or self.stop(job.name)
                    if parsed and not stop_requested and on_objective(*parsed):
                        stop_requested = self.stop(job.name)
            exit_code = process.wait()
        finally:
            with self._lock:
                self._running.pop(job.name, None)
        failure_file = job.job_dir / FAILURE_FILE
        failure = failure_file.read_text()[:2048] if failure_file.exists() else None
        return TrialOutcome(
            exit_code, stop_requested, metrics, time.monotonic() - started, failure, regex_error
        )

    def stop(self, name: str) -> bool:
        """StopTrainingJob: SIGTERM now, SIGKILL after the grace period (in the background)."""
        subprocess.Popen(
            ["docker", "stop", "--time", str(STOP_GRACE_SECONDS), name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        return True

    def stop_all(self) -> list[str]:
        with self._lock:
            names = list(self._running)
        for name in names:
            self.stop(name)
        return names
