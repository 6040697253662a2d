"""The multi-model registry and app through Flask's test client: failed loads, and the loaded set
outliving a worker (its table, restored by the next worker)."""

from __future__ import annotations

import threading

import pytest

from classifier.serving.model_table import ModelTable
from classifier.serving.multi_model import ModelRegistry
from classifier.serving.multi_model_app import create_multi_model_app
from classifier.serving.predictor import Predictor
from tests.archive_corpus import REFUSED, escaped_files, jail

from .conftest import encode, photo

BUDGET = 8 * 2**30
PNG = {"Content-Type": "image/png"}


def load_predictor(model_dir):
    return Predictor.load(model_dir, "cpu", max_batch_size=2)


def app_for(registry: ModelRegistry, settings):
    return create_multi_model_app(registry, settings).test_client()


def micro_batchers() -> int:
    return sum(thread.name == "micro-batcher" and thread.is_alive() for thread in threading.enumerate())


@pytest.mark.parametrize(
    "error",
    [
        MemoryError(),
        RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory"),
        RuntimeError("std::bad_alloc"),
        OSError(28, "No space left on device"),
    ],
)
def test_a_load_out_of_a_resource_is_507_and_leaves_no_model(error, settings, base_dir):
    def failing(model_dir):
        raise error

    client = app_for(ModelRegistry(failing, BUDGET), settings)
    response = client.post("/models", json={"model_name": "m", "url": str(base_dir / "model")})
    assert response.status_code == 507, response.json
    assert "out of a resource" in response.json["error"]
    assert client.get("/models").json == {"models": []}


def test_any_other_load_fault_is_a_500_with_a_request_id(settings, base_dir):
    def failing(model_dir):
        raise ValueError("a bug")

    client = app_for(ModelRegistry(failing, BUDGET), settings)
    response = client.post("/models", json={"model_name": "m", "url": str(base_dir / "model")})
    assert response.status_code == 500 and "request_id" in response.json
    assert client.get("/models").json == {"models": []}


def test_a_failed_warm_up_leaves_no_micro_batcher_behind(base_dir, monkeypatch):
    def failing_warm_up(self):
        raise MemoryError

    before = micro_batchers()
    monkeypatch.setattr(Predictor, "warm_up", failing_warm_up)
    with pytest.raises(MemoryError):
        load_predictor(base_dir / "model")
    assert micro_batchers() == before


def test_a_replacement_worker_loads_what_the_dead_one_had_loaded(settings, base_dir, tmp_path):
    table = ModelTable(tmp_path)
    first = ModelRegistry(load_predictor, BUDGET, table=table)
    client = app_for(first, settings)
    url = str(base_dir / "model")
    for name in ("a", "b"):
        assert client.post("/models", json={"model_name": name, "url": url}).status_code == 200
    assert client.delete("/models/b").status_code == 200
    assert client.post("/models", json={"model_name": "c", "url": url}).status_code == 200

    # The next worker: its own registry, the same table. Until restored, /ping is red and an
    # invoke of a restoring model waits for it.
    release = threading.Event()

    def slow_load(model_dir):
        release.wait(60)
        return load_predictor(model_dir)

    second = ModelRegistry(slow_load, BUDGET, table=ModelTable(tmp_path), wait_s=60)
    replacement = app_for(second, settings)
    second.restore(wait=False)
    try:
        assert second.restoring
        assert replacement.get("/ping").status_code == 503
        listed = replacement.get("/models").json["models"]
        assert [m["modelName"] for m in listed] == ["a", "c"]
        assert replacement.post("/models", json={"model_name": "a", "url": "/x"}).status_code == 409
    finally:
        release.set()
    image = encode(photo(), "PNG")
    for name in ("a", "c"):
        assert replacement.post(f"/models/{name}/invoke", data=image, headers=PNG).status_code == 200
    assert replacement.post("/models/b/invoke", data=image, headers=PNG).status_code == 404
    assert replacement.get("/ping").status_code == 200
    assert table.entries() == {"a": url, "c": url}
    first.close()
    second.close()
    assert table.entries() == {}


def test_a_model_that_no_longer_loads_is_dropped_from_the_table(settings, base_dir, tmp_path):
    table = ModelTable(tmp_path)
    table.add("gone", str(tmp_path / "missing"))
    table.add("kept", str(base_dir / "model"))
    registry = ModelRegistry(load_predictor, BUDGET, table=table)
    registry.restore()
    assert registry.names() == ["kept"] and not registry.restoring
    assert table.entries() == {"kept": str(base_dir / "model")}
    registry.close()


@pytest.mark.parametrize("case", [c for c in REFUSED if not c.is_zip], ids=lambda case: case.name)
def test_a_multi_model_load_of_a_crafted_archive_is_refused_and_serving_goes_on(tmp_path, case, settings):
    folder = jail(tmp_path)
    archive = case.build(folder)
    model_dir = folder / "model"
    model_dir.mkdir()
    archive.rename(model_dir / "model.tar.gz")
    client = app_for(ModelRegistry(load_predictor, BUDGET), settings)
    response = client.post("/models", json={"model_name": "crafted", "url": str(model_dir)})
    assert response.status_code == 500, response.json  # a model that fails to load, as any other
    assert repr(case.refused_member) in response.json["error"]
    assert client.get("/ping").status_code == 200
    assert escaped_files(tmp_path) == []
