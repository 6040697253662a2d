"""SDK local mode for real: the built image, docker-compose, the digits, no AWS.

Each test drives the installed ``sm-classifier`` console script in a subprocess, as a user
would, and reads what the containers printed (on stderr; docker-compose prefixes every line
with the host, ``algo-1_1  | ...``). Trainings are tiny (16-pixel digits, a few epochs) to
keep the suite's runtime modest on a shared 2-core machine.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
from collections import defaultdict
from pathlib import Path

import pytest

from classifier.metric_definitions import EPOCH_METRICS

pytestmark = [pytest.mark.docker, pytest.mark.slow]

CLI = str(Path(sys.executable).with_name("sm-classifier"))
FAST = {
    "model": "resnet18", "image_size": "16", "batch_size": "32", "num_workers": "0",
    "augmentation": "none", "learning_rate": "0.003", "inference_export": "openvino",
}  # fmt: skip
# "algo-1_1  | text" (Compose v1) or "algo-1-abcd  | text" (Compose v2), colours stripped.
EPOCHS = 3
# A served model is judged over its job's whole test split (100 digits): far above chance (0.1),
# and within this margin of the job's own test accuracy, whatever CPU trained it.
MIN_ACCURACY = 0.7
ENGINE_MARGIN = 0.05
HOST_LINE = re.compile(r"^(algo-\d+)[-_]\S*\s+\|\s?(.*)$")
ANSI = re.compile(r"\x1b\[[0-9;]*m")


def sm_classifier(*args, timeout: float = 900) -> subprocess.CompletedProcess:
    result = subprocess.run([CLI, *map(str, args)], capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, (
        f"sm-classifier {' '.join(map(str, args))} exited {result.returncode}\n"
        f"--- stdout ---\n{result.stdout[-2000:]}\n--- stderr ---\n{result.stderr[-8000:]}"
    )
    return result


def host_lines(log: str) -> dict[str, list[str]]:
    """What each container printed, in order."""
    lines = defaultdict(list)
    for raw in log.splitlines():
        match = HOST_LINE.match(ANSI.sub("", raw))
        if match:
            lines[match.group(1)].append(match.group(2))
    return lines


def final_json(stdout: str) -> dict:
    """The CLI's result: stdout is only the JSON result (container logs go to stderr)."""
    return json.loads(stdout)


def hp_args(extra: dict | None = None) -> list[str]:
    return [arg for k, v in {**FAST, **(extra or {})}.items() for arg in ("--hp", f"{k}={v}")]


def job_metrics(stdout: str) -> dict:
    """metrics.json from the job's output.tar.gz."""
    with tarfile.open(final_json(stdout)["output_data"]) as tar:
        member = next(m for m in tar.getmembers() if Path(m.name).name == "metrics.json")
        return json.load(tar.extractfile(member))


def archive_names(path: Path) -> set[str]:
    with tarfile.open(path) as tar:
        return {Path(name).name for name in tar.getnames()}


@pytest.fixture(scope="module")
def digits_training(local_image, digits_subset, tmp_path_factory):
    """One single-instance local-mode training on the digits (shared by the tests below)."""
    # All 1,259 training digits (about 120 per class), a tenth of valid and test.
    data = digits_subset({"train": 200, "valid": 10, "test": 10})
    runs = tmp_path_factory.mktemp("local-runs")
    result = sm_classifier(
        "train", "--local", "--image", local_image, "--data", data, "--local-dir", runs,
        "--no-debug-local", *hp_args({"epochs": str(EPOCHS)}),
    )  # fmt: skip
    return data, result


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
        "--local-dir", tmp_path, "--no-debug-local", *hp_args({"epochs": "2", "inference_export": "none"}),
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
