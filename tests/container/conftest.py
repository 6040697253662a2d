"""Fixtures for the container tests: the built image, a trained job, a running endpoint.

The image is built once per run through build_and_push.sh (or taken from
CONTAINER_TEST_IMAGE, which `make test-container` sets after `make image`). Every container
runs without network or with its port published on 127.0.0.1 only. Waits poll with deadlines.
Under pytest-xdist the images, the digits and the trained job are made once per run, by the
first worker that needs them, and shared (:func:`made_once`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from filelock import FileLock

from classifier.opt_ml import write_job_config
from tests.helpers import REPO_ROOT, free_port, runtime_env, share_cores_among_workers

REPO = REPO_ROOT
LOCAL_TEST = REPO / "local_test"
CONFIG_DIR = LOCAL_TEST / "test_dir" / "input" / "config"
IMAGE_ENV = "CONTAINER_TEST_IMAGE"
# The serving image (Dockerfile stage serve), which `make test-container` sets after `make image-serve`.
SERVE_IMAGE_ENV = "CONTAINER_TEST_SERVE_IMAGE"
# Fewer epochs than the demo: enough for >90 % on the digits, and CI stays short.
TEST_HYPERPARAMETERS = {"epochs": "3"}
TRAIN_TIMEOUT_S = 1200
SERVE_START_TIMEOUT_S = 180
# A served model is judged over a whole test split: far above chance, and the test accuracy
# its own job measured within a margin (the same model on the serving engine), so the
# assertion holds whatever CPU (and kernels) trained it.
MIN_SERVED_ACCURACY = 0.8
ENGINE_MARGIN = 0.05


def pytest_configure(config: pytest.Config) -> None:
    share_cores_among_workers()


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under xdist one worker trains the shared job while the other runs the files that need none.

    xdist (``--dist loadfile --no-loadscope-reorder``) hands the files out in collection order,
    each next file to a worker with two tests or fewer left. So the first file that uses the job
    comes first (its worker trains), every file that needs none next (the other worker runs
    them meanwhile), and the other files that use the job last.
    """

    def needs_job(item: pytest.Item) -> bool:
        return "trained_job" in getattr(item, "fixturenames", ())

    here = Path(__file__).parent
    files: dict[Path, list[pytest.Item]] = {}
    for item in items:
        if item.path.parent == here:
            files.setdefault(item.path, []).append(item)
    needing = [path for path, tests in files.items() if any(map(needs_job, tests))]
    free = [path for path in files if path not in needing]
    order = [*needing[:1], *free, *needing[1:]]
    others = [item for item in items if item.path.parent != here]
    items[:] = [*others, *(item for path in order for item in files[path])]


def run(cmd: list[str], timeout: float, check: bool = True, **kwargs) -> subprocess.CompletedProcess:
    """Run a command with a deadline; on failure the message carries its output."""
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    if check and result.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} exited {result.returncode}\n"
            f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
        )
    return result


def wait_for(condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.2):
    """Poll ``condition`` until it is true or the deadline passes."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def remove_container(name: str) -> None:
    subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)


def make_job_dir(
    root: Path, data: Path, hyperparameters: dict[str, str], per_class: int | None = None
) -> Path:
    """A /opt/ml tree: the committed configs with overrides, and a copy of the data.

    ``per_class`` keeps only that many images of each class in every channel (fast epochs).
    """
    params = json.loads((CONFIG_DIR / "hyperparameters.json").read_text())
    channels = sorted(p.name for p in data.iterdir() if p.is_dir())
    write_job_config(root, {**params, **hyperparameters}, channels)
    # A copy, not a symlink: the container sees only what is under the mount.
    for image in sorted(data.glob("*/*/*")):
        channel, label = image.parent.parent.name, image.parent.name
        target = root / "input" / "data" / channel / label
        target.mkdir(parents=True, exist_ok=True)
        if per_class is None or len(list(target.iterdir())) < per_class:
            shutil.copy(image, target / image.name)
    return root


@pytest.fixture(scope="session")
def docker_engine() -> None:
    if shutil.which("docker") is None:
        pytest.skip("docker is not installed (run scripts/docker_host_prerequisites.sh)")
    result = subprocess.run(["docker", "info"], capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        pytest.fail(
            "docker is installed but the engine does not answer; run "
            f"scripts/docker_host_prerequisites.sh as root\n{result.stderr[-2000:]}"
        )


def _image_under_test(env_name: str, *build_args: str) -> str:
    """``env_name``'s image, or built now from the working tree."""
    ref = os.environ.get(env_name)
    if ref:
        run(["docker", "image", "inspect", ref], timeout=60)
        return ref
    base = run([str(REPO / "scripts" / "docker_host_prerequisites.sh")], timeout=900)
    run([str(REPO / "scripts" / "build_wheelhouse.sh")], timeout=1800)
    built = run(
        [
            str(REPO / "build_and_push.sh"),
            "--no-push",
            *build_args,
            "--tag",
            "container-test",
            "--base-image",
            base.stdout.strip().splitlines()[-1],
        ],
        timeout=3600,
    )
    return built.stdout.strip().splitlines()[-1]


def _image_once(shared: Path, env_name: str, *build_args: str) -> str:
    """:func:`_image_under_test`, built by one worker of the run (they share the wheelhouse)."""

    def build(folder: Path) -> None:
        (folder / "reference").write_text(_image_under_test(env_name, *build_args))

    return (made_once(shared, f"image-{env_name}", build) / "reference").read_text()


@pytest.fixture(scope="session")
def image(docker_engine, shared_tmp) -> str:
    """The full image: CONTAINER_TEST_IMAGE, or built now from the working tree."""
    return _image_once(shared_tmp, IMAGE_ENV)


@pytest.fixture(scope="session")
def serve_only_image(docker_engine, shared_tmp) -> str:
    """The serving image: CONTAINER_TEST_SERVE_IMAGE, or built now (build_and_push.sh --serve-only)."""
    return _image_once(shared_tmp, SERVE_IMAGE_ENV, "--serve-only")


@pytest.fixture(scope="session", params=["full", "serve"])
def serving_image(request) -> str:
    """Each image that serves: every serving test runs on the full image and the serving one."""
    return request.getfixturevalue("image" if request.param == "full" else "serve_only_image")


@pytest.fixture(scope="session")
def shared_tmp(tmp_path_factory) -> Path:
    """A folder every xdist worker of this run sees (the parent of the workers' own base temps)."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


def made_once(shared: Path, name: str, make: Callable[[Path], None]) -> Path:
    """``shared/name``, made by ``make`` in the first worker that asks while the others wait on a
    file lock (pytest-xdist's recipe for a session fixture that runs once). A failure is made
    once too: the workers after the first fail with its message."""
    folder, failed = shared / name, shared / f"{name}.failed"
    with FileLock(shared / f"{name}.lock"):
        if failed.exists():
            pytest.fail(f"{name} failed in another worker:\n{failed.read_text()}", pytrace=False)
        if not folder.exists():
            # A fresh folder per attempt: one a killed worker left may hold the container's files.
            scratch = Path(tempfile.mkdtemp(dir=shared, prefix=f"{name}.partial-"))
            try:
                make(scratch)
            except BaseException as error:
                failed.write_text(str(error))
                raise
            scratch.replace(folder)
    return folder


@pytest.fixture(scope="session")
def digits_data(shared_tmp) -> Path:
    """The demo data (train/valid/test ImageFolders), written by the project's own command."""

    def write(out: Path) -> None:
        run([sys.executable, "-m", "tools.demo_data", str(out)], timeout=300, env=runtime_env(), cwd=REPO)

    return made_once(shared_tmp, "digits", write)


def run_training(image: str, job_dir: Path, timeout: float) -> subprocess.CompletedProcess:
    """local_test/train_local.sh on ``job_dir``: the way users run a job locally."""
    env = {**os.environ, "TEST_DIR": str(job_dir), "TRAIN_CONTAINER_NAME": unique_name("ct-train")}
    return run([str(LOCAL_TEST / "train_local.sh"), image], timeout=timeout, check=False, env=env)


def pack_channels(job_dir: Path) -> list[str]:
    """Replace each channel's folder tree by one ``<channel>.tar.gz`` of it, as users upload it."""
    packed = []
    for channel in sorted((job_dir / "input" / "data").iterdir()):
        archive = channel.with_suffix(".tar.gz")
        with tarfile.open(archive, "w:gz") as tar:
            for class_dir in sorted(channel.iterdir()):
                tar.add(class_dir, arcname=f"{channel.name}/{class_dir.name}")
        shutil.rmtree(channel)
        channel.mkdir()
        archive.replace(channel / archive.name)
        packed.append(channel.name)
    return packed


@pytest.fixture(scope="session")
def trained_job(image, digits_data, shared_tmp) -> tuple[Path, str]:
    """The digits job every serving test uses, trained once per run: its folder and its log. Its
    channels are uploaded as one ``.tar.gz`` each (test_archives checks that path in the image's
    own Python); folder channels are what the other trainings here and the demo read."""

    def train(folder: Path) -> None:
        job_dir = make_job_dir(folder / "job", digits_data, TEST_HYPERPARAMETERS)
        assert pack_channels(job_dir) == ["test", "train", "valid"]
        result = run_training(image, job_dir, TRAIN_TIMEOUT_S)
        assert result.returncode == 0, f"training failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        (folder / "train.log").write_text(result.stdout + result.stderr)

    folder = made_once(shared_tmp, "trained-job", train)
    return folder / "job", (folder / "train.log").read_text()


def start_server(image: str, job_dir: Path, **env_overrides: str) -> tuple[str, str]:
    """serve_local.sh --detach; returns (container name, base URL)."""
    port = free_port()
    name = unique_name("ct-serve")
    env = {
        **os.environ,
        "TEST_DIR": str(job_dir),
        "SERVE_PORT": str(port),
        "SERVE_CONTAINER_NAME": name,
        "SERVE_START_TIMEOUT": str(SERVE_START_TIMEOUT_S),
        **env_overrides,
    }
    try:
        run(
            [str(LOCAL_TEST / "serve_local.sh"), "--detach", image],
            timeout=SERVE_START_TIMEOUT_S + 60,
            env=env,
        )
    except BaseException:
        remove_container(name)
        raise
    return name, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="session")
def server(serving_image, trained_job) -> Iterator[str]:
    """A serving container on the trained model; yields its base URL."""
    name, url = start_server(serving_image, trained_job[0])
    try:
        yield url
    finally:
        remove_container(name)


def count_correct(url: str, images: list[Path]) -> tuple[int, int]:
    """(correct, total) top-1 answers of the server at ``url`` for ImageFolder ``images``."""
    import requests

    correct = 0
    with requests.Session() as session:
        for path in images:
            response = session.post(
                f"{url}/invocations",
                data=path.read_bytes(),
                headers={"Content-Type": "image/png"},
                timeout=30,
            )
            assert response.status_code == 200, response.text
            correct += response.json()["predictions"][0]["label"] == path.parent.name
    return correct, len(images)


def job_test_accuracy(job_dir: Path) -> float:
    """The test accuracy the training job measured (output/data/metrics.json)."""
    return json.loads((job_dir / "output" / "data" / "metrics.json").read_text())["test"]["accuracy"]


def assert_served_as_measured(served: float, job_dir: Path, what: str) -> None:
    measured = job_test_accuracy(job_dir)
    print(f"{what}: {served:.3f} served, {measured:.3f} measured by its job")
    assert served >= MIN_SERVED_ACCURACY and abs(served - measured) <= ENGINE_MARGIN, (what, served, measured)
