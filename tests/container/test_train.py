"""`docker run IMAGE train` on a /opt/ml tree, as SageMaker runs it."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from classifier.constants import EXIT_SIGTERM
from tests.helpers import container_env_args

from .conftest import make_job_dir, remove_container, run, run_training, unique_name, wait_for

pytestmark = pytest.mark.docker

# SageMaker sends SIGKILL this long after SIGTERM (StopTrainingJob, spot interruption).
SAGEMAKER_GRACE_S = 120


def test_a_bad_hyperparameter_fails_the_job_with_a_reason(image, digits_data, tmp_path):
    job_dir = make_job_dir(tmp_path / "job", digits_data, {"optimizer": "not-an-optimizer"})
    result = run_training(image, job_dir, timeout=600)
    assert result.returncode != 0
    reason = (job_dir / "output" / "failure").read_text()
    assert "optimizer" in reason[:1024]


def test_docker_stop_checkpoints_and_exits_within_the_grace_period(image, digits_data, tmp_path):
    # Many short epochs on a little data: the job is surely mid-training when it is stopped.
    job_dir = make_job_dir(
        tmp_path / "job", digits_data, {"epochs": "1000", "image_size": "16"}, per_class=10
    )
    name = unique_name("ct-stop-train")
    run(
        [
            "docker",
            "run",
            "--detach",
            "--name",
            name,
            "--hostname",
            "algo-1",
            "--network",
            "none",
            "--volume",
            f"{job_dir}:/opt/ml",
            *container_env_args(),
            image,
            "train",
        ],
        timeout=120,
    )
    try:
        checkpoints = job_dir / "checkpoints"
        wait_for(
            lambda: checkpoints.is_dir() and any(checkpoints.iterdir()),
            timeout=900,
            what="the first checkpoint",
        )
        started = time.monotonic()
        run(
            ["docker", "stop", "--time", str(SAGEMAKER_GRACE_S), name],
            timeout=SAGEMAKER_GRACE_S + 60,
        )
        elapsed = time.monotonic() - started
        state = json.loads(run(["docker", "inspect", "--format", "{{json .State}}", name], timeout=60).stdout)
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True, timeout=60)
    finally:
        remove_container(name)
    assert not state["OOMKilled"]
    # 137 would mean docker had to SIGKILL it after the grace period.
    assert state["ExitCode"] == EXIT_SIGTERM, logs.stdout[-2000:] + logs.stderr[-2000:]
    assert elapsed < SAGEMAKER_GRACE_S
    assert any(checkpoints.iterdir())
    assert "SIGTERM" in (job_dir / "output" / "failure").read_text()[:1024]
