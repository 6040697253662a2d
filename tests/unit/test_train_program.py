"""The real ``train`` executable under the SageMaker contract, run as a process; the jobs that
fail before their first step run its ``main`` in this process (the same top-level handler, the
same failure file and exit code, without a second torch import)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from classifier.artifacts import load_model
from classifier.metric_definitions import METRIC_DEFINITIONS
from classifier.training.checkpoint import save_checkpoint
from classifier.training.hyperparameters import parse_hyperparameters
from tests.helpers import free_port, write_image_folder

pytestmark = pytest.mark.slow

# No serving export but where a test checks it: it costs seconds per job.
FAST = {
    "model": "resnet18", "image_size": 16, "batch_size": 8, "num_workers": 0, "augmentation": "none",
    "inference_export": "none",
}  # fmt: skip
CLASSES = {"cat": 12, "dog": 12, "fox": 12}


def run_train(base_dir: Path, repo_root: Path, extra_env: dict | None = None, timeout: float = 180):
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base_dir), **(extra_env or {})}
    return subprocess.run(
        [sys.executable, str(repo_root / "train")], env=env, capture_output=True, text=True, timeout=timeout
    )


def start_train(base_dir: Path, repo_root: Path, extra_env: dict | None = None) -> subprocess.Popen:
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base_dir), **(extra_env or {})}
    return subprocess.Popen(
        [sys.executable, str(repo_root / "train")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_main(monkeypatch, **env: str) -> int:
    """``train``'s main in this process (the opt_ml fixture points SAGEMAKER_BASE_DIR at the
    job's tree), with ``env`` set and SIGTERM left to pytest; its exit code."""
    from classifier.training import program

    monkeypatch.setattr(program.StopSignal, "install", lambda self: None)
    for name, value in {"SM_PROCESSES_PER_HOST": "1", **env}.items():
        monkeypatch.setenv(name, value)
    try:
        program.main()
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    return 0


def epoch_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("epoch=")]


@pytest.fixture
def job(opt_ml, tmp_path):
    data = write_image_folder(tmp_path / "data", CLASSES, size=(20, 20))
    for channel in ("train", "valid", "test"):
        opt_ml.channel(channel, data)
    return opt_ml


def test_job_writes_model_reports_and_parsable_metrics(job, repo_root):
    bad = job.root / "input/data/train/cat"
    (bad / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (bad / "notes.png").write_text("not an image")
    # With the Debugger hook on: its forward hooks once broke the export's trace, silently.
    job.hyperparameters(
        {
            **FAST, "epochs": 2, "max_skipped_fraction": 0.1, "sagemaker_region": "us-east-1",
            "inference_export": "openvino-int8", "debug": "true",
        }
    )  # fmt: skip

    result = run_train(job.root, repo_root)

    assert result.returncode == 0, result.stdout + result.stderr
    assert len(epoch_lines(result.stdout)) == 2
    # What the job resolved, defaults included, once at its start.
    output = (result.stdout + result.stderr).splitlines()
    resolved = [line for line in output if "resolved: hyperparameters" in line]
    assert len(resolved) == 1 and '"epochs": 2' in resolved[0] and '"seed": 42' in resolved[0]
    assert "rank 0 of 1" in resolved[0]
    assert [line for line in output if "exported for serving in" in line], "the export's log line"
    for definition in METRIC_DEFINITIONS:
        assert re.search(definition["Regex"], result.stdout, re.MULTILINE), definition["Name"]
    model, spec = load_model(job.root / "model")
    assert spec.class_names == ("cat", "dog", "fox") and spec.image_size == 16
    assert model(torch.zeros(1, 3, 16, 16)).shape == (1, 3)
    # The server's fast form, with its parity measured on the valid channel's images.
    openvino = spec.exports["openvino"]
    assert (job.root / "model" / openvino["file"]).is_file()
    assert openvino["parity"]["fp32"]["samples"] > 0 and openvino["parity"]["fp32"]["top1_agreement"] == 1.0
    assert set(openvino["parity"]) == {"fp32", "bf16", "int8"}
    assert (job.root / "model" / openvino["int8_file"]).is_file()
    output = job.root / "output/data"
    metrics = json.loads((output / "metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["skipped_files"]["train"] == 2
    skipped = json.loads((output / "skipped_files.json").read_text())
    assert sorted(Path(s["path"]).name for s in skipped["train"]) == ["broken.jpg", "notes.png"]
    test_report = json.loads((output / "test_report.json").read_text())
    assert len(test_report["confusion_matrix"]) == 3
    assert sum(map(sum, test_report["confusion_matrix"])) == sum(CLASSES.values())
    assert job.failure is None


def test_bad_hyperparameter_fails_fast_with_reason_first(job, monkeypatch):
    job.hyperparameters({"epochs": "zero", "optimizer": "lbfgs"})
    assert run_main(monkeypatch) == 1
    assert job.failure.startswith("HyperparameterError: hyperparameter epochs='zero' is invalid")
    assert "optimizer='lbfgs'" in job.failure.splitlines()[0]


def test_too_many_unreadable_images_fail_with_the_list(job, monkeypatch):
    (job.root / "input/data/train/dog/bad.jpg").write_bytes(b"garbage")
    job.hyperparameters({**FAST, "epochs": 1, "max_skipped_fraction": 0})
    assert run_main(monkeypatch) == 1
    assert job.failure.startswith("DataError: 1 of 37 files in channel train are unreadable")
    assert "bad.jpg" in job.failure.splitlines()[0]


def test_missing_class_in_valid_is_named(job, monkeypatch):
    import shutil

    shutil.rmtree(job.root / "input/data/valid/fox")
    job.hyperparameters({**FAST, "epochs": 1})
    assert run_main(monkeypatch) == 1
    assert job.failure.startswith("DataError: classes missing from valid: fox")


def test_sigterm_checkpoints_and_a_restart_resumes_to_the_same_epoch_count(job, repo_root):
    job.hyperparameters({**FAST, "epochs": 200})
    process = start_train(job.root, repo_root)
    lines = []
    for line in process.stdout:
        lines.append(line)
        if line.startswith("epoch=2 "):
            break
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    rest, _ = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, "".join(lines) + rest
    assert time.monotonic() - signalled < 60
    assert job.failure.startswith("TrainingInterrupted: SIGTERM during ")
    checkpoint = torch.load(job.root / "checkpoints/checkpoint.pt", weights_only=True)
    done = checkpoint["epoch"]
    assert done >= 2

    job.hyperparameters({**FAST, "epochs": done + 1})
    result = run_train(job.root, repo_root)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"resumed from checkpoint: epoch={done}" in result.stdout
    assert [line.split()[0] for line in epoch_lines(result.stdout)] == [f"epoch={done + 1}"]
    assert json.loads((job.root / "output/data/metrics.json").read_text())["epochs_run"] == done + 1
    assert job.failure is None


def _checkpoint_of(job, hyperparameters: dict) -> None:
    """The checkpoint a job with ``hyperparameters`` on this data would leave after epoch 1: only
    its identity is read before the refusal."""
    identity = {**parse_hyperparameters(hyperparameters).run_identity(), "class_names": sorted(CLASSES)}
    save_checkpoint(job.root / "checkpoints", {"identity": identity, "epoch": 1})


def test_checkpoint_of_another_model_is_refused(job, monkeypatch):
    # 64 px: squeezenet1_1 cannot take 16 px images (refused before any checkpoint is read).
    _checkpoint_of(job, {**FAST, "epochs": 1, "image_size": 64})
    job.hyperparameters({**FAST, "epochs": 2, "model": "squeezenet1_1", "image_size": 64})
    assert run_main(monkeypatch) == 1
    first_line = job.failure.splitlines()[0]
    assert first_line.startswith("CheckpointMismatchError: checkpoint"), first_line
    assert "(model differ" in first_line, first_line  # and nothing else: the identity is the job's


def test_checkpoint_of_a_run_with_other_hyperparameters_is_refused(job, monkeypatch):
    _checkpoint_of(job, {**FAST, "epochs": 1, "learning_rate": 0.01})
    job.hyperparameters({**FAST, "epochs": 2, "learning_rate": 0.02})
    assert run_main(monkeypatch) == 1
    first_line = job.failure.splitlines()[0]
    assert first_line.startswith("CheckpointMismatchError: checkpoint"), first_line
    assert "learning_rate differ" in first_line and "epochs" not in first_line, first_line


def test_pipe_input_mode_fails_the_job_naming_the_channel(job, monkeypatch):
    config = job.root / "input/config/inputdataconfig.json"
    config.write_text(config.read_text().replace('"File"', '"Pipe"'))
    job.hyperparameters({**FAST, "epochs": 1})
    assert run_main(monkeypatch) == 1
    assert job.failure.startswith("ContractError: channel 'test' uses TrainingInputMode=Pipe"), job.failure


def test_checkpoints_go_to_the_checkpointconfig_local_path(job, monkeypatch, tmp_path):
    local_path = tmp_path / "spot"
    (job.root / "input/config/checkpointconfig.json").write_text(
        json.dumps({"LocalPath": str(local_path), "S3Uri": "s3://bucket/checkpoints"})
    )
    job.hyperparameters({**FAST, "epochs": 1})
    assert run_main(monkeypatch) == 0, job.failure
    assert (local_path / "checkpoint.pt").exists()
    assert not (job.root / "checkpoints" / "checkpoint.pt").exists()
    # inference_export=none (FAST): the model PyTorch serves, nothing else.
    assert sorted(p.name for p in (job.root / "model").iterdir()) == ["model.pt", "model_config.json"]


class _Payload:
    """Unpickling this runs a shell command: what a hostile checkpoint.pt would carry."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_checkpoint_carrying_code_is_refused_and_not_run(job, monkeypatch, tmp_path):
    marker = tmp_path / "payload-ran"
    checkpoints = job.root / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    torch.save({"identity": {}, "epoch": 1, "trap": _Payload(marker)}, checkpoints / "checkpoint.pt")
    job.hyperparameters({**FAST, "epochs": 1})
    assert run_main(monkeypatch) == 1
    assert not marker.exists(), "the checkpoint's pickle payload was executed"
    first_line = job.failure.splitlines()[0]
    assert first_line.startswith("CheckpointUnreadableError: checkpoint"), first_line
    assert str(checkpoints / "checkpoint.pt") in first_line


def test_a_checkpoint_written_in_fp32_resumes_in_bf16_and_stays_fp32(job, monkeypatch, capsys):
    job.hyperparameters({**FAST, "epochs": 1, "precision": "fp32", "image_size": 32})
    assert run_main(monkeypatch) == 0, job.failure
    job.hyperparameters({**FAST, "epochs": 2, "precision": "bf16", "debug": "true", "image_size": 32})
    assert run_main(monkeypatch) == 0, job.failure
    assert "resumed from checkpoint: epoch=1" in capsys.readouterr().out
    metrics = json.loads((job.root / "output/data/metrics.json").read_text())
    assert metrics["epochs_run"] == 2 and metrics["precision"]["precision"] == "bf16"
    checkpoint = torch.load(job.root / "checkpoints/checkpoint.pt", weights_only=True)
    floats = [t for t in checkpoint["model"].values() if t.is_floating_point()]
    assert floats and {t.dtype for t in floats} == {torch.float32}
    optimizer_state = [t for s in checkpoint["optimizer"]["state"].values() for t in s.values() if t.dim()]
    assert optimizer_state and {t.dtype for t in optimizer_state} == {torch.float32}
    model, _ = load_model(job.root / "model")
    assert {p.dtype for p in model.parameters()} == {torch.float32}


def test_a_finished_tuning_trial_removes_its_checkpoints_and_a_training_job_keeps_them(job, monkeypatch):
    """All trials of a tuning job share one checkpoint prefix that SageMaker restores into each
    new trial: a finished trial's folder goes (and its deletion with it in S3)."""
    sibling = job.root / "checkpoints" / "tune-0001-running" / "checkpoint.pt"
    sibling.parent.mkdir(parents=True)
    sibling.write_bytes(b"a running sibling's checkpoint")
    job.hyperparameters({**FAST, "epochs": 1, "_tuning_objective_metric": "valid_accuracy"})
    assert run_main(monkeypatch, TRAINING_JOB_NAME="tune-0002-done") == 0, job.failure
    assert not (job.root / "checkpoints" / "tune-0002-done").exists()
    assert sibling.exists()

    job.hyperparameters({**FAST, "epochs": 1})
    assert run_main(monkeypatch, TRAINING_JOB_NAME="train-0003") == 0, job.failure
    assert (job.root / "checkpoints" / "checkpoint.pt").is_file()


def test_two_processes_on_one_host_train_one_ddp_job(job, repo_root, monkeypatch):
    # bf16 autocast and gradient clipping on every rank: emulated where the CPU has no bf16.
    job.hyperparameters({**FAST, "epochs": 2, "precision": "bf16", "clip_grad_norm": "1.0", "image_size": 32})
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    env = {"SM_PROCESSES_PER_HOST": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port())}
    result = run_train(job.root, repo_root, env)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "joining gloo process group: rank 0 of 2" in output
    assert "joining gloo process group: rank 1 of 2" in output
    # The host's cores shared out: rank 0 (which logs what it resolved) has its share only.
    threads = re.findall(r"rank 0 of 2; device cpu; (\d+) intra-op threads", output)
    assert len(threads) == 1 and int(threads[0]) <= max(1, len(os.sched_getaffinity(0)) // 2), output
    assert len(epoch_lines(result.stdout)) == 2
    metrics = json.loads((job.root / "output/data/metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["precision"]["precision"] == "bf16"


def test_two_hosts_join_one_job_and_only_the_master_writes(opt_ml, tmp_path, repo_root):
    data = write_image_folder(tmp_path / "data", CLASSES, size=(20, 20))
    hosts = ["algo-2", "algo-1"]
    port = str(free_port())
    trees = {}
    for host in hosts:
        from tests.unit.conftest import OptMl

        tree = OptMl(tmp_path / host)
        tree.resource_config(hosts, host).hyperparameters({**FAST, "epochs": 2})
        tree.channel("train", data)
        tree.channel("valid", data)
        trees[host] = tree
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
    processes = {host: start_train(trees[host].root, repo_root, env) for host in hosts}
    outputs = {host: p.communicate(timeout=240)[0] for host, p in processes.items()}
    for host, process in processes.items():
        assert process.returncode == 0, outputs[host]
    assert "rank 0 of 2" in outputs["algo-1"] and "rank 1 of 2" in outputs["algo-2"]
    # One datapoint per epoch for the tuner: only the global rank 0 prints metric lines.
    assert len(epoch_lines(outputs["algo-1"])) == 2
    assert epoch_lines(outputs["algo-2"]) == []
    assert (trees["algo-1"].root / "model/model.pt").exists()
    assert not (trees["algo-2"].root / "model/model.pt").exists()


def test_train_from_a_checkout_runs_under_a_python_without_torch(tmp_path, repo_root):
    """`SAGEMAKER_BASE_DIR=... ./train` in a fresh shell: the base interpreter hands over to .venv."""
    base_python = getattr(sys, "_base_executable", sys.executable)
    env = {"PATH": os.environ["PATH"], "SAGEMAKER_BASE_DIR": str(tmp_path), "HOME": str(tmp_path)}
    result = subprocess.run(
        [base_python, str(repo_root / "train")], env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert (tmp_path / "output" / "failure").read_text().startswith("ContractError: no 'train' channel")
