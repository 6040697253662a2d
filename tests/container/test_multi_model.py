"""A multi-model endpoint driven the way SageMaker drives it: `docker run IMAGE serve` with
SAGEMAKER_MULTI_MODEL=true, models under /opt/ml/models/<name>/model, and the container API
(load, list, get, invoke, unload) of "Custom containers contract for multi-model endpoints".

Two models trained on different class sets (digits 0-9: the session's training job, and 5-9)
must each answer with their own class names; one is a model folder, the other a model.tar.gz.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import requests

from tests.helpers import free_port

from .conftest import (
    SERVE_START_TIMEOUT_S,
    make_job_dir,
    remove_container,
    run,
    run_training,
    unique_name,
    wait_for,
)

pytestmark = pytest.mark.docker

ALL_DIGITS = tuple(str(digit) for digit in range(10))
LOW_DIGITS = ("0", "1", "2", "3", "4")
HIGH_DIGITS = ("5", "6", "7", "8", "9")
# The IR without the int8 model: the multi-model server runs it, NNCF would add seconds per job.
TINY_JOB = {"epochs": "3", "batch_size": "32", "image_size": "32", "inference_export": "openvino"}
# Fits two ResNet-18s and the server (~0.8 GB measured), not a model announcing 2 GB of weights.
BUDGET_MB = 2000
HUGE_WEIGHTS_BYTES = 2 * 2**30
TARGET_MODEL = "X-Amzn-SageMaker-Target-Model"


def _digits_subset(digits_data: Path, classes: tuple[str, ...], out: Path) -> Path:
    for split in ("train", "valid", "test"):
        for label in classes:
            shutil.copytree(digits_data / split / label, out / split / label)
    return out


def _train(image: str, digits_data: Path, classes: tuple[str, ...], root: Path) -> Path:
    data = _digits_subset(digits_data, classes, root / "data")
    job_dir = make_job_dir(root / "job", data, TINY_JOB)
    result = run_training(image, job_dir, 1200)
    assert result.returncode == 0, f"training failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return job_dir / "model"


@pytest.fixture(scope="module")
def models_root(image, trained_job, digits_data, tmp_path_factory) -> Path:
    """/opt/ml/models as SageMaker lays it out: digits/model (a folder), high/model (model.tar.gz),
    huge/model (weights announcing more memory than the budget holds)."""
    root = tmp_path_factory.mktemp("models")
    digits = trained_job[0] / "model"
    high = _train(image, digits_data, HIGH_DIGITS, tmp_path_factory.mktemp("high"))
    shutil.copytree(digits, root / "digits" / "model")
    (root / "high" / "model").mkdir(parents=True)
    with tarfile.open(root / "high" / "model" / "model.tar.gz", "w:gz") as archive:
        for path in high.iterdir():
            archive.add(path, arcname=path.name)
    huge = root / "huge" / "model"
    shutil.copytree(digits, huge)
    with open(huge / "model.pt", "r+b") as weights:  # sparse: costs no disk
        weights.truncate(HUGE_WEIGHTS_BYTES)
    return root


@pytest.fixture(scope="module")
def endpoint(image, models_root) -> str:
    port, name = free_port(), unique_name("ct-mme")
    run(
        [
            "docker", "run", "--detach", "--name", name,
            "--publish", f"127.0.0.1:{port}:8080",
            "--volume", f"{models_root}:/opt/ml/models:ro",
            "--env", "SAGEMAKER_MULTI_MODEL=true",
            "--env", f"CLASSIFIER_MULTI_MODEL_MEMORY_MB={BUDGET_MB}",
            image, "serve",
        ],
        timeout=120,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            return requests.get(f"{url}/ping", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    try:
        wait_for(healthy, SERVE_START_TIMEOUT_S, "/ping of the multi-model server")
        yield url
    finally:
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True, timeout=60)
        (models_root.parent / f"{name}.log").write_text(logs.stdout + logs.stderr)
        remove_container(name)


def _invoke(url: str, name: str, image: Path) -> requests.Response:
    return requests.post(
        f"{url}/models/{name}/invoke",
        data=image.read_bytes(),
        headers={"Content-Type": "image/png", TARGET_MODEL: f"{name}.tar.gz"},
        timeout=60,
    )


def _top_labels(url: str, name: str, images: list[Path]) -> list[str]:
    answers = []
    for path in images:
        response = _invoke(url, name, path)
        assert response.status_code == 200, response.text
        answers.append(response.json()["predictions"][0]["label"])
    return answers


def test_the_image_declares_multi_model_support(image):
    labels = json.loads(
        run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", image], 60).stdout
    )
    assert labels["com.amazonaws.sagemaker.capabilities.multi-models"] == "true"


def test_the_sequence_sagemaker_drives(endpoint, digits_data):
    url = endpoint
    # Green with no model: SageMaker loads models only when they are first invoked.
    assert requests.get(f"{url}/ping", timeout=10).status_code == 200
    assert requests.get(f"{url}/models", timeout=10).json() == {"models": []}

    for name in ("digits", "high"):
        response = requests.post(
            f"{url}/models", json={"model_name": name, "url": f"/opt/ml/models/{name}/model"}, timeout=300
        )
        assert response.status_code == 200, response.text
    again = requests.post(
        f"{url}/models", json={"model_name": "digits", "url": "/opt/ml/models/digits/model"}, timeout=60
    )
    assert again.status_code == 409

    low_images = [sorted((digits_data / "test" / d).glob("*.png"))[0] for d in LOW_DIGITS]
    high_images = [sorted((digits_data / "test" / d).glob("*.png"))[0] for d in HIGH_DIGITS]
    digits_answers = _top_labels(url, "digits", low_images + high_images)
    high_answers = _top_labels(url, "high", high_images)
    # Each model answers with its own class map only, and mostly right: "high" has no 0-4, so
    # even a low digit gets a high label from it.
    right = sum(a == d for a, d in zip(digits_answers, LOW_DIGITS + HIGH_DIGITS, strict=True))
    assert right >= 9, digits_answers
    assert sum(a == d for a, d in zip(high_answers, HIGH_DIGITS, strict=True)) >= 4, high_answers
    assert set(_top_labels(url, "high", low_images)) <= set(HIGH_DIGITS)

    listed = requests.get(f"{url}/models", timeout=10).json()
    assert listed == {
        "models": [
            {"modelName": "digits", "modelUrl": "/opt/ml/models/digits/model"},
            {"modelName": "high", "modelUrl": "/opt/ml/models/high/model"},
        ]
    }
    described = requests.get(f"{url}/models/high", timeout=10).json()
    assert described["modelName"] == "high" and described["numClasses"] == 5
    assert requests.get(f"{url}/models/digits", timeout=10).json()["numClasses"] == len(ALL_DIGITS)

    unloaded = requests.delete(f"{url}/models/high", timeout=60)
    assert unloaded.status_code == 200, unloaded.text
    assert requests.get(f"{url}/models/high", timeout=10).status_code == 404
    assert _invoke(url, "high", high_images[0]).status_code == 404
    assert requests.delete(f"{url}/models/high", timeout=10).status_code == 404

    # Over the budget: refused with 507 (SageMaker then unloads unused models), never killed.
    refused = requests.post(
        f"{url}/models", json={"model_name": "huge", "url": "/opt/ml/models/huge/model"}, timeout=60
    )
    assert refused.status_code == 507, refused.text
    assert "CLASSIFIER_MULTI_MODEL_MEMORY_MB" in refused.json()["error"]
    assert requests.get(f"{url}/ping", timeout=10).status_code == 200
    assert _top_labels(url, "digits", low_images[:1]) == digits_answers[:1]


def test_errors_are_those_of_invocations(endpoint):
    url = endpoint
    requests.post(
        f"{url}/models", json={"model_name": "digits", "url": "/opt/ml/models/digits/model"}, timeout=300
    )
    wrong_type = requests.post(
        f"{url}/models/digits/invoke", data=b"hi", headers={"Content-Type": "text/plain"}, timeout=10
    )
    assert wrong_type.status_code == 415 and "error" in wrong_type.json()
    not_an_image = requests.post(
        f"{url}/models/digits/invoke", data=b"hi", headers={"Content-Type": "image/png"}, timeout=10
    )
    assert not_an_image.status_code == 400 and "error" in not_an_image.json()
    missing = requests.post(
        f"{url}/models", json={"model_name": "x", "url": "/opt/ml/models/nope/model"}, timeout=10
    )
    assert missing.status_code == 404
    assert requests.post(f"{url}/models", json={"url": "/x"}, timeout=10).status_code == 400
