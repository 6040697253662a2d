"""Worker/thread layout and every serving environment variable, on injected machines."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from classifier.serving.config import (
    ServingConfigError,
    ServingSettings,
    available_cpus,
    visible_gpus,
)
from classifier.serving.gunicorn_app import gunicorn_options


def settings(env=None, cpus=2, gpus=0) -> ServingSettings:
    return ServingSettings.from_env(env or {}, cpu_count=cpus, gpu_count=gpus)


def test_defaults_on_a_two_core_machine():
    s = settings()
    assert s.model_dir == Path("/opt/ml/model")
    assert (s.bind_host, s.port) == ("0.0.0.0", 8080)
    assert s.device == "cpu"
    assert s.workers == 2
    assert s.adaptive_threads and s.threads_when_alone() == 2
    assert s.timeout_s == 60
    assert s.graceful_timeout_s < 30
    assert s.max_payload_bytes == 6 * 1024 * 1024
    assert s.batch_strategy == "MULTI_RECORD"
    assert s.max_batch_size == 8 and s.max_batch_delay_ms == 0
    assert s.worker_threads >= s.max_batch_size + 1, "a thread must stay free for /ping"


def test_base_dir_moves_the_model_dir():
    assert settings({"SAGEMAKER_BASE_DIR": "/tmp/x"}).model_dir == Path("/tmp/x/model")


@pytest.mark.parametrize(("cpus", "workers"), [(1, 1), (2, 2), (4, 4), (96, 4)])
def test_cpu_workers_never_oversubscribe(cpus, workers):
    s = settings(cpus=cpus)
    assert s.workers == workers
    # A worker alone gets every core; all busy, each gets cpus // workers (see ThreadBudget).
    assert s.threads_when_alone() == cpus
    assert s.workers * max(1, cpus // s.workers) <= cpus


def test_one_worker_per_gpu_and_cpu_threads_split():
    s = settings(cpus=16, gpus=4)
    assert (s.device, s.workers, s.torch_threads, s.max_batch_size) == ("cuda", 4, 4, 32)


def test_cpu_can_be_forced_on_a_gpu_machine():
    s = settings({"CLASSIFIER_DEVICE": "cpu"}, cpus=8, gpus=2)
    assert (s.device, s.workers) == ("cpu", 4)


def test_cuda_without_gpu_is_refused():
    with pytest.raises(ServingConfigError, match="CLASSIFIER_DEVICE"):
        settings({"CLASSIFIER_DEVICE": "cuda"}, gpus=0)


def test_sagemaker_overrides():
    s = settings(
        {
            "SAGEMAKER_MODEL_SERVER_WORKERS": "3",
            "SAGEMAKER_MODEL_SERVER_TIMEOUT": "300",
            "SAGEMAKER_BIND_TO_PORT": "9090",
            "SAGEMAKER_MAX_PAYLOAD_IN_MB": "20",
            "SAGEMAKER_BATCH_STRATEGY": "SingleRecord",
        }
    )
    assert (s.workers, s.timeout_s, s.port, s.max_payload_mb) == (3, 300, 9090, 20)
    assert s.batch_strategy == "SINGLE_RECORD"


def test_timeout_is_at_least_sagemakers_60_s():
    assert settings({"SAGEMAKER_MODEL_SERVER_TIMEOUT": "10"}).timeout_s == 60


def test_own_overrides():
    s = settings(
        {
            "CLASSIFIER_TORCH_THREADS": "1",
            "CLASSIFIER_MAX_BATCH_SIZE": "1",
            "CLASSIFIER_MAX_BATCH_DELAY_MS": "5",
            "CLASSIFIER_WORKER_THREADS": "3",
            "CLASSIFIER_MAX_IMAGE_PIXELS": "1000",
            "CLASSIFIER_LOG_LEVEL": "debug",
        }
    )
    assert (s.torch_threads, s.max_batch_size, s.max_batch_delay_ms) == (1, 1, 5.0)
    assert (s.worker_threads, s.max_image_pixels, s.log_level) == (3, 1000, "DEBUG")
    assert not s.adaptive_threads


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SAGEMAKER_MODEL_SERVER_WORKERS", "0"),
        ("SAGEMAKER_MODEL_SERVER_WORKERS", "two"),
        ("SAGEMAKER_MODEL_SERVER_TIMEOUT", "-1"),
        ("SAGEMAKER_BIND_TO_PORT", "70000"),
        ("SAGEMAKER_MAX_PAYLOAD_IN_MB", "0"),
        ("SAGEMAKER_BATCH_STRATEGY", "ALL"),
        ("CLASSIFIER_MAX_BATCH_SIZE", "0"),
        ("CLASSIFIER_MAX_BATCH_DELAY_MS", "5000"),
        ("CLASSIFIER_DEVICE", "tpu"),
        ("CLASSIFIER_LOG_LEVEL", "loud"),
    ],
)
def test_bad_values_name_the_variable(name, value):
    with pytest.raises(ServingConfigError, match=name):
        settings({name: value})


def test_cgroup_quota_caps_the_cpu_count(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert available_cpus(str(tmp_path)) == min(2, available_cpus("/nonexistent"))
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert available_cpus(str(tmp_path)) == available_cpus("/nonexistent")


def test_gunicorn_options():
    s = settings({"SAGEMAKER_MODEL_SERVER_WORKERS": "3"})
    options = gunicorn_options(s)
    assert options["bind"] == ["0.0.0.0:8080"] and options["reuse_port"]
    assert options["workers"] == 3
    assert options["worker_class"] == "gthread"
    assert options["threads"] == s.worker_threads
    assert options["timeout"] >= 60
    assert options["graceful_timeout"] < 30
    assert options["preload_app"] is False


def test_no_nvidia_device_nodes_means_no_gpu_and_no_probe(tmp_path, monkeypatch):
    def no_probe(*args, **kwargs):
        raise AssertionError("no probe process without /dev/nvidia*")

    monkeypatch.setattr("subprocess.run", no_probe)
    assert visible_gpus(str(tmp_path)) == 0


def test_gpus_are_counted_in_a_child_process(tmp_path, monkeypatch):
    (tmp_path / "nvidia0").touch()
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 0, stdout="2\n", stderr="")

    monkeypatch.setattr("subprocess.run", fake_run)
    assert visible_gpus(str(tmp_path)) == 2
    assert "torch.cuda.device_count()" in calls[0][-1]
