"""The serving image (container/Dockerfile's serve stage): a tenth of the size, the same answers,
and honest about what it cannot do. The rest of its contract runs in test_serve.py and
test_multi_model.py, on both images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import requests

from .conftest import (
    SERVE_START_TIMEOUT_S,
    free_port,
    remove_container,
    run,
    start_server,
    unique_name,
    wait_for,
)

pytestmark = pytest.mark.docker

# The ceiling, as `docker image inspect` reports the size.
MAX_SERVING_IMAGE_BYTES = 600 * 10**6
# uv installs the venv at build time and must not stay.
FORBIDDEN_MODULES = ("torch", "torchvision", "triton", "smdebug", "nncf", "sagemaker_training", "uv")


def _answers(url: str, images: list[Path]) -> list[dict]:
    with requests.Session() as session:
        return [
            session.post(
                f"{url}/invocations",
                data=path.read_bytes(),
                headers={"Content-Type": "image/png", "X-Amzn-SageMaker-Custom-Attributes": "top_k=5"},
                timeout=30,
            ).json()
            for path in images
        ]


@pytest.fixture(scope="module")
def bare_job(trained_job, tmp_path_factory) -> Path:
    """The trained model without its OpenVINO export, as inference_export=none leaves it."""
    job_dir = tmp_path_factory.mktemp("bare")
    model = job_dir / "model"
    shutil.copytree(trained_job[0] / "model", model)
    config = json.loads((model / "model_config.json").read_text())
    for exported in config.pop("exports", {}).values():
        for key in ("file", "int8_file"):
            if exported.get(key):
                (model / exported[key]).unlink(missing_ok=True)
                (model / exported[key]).with_suffix(".bin").unlink(missing_ok=True)
    (model / "model_config.json").write_text(json.dumps(config))
    return job_dir


def test_the_serving_image_is_small_and_holds_no_training_stack(serve_only_image):
    size = int(run(["docker", "image", "inspect", "--format", "{{.Size}}", serve_only_image], 60).stdout)
    print(f"\nserving image: {size / 1e6:.0f} MB")
    assert size <= MAX_SERVING_IMAGE_BYTES
    probe = "import importlib.util as u, sys; print([m for m in sys.argv[1:] if u.find_spec(m)])"
    found = run(
        [
            "docker",
            "run",
            "--rm",
            "--entrypoint",
            "python3",
            serve_only_image,
            "-c",
            probe,
            *FORBIDDEN_MODULES,
        ],
        120,
    )
    assert found.stdout.strip() == "[]"
    listed = run(
        ["docker", "run", "--rm", "--entrypoint", "ls", serve_only_image, "/opt/program/classifier"], 60
    )
    assert "training" not in listed.stdout.split() and "serving" in listed.stdout.split()


def test_train_in_the_serving_image_says_to_use_the_full_image(serve_only_image):
    result = run(["docker", "run", "--rm", serve_only_image, "train"], 120, check=False)
    assert result.returncode != 0
    assert "this is the serving image" in result.stderr and "sagemaker-image-classifier" in result.stderr


def test_the_serving_image_gives_the_full_images_answers_over_the_test_split(
    image, serve_only_image, trained_job, digits_data
):
    images = sorted((digits_data / "test").glob("*/*.png"))
    answers = {}
    for kind, ref in (("full", image), ("serve", serve_only_image)):
        name, url = start_server(ref, trained_job[0])
        try:
            answers[kind] = _answers(url, images)
        finally:
            remove_container(name)
    assert len(answers["full"]) == len(images) and all("predictions" in a for a in answers["full"])
    assert answers["serve"] == answers["full"]


def test_a_model_without_an_openvino_export_stops_the_serving_image_at_start_up(serve_only_image, bare_job):
    name = unique_name("ct-bare")
    result = run(
        [
            "docker", "run", "--name", name, "--volume", f"{bare_job / 'model'}:/opt/ml/model:ro",
            serve_only_image, "serve",
        ],
        SERVE_START_TIMEOUT_S,
        check=False,
    )  # fmt: skip
    remove_container(name)
    assert result.returncode != 0
    logs = result.stdout + result.stderr
    assert (
        "/opt/ml/model" in logs and "has no OpenVINO export" in logs and "inference_export=openvino" in logs
    )


def test_a_multi_model_load_without_an_openvino_export_is_refused_and_the_others_serve(
    serve_only_image, trained_job, bare_job, digits_data, tmp_path
):
    root = tmp_path / "models"
    shutil.copytree(trained_job[0] / "model", root / "digits" / "model")
    shutil.copytree(bare_job / "model", root / "bare" / "model")
    port, name = free_port(), unique_name("ct-mme-bare")
    run(
        [
            "docker", "run", "--detach", "--name", name, "--publish", f"127.0.0.1:{port}:8080",
            "--volume", f"{root}:/opt/ml/models:ro", "--env", "SAGEMAKER_MULTI_MODEL=true",
            serve_only_image, "serve",
        ],
        120,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:

        def healthy() -> bool:
            try:
                return requests.get(f"{url}/ping", timeout=2).status_code == 200
            except requests.RequestException:
                return False

        wait_for(healthy, SERVE_START_TIMEOUT_S, "/ping of the multi-model server")
        refused = requests.post(
            f"{url}/models", json={"model_name": "bare", "url": "/opt/ml/models/bare/model"}, timeout=120
        )
        assert 400 <= refused.status_code < 600
        assert (
            "has no OpenVINO export" in refused.json()["error"]
            and "inference_export=openvino" in refused.json()["error"]
        )
        loaded = requests.post(
            f"{url}/models", json={"model_name": "digits", "url": "/opt/ml/models/digits/model"}, timeout=120
        )
        assert loaded.status_code == 200, loaded.text
        digit = sorted((digits_data / "test").glob("*/*.png"))[0]
        answer = requests.post(
            f"{url}/models/digits/invoke",
            data=digit.read_bytes(),
            headers={"Content-Type": "image/png"},
            timeout=60,
        )
        assert answer.status_code == 200 and answer.json()["predictions"], answer.text
        assert requests.get(f"{url}/ping", timeout=10).status_code == 200
    finally:
        remove_container(name)
