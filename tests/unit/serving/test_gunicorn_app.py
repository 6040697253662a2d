"""The gunicorn layout up to the process boundary: slots, GPUs per worker, load failures."""

from __future__ import annotations

import tarfile
from types import SimpleNamespace

import pytest
import torch
from gunicorn.arbiter import Arbiter

from classifier.artifacts import load_model_spec
from classifier.serving import app as single_model_app
from classifier.serving.app import build_single_model_app
from classifier.serving.config import ServingSettings
from classifier.serving.gunicorn_app import ServingApplication
from classifier.serving.predictor import Predictor

from .conftest import CLASS_NAMES, encode, photo, settings_for


def fake_worker(age: int):
    return SimpleNamespace(age=age)


@pytest.fixture
def application(base_dir):
    settings = settings_for(base_dir, SAGEMAKER_MODEL_SERVER_WORKERS=2)
    return ServingApplication(settings, load_model_spec(settings.model_dir))


def test_gunicorn_reads_the_settings(application):
    cfg = application.cfg
    assert cfg.workers == 2
    assert cfg.worker_class_str == "gthread"
    assert cfg.timeout == 60 and cfg.graceful_timeout == 25
    # Each worker opens its own SO_REUSEPORT socket on the port (test_process: connections reach both).
    assert cfg.bind == ["0.0.0.0:8080"] and cfg.reuse_port
    assert cfg.control_socket_disable


def test_workers_get_free_slots_and_release_them(application):
    first, second, extra = fake_worker(1), fake_worker(2), fake_worker(3)
    for worker in (first, second, extra):
        application.pre_fork(None, worker)
    assert (first.serving_slot, second.serving_slot, extra.serving_slot) == (0, 1, None)

    application.busy_flags[0] = 1
    application.child_exit(None, first)  # died while busy
    assert application.busy_flags[0] == 0
    replacement = fake_worker(4)
    application.pre_fork(None, replacement)
    assert replacement.serving_slot == 0

    application.post_fork(None, replacement)
    assert application.worker_slot == 0


def test_one_worker_listens_on_the_masters_socket(base_dir):
    settings = settings_for(base_dir, SAGEMAKER_MODEL_SERVER_WORKERS=1)
    application = ServingApplication(settings, load_model_spec(settings.model_dir))
    assert application.cfg.bind == ["0.0.0.0:8080"] and not application.cfg.reuse_port


def test_master_does_not_initialise_cuda(application):
    assert not torch.cuda.is_initialized()


@pytest.mark.parametrize(("slot", "device"), [(0, "cuda:0"), (1, "cuda:1"), (2, "cuda:0")])
def test_one_gpu_per_worker(monkeypatch, base_dir, slot, device):
    settings = ServingSettings.from_env({"SAGEMAKER_BASE_DIR": str(base_dir)}, cpu_count=8, gpu_count=2)
    chosen = {}
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: chosen.setdefault("set", d))

    def fake_load(model_dir, device, **options):
        chosen["load"] = device
        chosen["options"] = options
        return SimpleNamespace(spec=None)

    monkeypatch.setattr(Predictor, "load", fake_load)
    monkeypatch.setattr(single_model_app, "create_app", lambda predictor, settings: "app")
    previous = torch.get_num_threads()
    try:
        assert build_single_model_app(settings, slot, None, slot) == "app"
    finally:
        torch.set_num_threads(previous)
    assert chosen["set"] == chosen["load"] == device
    assert chosen["options"]["budget"].fixed_threads == 4  # 8 cores / 2 workers
    assert chosen["options"]["max_batch_size"] == 32


def test_a_model_that_fails_to_load_halts_the_server(tmp_path, caplog):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "model_config.json").write_text(
        '{"architecture": "resnet18", "class_names": ["a", "b"], "image_size": 32}'
    )
    settings = settings_for(tmp_path)
    previous = torch.get_num_threads()
    try:
        with pytest.raises(SystemExit) as exit_info:
            build_single_model_app(settings, 0, None, 0)
    finally:
        torch.set_num_threads(previous)
    assert exit_info.value.code == Arbiter.WORKER_BOOT_ERROR
    assert "no model.pt" in caplog.text


def test_a_model_tar_gz_dropped_in_the_model_dir_is_served(tmp_path, base_dir):
    (tmp_path / "model").mkdir()
    with tarfile.open(tmp_path / "model" / "model.tar.gz", "w:gz") as archive:
        for path in (base_dir / "model").iterdir():
            archive.add(path, arcname=path.name)
    previous = torch.get_num_threads()
    try:
        app = build_single_model_app(settings_for(tmp_path), None, None, 0)
    finally:
        torch.set_num_threads(previous)
    client = app.test_client()
    assert client.get("/ping").status_code == 200
    body = encode(photo(), "PNG")
    response = client.post("/invocations", data=body, headers={"Content-Type": "image/png"})
    assert [p["label"] for p in response.json["predictions"]][0] in CLASS_NAMES
