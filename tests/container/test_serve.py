"""`docker run IMAGE serve`: health, correct predictions, errors as 4xx, draining on docker stop."""

from __future__ import annotations

import base64
import http.client
import io
import json
import os
import subprocess
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from PIL import Image

from .conftest import (
    LOCAL_TEST,
    assert_served_as_measured,
    count_correct,
    remove_container,
    run,
    start_server,
)

pytestmark = pytest.mark.docker

# SageMaker sends SIGKILL 30 s after SIGTERM to a serving container.
SERVE_GRACE_S = 30


def test_ping_answers_200(server):
    response = requests.get(f"{server}/ping", timeout=10)
    assert response.status_code == 200


def test_predict_sh_prints_the_top_classes(server, digits_data):
    images = sorted((digits_data / "test" / "0").glob("*.png"))[:3]
    result = run(
        [str(LOCAL_TEST / "predict.sh"), *map(str, images)],
        timeout=60,
        env={**os.environ, "SERVE_PORT": str(urlparse(server).port)},
    )
    answers = [json.loads(line)["predictions"] for line in result.stdout.splitlines()]
    assert len(answers) == 3
    assert all(set(top[0]) >= {"label", "index", "probability"} for top in answers)
    # What the script prints is the server's answer for each image, in order (how well the
    # model learned is judged over the whole test split below).
    direct = [
        requests.post(
            f"{server}/invocations", data=path.read_bytes(), headers={"Content-Type": "image/png"}, timeout=30
        ).json()["predictions"]
        for path in images
    ]
    assert [[p["label"] for p in top] for top in answers] == [[p["label"] for p in top] for top in direct]


def test_the_digits_test_split_is_classified_correctly(server, digits_data, trained_job):
    """Every test image through /invocations: the served model is the trained one, in order."""
    correct, total = count_correct(server, sorted((digits_data / "test").glob("*/*.png")))
    assert_served_as_measured(correct / total, trained_job[0], f"{correct}/{total} test digits")


def test_a_body_over_the_payload_limit_is_refused_by_the_real_server(server):
    """413 from gunicorn's worker in the image, before the body is read in full; the other
    4xx answers are the app's own (tests/unit/serving/test_app.py)."""
    body = b"\0" * (7 * 1024 * 1024)
    response = requests.post(
        f"{server}/invocations", data=body, headers={"Content-Type": "image/png"}, timeout=30
    )
    assert response.status_code == 413, response.text
    assert "SAGEMAKER_MAX_PAYLOAD_IN_MB" in response.json()["error"]


BATCH = 160


def _slow_batch(count: int, side: int = 1200) -> bytes:
    """A JSON batch that takes the server a second or more: many large images to decode."""
    buffer = io.BytesIO()
    Image.linear_gradient("L").resize((side, side)).save(buffer, format="PNG")
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return json.dumps({"instances": [encoded] * count}).encode()


def test_docker_stop_drains_requests_in_flight(serving_image, trained_job):
    job_dir: Path = trained_job[0]
    name, url = start_server(serving_image, job_dir)
    # The container runs with --rm (as serve_local.sh does): `docker wait` catches its exit code.
    waiter = subprocess.Popen(["docker", "wait", name], stdout=subprocess.PIPE, text=True)
    try:
        parsed = urlparse(url)
        connection = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=120)
        # A kept-alive connection: a worker owns it before the slow request is sent.
        connection.request("GET", "/ping")
        assert connection.getresponse().read()
        connection.request(
            "POST",
            "/invocations",
            body=_slow_batch(BATCH),
            headers={"Content-Type": "application/json"},
        )
        started = time.monotonic()
        stopper = subprocess.Popen(
            ["docker", "stop", "--time", str(SERVE_GRACE_S), name],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        response = connection.getresponse()
        answer = response.read()
        stop_error = stopper.communicate(timeout=SERVE_GRACE_S + 60)[1]
        elapsed = time.monotonic() - started
        exit_code = waiter.communicate(timeout=60)[0].strip()
    finally:
        waiter.kill()
        remove_container(name)
    assert response.status == 200, answer[:2000]
    assert len(json.loads(answer)["predictions"]) == BATCH
    assert stopper.returncode == 0, stop_error
    assert elapsed < SERVE_GRACE_S, "docker had to SIGKILL the server"
    assert exit_code not in ("137", ""), f"exit code {exit_code!r}"


def test_cold_start_serves_the_exported_model_without_torch_and_prints_the_time(
    serving_image, trained_job, capsys
):
    """`docker run IMAGE serve` to a green /ping on the model training exported, with torch mapped
    by no process in the container; the figure is printed (the 2 s goal is `make bench-serve
    --image`'s to check on a quiet machine, not a timed test)."""
    config = json.loads((trained_job[0] / "model" / "model_config.json").read_text())
    assert config["exports"]["openvino"]["parity"]["fp32"]["top1_agreement"] >= 0.99
    started = time.monotonic()
    name, url = start_server(serving_image, trained_job[0])
    cold_start_s = time.monotonic() - started
    try:
        logs = subprocess.run(["docker", "logs", name], capture_output=True, text=True, timeout=60)
        assert requests.get(f"{url}/ping", timeout=10).status_code == 200
        maps = ["docker", "exec", name, "sh", "-c", "cat /proc/[0-9]*/maps 2>/dev/null"]
        mapped = subprocess.run(maps, capture_output=True, text=True, timeout=60).stdout
        assert "libopenvino" in mapped, "the maps were read"
        assert "libtorch" not in mapped, "a serving process loaded torch"
    finally:
        remove_container(name)
    assert "inference backend openvino" in logs.stdout + logs.stderr
    with capsys.disabled():
        print(f"\ncold start (docker run -> /ping 200, openvino): {cold_start_s:.1f} s")
