"""SDK local mode for real: the built image, docker-compose, the digits, no AWS.

Each test drives the installed ``sm-classifier`` console script in a subprocess, as a user
would, and reads what the containers printed (on stderr; docker-compose prefixes every line
with the host, ``algo-1_1  | ...``). Trainings are tiny (16-pixel digits, a few epochs) to
keep the suite's runtime modest on a shared 2-core machine, and one training (``digits_training``)
serves every test that needs a model, the local batch transform's included: one file, so one
xdist worker runs them all and trains once.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
from collections import defaultdict
from pathlib import Path

import pytest

from classifier.metric_definitions import EPOCH_METRICS
from tests.helpers import container_env_args
from tests.sdk.capture_records import capture_record
from tests.sdk.conftest import CLI, EPOCHS, final_json, hp_args, job_metrics, sm_classifier

pytestmark = [pytest.mark.docker, pytest.mark.slow]

# "algo-1_1  | text" (Compose v1) or "algo-1-abcd  | text" (Compose v2), colours stripped.
# A served model is judged over its job's whole test split (100 digits): far above chance (0.1),
# and within this margin of the job's own test accuracy, whatever CPU trained it.
MIN_ACCURACY = 0.7
ENGINE_MARGIN = 0.05
HOST_LINE = re.compile(r"^(algo-\d+)[-_]\S*\s+\|\s?(.*)$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def host_lines(log: str) -> dict[str, list[str]]:
    """What each container printed, in order."""
    lines = defaultdict(list)
    for raw in log.splitlines():
        match = HOST_LINE.match(ANSI.sub("", raw))
        if match:
            lines[match.group(1)].append(match.group(2))
    return lines


def archive_names(path: Path) -> set[str]:
    with tarfile.open(path) as tar:
        return {Path(name).name for name in tar.getnames()}


def test_local_training_writes_model_tar_gz_and_scrapable_metrics(digits_training):
    _, result = digits_training
    paths = final_json(result.stdout)
    model_archive = Path(paths["model_data"])
    assert model_archive.name == "model.tar.gz" and model_archive.exists()
    # inference_export=openvino: the IR beside the weights, no int8 model.
    names = archive_names(model_archive)
    assert {"model.pt", "model_config.json", "model.xml", "model.bin"} <= names
    assert "model_int8.xml" not in names
    assert "metrics.json" in archive_names(Path(paths["output_data"]))
    job_dir = model_archive.parent.parent
    leftovers = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project.working_dir={job_dir}"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert leftovers.stdout.strip() == "", "the job's stopped containers were left behind"

    from classifier_client.training import metric_definitions

    printed = host_lines(result.stderr)["algo-1"]
    scraped = [
        {d.name: float(m.group(1)) for d in metric_definitions() if (m := re.search(d.regex, line))}
        for line in printed
        if line.startswith("epoch=")
    ]
    assert len(scraped) == EPOCHS and all(set(s) == set(EPOCH_METRICS) for s in scraped)
    assert scraped[-1]["train_loss"] < scraped[0]["train_loss"]


def test_local_endpoint_classifies_digits_then_is_deleted(digits_training, local_image):
    data, result = digits_training
    model_archive = final_json(result.stdout)["model_data"]
    endpoint = "digits-test"
    subprocess.run([CLI, "delete", "--local", endpoint], capture_output=True)  # a leftover run
    deployed = json.loads(
        sm_classifier(
            "deploy",
            "--local",
            "--image",
            local_image,
            "--model-data",
            model_archive,
            "--endpoint-name",
            endpoint,
            "--workers",
            "1",
        ).stdout  # fmt: skip
    )
    try:
        assert deployed["url"].startswith("http://127.0.0.1:")
        images = sorted((data / "test").glob("*/*.png"))
        answers = json.loads(
            sm_classifier("invoke", "--local", endpoint, *images, "--top-k", "3", "--json").stdout
        )
        right = 0
        for image in images:
            predictions = answers[str(image)]["predictions"]
            assert len(predictions) == 3
            probabilities = [p["probability"] for p in predictions]
            assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 1.0001
            right += predictions[0]["label"] == image.parent.name
        # The job's whole test split through the real HTTP path: far above chance, and what
        # the job itself measured on it, within the serving engine's margin.
        served = right / len(images)
        measured = job_metrics(result.stdout)["test"]["accuracy"]
        print(f"{right}/{len(images)} right ({served:.3f}); the job measured {measured:.3f}")
        assert served >= MIN_ACCURACY and abs(served - measured) <= ENGINE_MARGIN, (served, measured)
        printed = sm_classifier("invoke", "--local", endpoint, images[3], "--top-k", "1").stdout
        assert printed.startswith(f"{images[3]}: ")
    finally:
        sm_classifier("delete", "--local", endpoint)
    gone = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"name=^sm-local-{endpoint}$"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert gone.stdout.strip() == ""


def test_two_instances_make_one_distributed_job(local_image, digits_subset, tmp_path):
    data = digits_subset({"train": 20, "valid": 5, "test": 5})
    result = sm_classifier(
        "train", "--local", "--instance-count", "2", "--image", local_image, "--data", data,
        "--local-dir", tmp_path, "--no-debug-local", *container_env_args(containers=2),
        *hp_args({"epochs": "2", "inference_export": "none"}),
    )  # fmt: skip
    lines = host_lines(result.stderr)
    assert set(lines) == {"algo-1", "algo-2"}

    # Both containers joined the same process group, algo-1 (first sorted host) as master.
    joined = {
        host: re.search(r"rank (\d+) of (\d+), master (\S+)", "\n".join(printed))
        for host, printed in lines.items()
    }
    assert {host: m.groups() if m else None for host, m in joined.items()} == {
        "algo-1": ("0", "2", "algo-1:29500"),
        "algo-2": ("1", "2", "algo-1:29500"),
    }

    # One job, one datapoint per epoch for the tuner: only the global rank 0 prints metrics.
    epochs = {
        host: [line[line.index("epoch=") :] for line in printed if "epoch=" in line]
        for host, printed in lines.items()
    }
    assert len(epochs["algo-1"]) == 2
    assert epochs["algo-2"] == []

    # Only the master writes the model (the model dir is shared by both containers).
    saved = {host for host, printed in lines.items() if any("model saved" in p for p in printed)}
    assert saved == {"algo-1"}
    assert {"model.pt", "model_config.json"} <= archive_names(Path(final_json(result.stdout)["model_data"]))


# --- a live endpoint's life: update under load, captured traffic -------------------------------


@pytest.fixture
def local_endpoint(digits_training, local_image):
    """The digits model deployed locally as ``name``; deleted afterwards, whatever happened."""
    made = []

    def deploy(name: str) -> dict:
        subprocess.run([CLI, "delete", "--local", name], capture_output=True)  # a leftover run
        model_archive = final_json(digits_training[1].stdout)["model_data"]
        made.append(name)
        return final_json(
            sm_classifier(
                "deploy", "--local", "--image", local_image, "--model-data", model_archive,
                "--endpoint-name", name, "--workers", "1",
            ).stdout
        )  # fmt: skip

    yield deploy
    for name in made:
        subprocess.run([CLI, "delete", "--local", name], capture_output=True)


def _renamed_model(archive: Path, target: Path) -> Path:
    """The same weights under other class names: each answer says which model gave it."""
    with tarfile.open(archive) as tar:
        tar.extractall(target, filter="data")
    config_file = target / "model_config.json"
    config = json.loads(config_file.read_text())
    config["class_names"] = [f"new-{name}" for name in config["class_names"]]
    config_file.write_text(json.dumps(config))
    return target


def _poll(condition, timeout: float, what: str) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_local_update_under_a_load_loop_fails_no_request(digits_training, local_endpoint, tmp_path):
    import threading

    from classifier_client.config import ConfigurationError
    from classifier_client.local_endpoints import invoke_local

    data, result = digits_training
    renamed = _renamed_model(Path(final_json(result.stdout)["model_data"]), tmp_path / "renamed")
    endpoint = "digits-update"
    first = local_endpoint(endpoint)
    images = sorted((data / "test").glob("*/*.png"))
    labels: list[str] = []
    failures: list[str] = []
    stop = threading.Event()

    def keep_invoking() -> None:
        position = 0
        while not stop.is_set():
            try:
                answer = invoke_local(endpoint, images[position % len(images)], top_k=1)
                labels.append(answer["predictions"][0]["label"])
            except (ConfigurationError, OSError, ValueError, KeyError) as error:
                failures.append(f"request {position}: {type(error).__name__}: {error}")
            position += 1

    loop = threading.Thread(target=keep_invoking)
    loop.start()
    try:
        _poll(lambda: len(labels) >= 10 or failures, 60, "answers from the first model")
        updated = final_json(sm_classifier("update", "--local", endpoint, "--model-data", renamed).stdout)
        _poll(lambda: sum(label.startswith("new-") for label in labels) >= 10 or failures, 60, "new answers")
    finally:
        stop.set()
        loop.join(timeout=120)
    assert failures == [], failures[:5]
    switch = next(i for i, label in enumerate(labels) if label.startswith("new-"))
    # One client, one request at a time: every answer before the switch is the old model's,
    # every one after it the new model's.
    assert switch >= 10 and all(label.startswith("new-") for label in labels[switch:]), labels
    assert updated["url"] != first["url"]
    leftovers = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"name=^sm-local-{endpoint}-"], capture_output=True, text=True
    )
    assert leftovers.stdout.strip() == "", "the replaced container was left behind"


def _serve_and_capture(url: str, images: list[Path]) -> tuple[dict[str, list[str]], dict[str, dict]]:
    """POST each image (two of them also as one JSON request) to the real server; the capture
    lines per S3 key, split over two variants and two hours, and what was answered per event."""
    import base64

    import requests

    lines: dict[str, list[str]] = defaultdict(list)
    answered: dict[str, dict] = {}
    for number, image in enumerate(images):
        body = image.read_bytes()
        answer = requests.post(
            f"{url}/invocations", data=body, headers={"Content-Type": "image/png"}, timeout=60
        )
        assert answer.status_code == 200, answer.text
        variant, hour = ("AllTraffic", "20") if number % 2 else ("challenger", "21")
        event = f"event-{number:03d}"
        when = f"2026-12-06T{hour}:{number % 60:02d}:00Z"
        key = f"capture/digits/{variant}/2026/12/06/{hour}/part-{number % 3}.jsonl"
        lines[key].append(capture_record(event, when, "image/png", body, answer.text))
        answered[event] = {
            "image": image, "variant": variant, "answer": answer.json()["predictions"][0], "time": when,
        }  # fmt: skip
    pair = {"instances": [base64.b64encode(p.read_bytes()).decode() for p in images[:2]]}
    answer = requests.post(f"{url}/invocations", json=pair, timeout=60)
    assert answer.status_code == 200, answer.text
    record = capture_record(
        "event-pair", "2026-12-06T21:59:00Z", "application/json", json.dumps(pair).encode(), answer.text
    )
    lines["capture/digits/AllTraffic/2026/12/06/21/pair.jsonl"] += [record, "not a capture record"]
    for position, predictions in enumerate(answer.json()["predictions"]):
        answered[f"event-pair-{position}" if position else "event-pair"] = {
            "image": images[position], "variant": "AllTraffic", "answer": predictions[0],
            "time": "2026-12-06T21:59:00Z",
        }  # fmt: skip
    return lines, answered


def test_captured_turns_the_real_servers_answers_into_a_review_set(
    digits_training, local_endpoint, on_moto, cli, capsys, tmp_path
):
    import boto3

    data, _ = digits_training
    images = sorted((data / "test").glob("*/*.png"))
    url = local_endpoint("digits-capture")["url"]
    lines, answered = _serve_and_capture(url, images)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="captures")
    for key, records in lines.items():
        s3.put_object(Bucket="captures", Key=key, Body="\n".join(records).encode())

    review = tmp_path / "review"
    assert (
        cli("captured", "digits", "--output", review, "--capture-uri", "s3://captures/capture", "--json") == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["images"] == len(images) + 2 and summary["skipped_records"] == 1

    import csv

    with (review / "captured.csv").open() as handle:
        rows = {(row["event_id"], row["instance"]): row for row in csv.DictReader(handle)}
    assert len(rows) == len(answered)
    right = 0
    for event, expected in answered.items():
        event_id, _, instance = event.partition("-pair-")
        row = rows[("event-pair" if instance else event, instance or "0")]
        top = expected["answer"]
        # Each image lies, byte for byte, in the folder of the label the server answered.
        assert row["label"] == top["label"] and row["variant"] == expected["variant"]
        assert abs(float(row["probability"]) - top["probability"]) < 1e-6
        assert (review / row["file"]).read_bytes() == expected["image"].read_bytes()
        assert Path(row["file"]).parent.name == top["label"]
        right += top["label"] == expected["image"].parent.name
    # A trained model's answers: the review set sorts most images into their true class.
    assert right / len(answered) >= MIN_ACCURACY

    for variant in ("AllTraffic", "challenger"):
        tops = [e["answer"]["probability"] for e in answered.values() if e["variant"] == variant]
        row = summary["by_variant"][variant]
        assert row["count"] == len(tops)
        assert abs(row["mean_top1"] - sum(tops) / len(tops)) < 1e-4
        assert abs(row["share_under_0.5"] - sum(p < 0.5 for p in tops) / len(tops)) < 1e-4

    recent = tmp_path / "recent"
    assert cli("captured", "digits", "--output", recent, "--capture-uri", "s3://captures/capture",
               "--since", "2026-12-06T21:00Z", "--limit", "5", "--json") == 0  # fmt: skip
    limited = json.loads(capsys.readouterr().out)
    assert limited["images"] == 5 and set(limited["by_variant"]) <= {"AllTraffic", "challenger"}
    with (recent / "captured.csv").open() as handle:
        kept = sorted(row["time"] for row in csv.DictReader(handle))
    since_21 = sorted(e["time"].replace("Z", "+00:00") for e in answered.values() if "T21:" in e["time"])
    assert kept == since_21[-5:]


# --- batch transform: the built image run as SageMaker runs a transform job ----------------------


def test_local_transform_writes_one_out_per_input_and_records_a_corrupt_file(
    digits_training, local_image, cli, tmp_path, capsys
):
    data, training = digits_training
    inputs = tmp_path / "in"
    shutil.copytree(data / "test", inputs)
    expected = {path.relative_to(inputs).as_posix(): path.parent.name for path in inputs.rglob("*.png")}
    (inputs / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    out = tmp_path / "out"

    model_data = final_json(training.stdout)["model_data"]
    code = cli(
        "transform", "--local", "--image", local_image, "--model-data", model_data,
        "--input", inputs, "--output", out, "--job-name", f"ct-transform-{os.getpid()}",
    )  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert code == 1  # like a SageMaker job with a failed file: the others still complete
    assert summary["files"] == len(expected) + 1 and summary["completed"] == len(expected)
    assert list(summary["failed"]) == ["corrupt.png"]
    assert summary["failed"]["corrupt.png"]["status"] == 400
    error = json.loads((out / "corrupt.png.error").read_text())
    assert error["input"] == "corrupt.png" and "error" in error
    assert not (out / "corrupt.png.out").exists()
    # The container's /execution-parameters decided what the job left open.
    assert summary["batch_strategy"] == "MultiRecord" and summary["max_payload_mb"] == 6

    outs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.out"))
    assert outs == sorted(f"{name}.out" for name in expected)
    right = sum(
        json.loads((out / f"{name}.out").read_text())["predictions"][0]["label"] == digit
        for name, digit in expected.items()
    )
    served = right / len(expected)
    measured = job_metrics(training.stdout)["test"]["accuracy"]
    print(f"{right}/{len(expected)} right ({served:.3f}); the job measured {measured:.3f}")
    assert served >= MIN_ACCURACY and abs(served - measured) <= ENGINE_MARGIN, (served, measured)
    assert (
        subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"name=ct-transform-{os.getpid()}"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        == ""
    )
