"""A multi-model endpoint driven the way SageMaker drives it: `docker run IMAGE serve` with
SAGEMAKER_MULTI_MODEL=true, models under /opt/ml/models/<name>/model, and the container API
(load, list, get, invoke, unload) of "Custom containers contract for multi-model endpoints".

Two models with different class sets (digits 0-9: the session's training job, and 5-9) must
each answer with their own class names; one is a model folder, the other a model.tar.gz.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

import pytest
import requests

from tests.helpers import free_port, runtime_env

from .conftest import (
    ENGINE_MARGIN,
    SERVE_START_TIMEOUT_S,
    assert_served_as_measured,
    remove_container,
    run,
    unique_name,
    wait_for,
)

pytestmark = pytest.mark.docker

ALL_DIGITS = tuple(str(digit) for digit in range(10))
LOW_DIGITS = ("0", "1", "2", "3", "4")
HIGH_DIGITS = ("5", "6", "7", "8", "9")
# "high" is judged against the digits model on the same images; this only says it learned at all
# (chance is 0.2), so it holds whatever CPU trained the digits model.
FAR_ABOVE_CHANCE = 0.5

# Fits two ResNet-18s and the server (~0.8 GB measured), not a model announcing 2 GB of weights.
BUDGET_MB = 2000
HUGE_WEIGHTS_BYTES = 2 * 2**30
TARGET_MODEL = "X-Amzn-SageMaker-Target-Model"


def _test_images(digits_data: Path, classes: tuple[str, ...]) -> list[Path]:
    return sorted(path for label in classes for path in (digits_data / "test" / label).glob("*.png"))


@pytest.fixture(scope="session")
def high_model(trained_job, digits_data, tmp_path_factory) -> Path:
    """A model of digits 5-9 only, another class map than the session's: the digits model with
    its head cut to those five rows, then exported by the project's export command. It needs no
    training of its own: on an image of 5-9 the right row's logit is the largest of the ten
    whenever the digits model is right, so the largest of the five too."""
    from classifier.artifacts import load_model, save_model

    model, spec = load_model(trained_job[0] / "model")
    assert spec.architecture.startswith("resnet"), (
        f"the cut below knows ResNet's head (fc), not {spec.architecture}"
    )
    rows = [spec.class_names.index(label) for label in HIGH_DIGITS]
    weights = model.state_dict()
    weights["fc.weight"], weights["fc.bias"] = weights["fc.weight"][rows], weights["fc.bias"][rows]
    model_dir = save_model(
        tmp_path_factory.mktemp("high") / "model", weights, replace(spec, class_names=HIGH_DIGITS, exports={})
    )
    export = [sys.executable, "-m", "classifier.inference.export", str(model_dir)]
    run([*export, "--data", str(digits_data / "valid")], timeout=300, env=runtime_env())
    return model_dir


@pytest.fixture(scope="session")
def models_root(trained_job, high_model, tmp_path_factory) -> Path:
    """/opt/ml/models as SageMaker lays it out: digits/model (a folder), high/model (model.tar.gz),
    huge/model (weights announcing more memory than the budget holds)."""
    root = tmp_path_factory.mktemp("models")
    digits = trained_job[0] / "model"
    high = high_model
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


@contextmanager
def _multi_model_server(image: str, models_root: Path) -> Iterator[tuple[str, str]]:
    """A multi-model container over ``models_root``; yields (base URL, container name)."""
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
        yield url, name
    finally:
        (models_root.parent / f"{name}.log").write_text(_logs(name))
        remove_container(name)


def _logs(name: str) -> str:
    logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True, timeout=60)
    return logs.stdout + logs.stderr


@pytest.fixture(scope="module")
def endpoint(serving_image, models_root) -> Iterator[str]:
    with _multi_model_server(serving_image, models_root) as (url, _):
        yield url


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


def test_the_image_declares_multi_model_support(serving_image):
    labels = json.loads(
        run(["docker", "image", "inspect", "--format", "{{json .Config.Labels}}", serving_image], 60).stdout
    )
    assert labels["com.amazonaws.sagemaker.capabilities.multi-models"] == "true"


def _load(url: str, name: str) -> requests.Response:
    return requests.post(
        f"{url}/models", json={"model_name": name, "url": f"/opt/ml/models/{name}/model"}, timeout=300
    )


def _accuracy(url: str, name: str, images: list[Path]) -> float:
    answers = _top_labels(url, name, images)
    return sum(answer == path.parent.name for answer, path in zip(answers, images, strict=True)) / len(images)


def test_the_sequence_sagemaker_drives(endpoint, digits_data, trained_job):
    url = endpoint
    # Green with no model: SageMaker loads models only when they are first invoked.
    assert requests.get(f"{url}/ping", timeout=10).status_code == 200
    assert requests.get(f"{url}/models", timeout=10).json() == {"models": []}

    for name in ("digits", "high"):
        response = _load(url, name)
        assert response.status_code == 200, response.text
    assert _load(url, "digits").status_code == 409

    # Each model answers with its own class map: "digits" as well as its job measured over its
    # whole test split, "high" on 5-9 at least as well as "digits" there (its head is the digits
    # model's cut to 5-9), and with a high label even for a low digit.
    low_images = _test_images(digits_data, LOW_DIGITS)
    high_images = _test_images(digits_data, HIGH_DIGITS)
    all_images = low_images + high_images
    served = _accuracy(url, "digits", all_images)
    assert_served_as_measured(served, trained_job[0], f"digits over {len(all_images)} test images")
    high, digits_on_high = _accuracy(url, "high", high_images), _accuracy(url, "digits", high_images)
    assert high >= FAR_ABOVE_CHANCE and high >= digits_on_high - ENGINE_MARGIN, (high, digits_on_high)
    assert set(_top_labels(url, "high", low_images[::10])) <= set(HIGH_DIGITS)
    digits_answers = _top_labels(url, "digits", low_images[:1])

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
    refused = _load(url, "huge")
    assert refused.status_code == 507, refused.text
    assert "CLASSIFIER_MULTI_MODEL_MEMORY_MB" in refused.json()["error"]
    assert requests.get(f"{url}/ping", timeout=10).status_code == 200
    assert _top_labels(url, "digits", low_images[:1]) == digits_answers[:1]


def test_errors_are_those_of_invocations(endpoint):
    url = endpoint
    _load(url, "digits")
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


# From kill -9 to both models answering again: gunicorn forks a new worker at once, which
# imports the runtime (~5 s) and loads the two models again (~2 s each on 2 cores).
RESTORE_BOUND_S = 90


def _worker_pids(name: str) -> list[str]:
    return re.findall(r"worker (\d+) serving multi-model endpoints", _logs(name))


def test_a_killed_worker_is_replaced_with_the_same_models(serving_image, models_root, digits_data):
    """MMS keeps its model table outside the backend workers; so does this server. SageMaker
    believes a model loaded until it unloads it: after a worker dies, the same models answer."""
    image_of = {"digits": _test_images(digits_data, ("3",))[0], "high": _test_images(digits_data, ("7",))[0]}
    with _multi_model_server(serving_image, models_root) as (url, name):
        for model in image_of:
            assert _load(url, model).status_code == 200
        before = {model: _top_labels(url, model, [path]) for model, path in image_of.items()}
        (worker,) = _worker_pids(name)
        run(["docker", "exec", name, "sh", "-c", f"kill -9 {worker}"], timeout=30)
        killed = time.monotonic()

        # /ping may be red (or not answer) meanwhile, never green with a model missing.
        green_listings, answered = [], set()
        while answered != set(image_of):
            assert time.monotonic() - killed < RESTORE_BOUND_S, (
                f"not restored: {answered}\n{_logs(name)[-3000:]}"
            )
            try:
                if requests.get(f"{url}/ping", timeout=2).status_code == 200:
                    green_listings.append(requests.get(f"{url}/models", timeout=5).json())
                for model, path in image_of.items():
                    if model not in answered and _invoke(url, model, path).status_code == 200:
                        answered.add(model)
            except requests.RequestException:
                continue
        restored_s = time.monotonic() - killed
        print(f"both models answered again {restored_s:.1f} s after the worker was killed")
        assert len(_worker_pids(name)) == 2, "gunicorn did not start a replacement worker"
        expected = {
            "models": [{"modelName": m, "modelUrl": f"/opt/ml/models/{m}/model"} for m in sorted(image_of)]
        }
        assert all(listing == expected for listing in green_listings), green_listings
        assert requests.get(f"{url}/models", timeout=5).json() == expected
        assert {model: _top_labels(url, model, [path]) for model, path in image_of.items()} == before
