"""Helpers every test suite (and the serving benchmark) imports: ports, image data, services."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# The SageMaker SDK pins the full mlflow package (the tracking server); the image has its client only.
MLFLOW_SERVER = REPO_ROOT / ".venv-sdk" / "bin" / "mlflow"
SERVICE_START_S = 120

Colour = tuple[int, int, int]
GREY: Colour = (128, 128, 128)
NOISE_STD = 40


def share_cores_among_workers() -> None:
    """Each xdist worker, and every training or server it starts, gets its share of the cores.

    torch sizes its OpenMP pool to every core, and an OpenMP thread spins at each barrier while
    another process holds its core: two workers each running a job put four threads on two
    cores. The unit suite took 468 s that way and 281 s with one thread per worker; a local-mode
    training beside a busy worker took 377 s with two threads and 32 s with one. An
    OMP_NUM_THREADS set by the caller wins. Called from each suite's ``pytest_configure``.
    """
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers and "OMP_NUM_THREADS" not in os.environ:
        share = max(1, len(os.sched_getaffinity(0)) // int(workers))
        os.environ["OMP_NUM_THREADS"] = str(share)


def container_env_args(containers: int = 1) -> list[str]:
    """``--env`` options (docker run, sm-classifier) that keep ``containers`` training containers
    at once within this worker's share of the cores: a container does not inherit the test's
    environment. The share is OMP_NUM_THREADS's first number, else every core."""
    try:
        share = int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0])
    except ValueError:
        share = len(os.sched_getaffinity(0))
    return ["--env", f"OMP_NUM_THREADS={max(1, share // containers)}"]


def runtime_env() -> dict[str, str]:
    """The environment in which the host's Python imports the runtime (``classifier``) and tools."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "container"), str(REPO_ROOT)])}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _primary(index: int) -> Colour:
    """Red, green, blue, red...: the colour of the index-th class when none is given."""
    return tuple(200 if channel == index % 3 else 0 for channel in range(3))


def write_image_folder(
    root: Path,
    counts: Mapping[str, int],
    *,
    seed: int = 0,
    size: tuple[int, int] = (12, 12),
    colours: Mapping[str, Colour] | None = None,
    signal: bool = True,
) -> Path:
    """An ImageFolder of PNGs ``root/<class>/<i>.png``: a colour per class plus noise.

    The classes are separable, so a few epochs learn them. Each class's colour is
    ``colours[name]``, else a primary colour by position; with ``signal=False`` every class
    is the same grey, so the class cannot be seen in the image (pure noise).
    """
    # Imported here: free_port's callers (the container tests, the benchmark) need neither.
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for index, (name, count) in enumerate(counts.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        colour = (colours or {}).get(name) or _primary(index)
        base = np.array(colour if signal else GREY, dtype=np.float64)
        for i in range(count):
            pixels = base + rng.normal(0, NOISE_STD, size=(*size, 3))
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return root


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False


def wait_for_service(url: str, process: subprocess.Popen, log: Path, deadline_s: float = SERVICE_START_S):
    """Poll ``url`` until it answers 200; fail with the service's log if it exits or never answers."""
    deadline = time.monotonic() + deadline_s
    while not answers(url):
        assert process.poll() is None, f"the service exited:\n{log.read_text()[-3000:]}"
        assert time.monotonic() < deadline, f"{url}: no answer in {deadline_s} s:\n{log.read_text()[-2000:]}"
        time.sleep(0.2)


@contextmanager
def service(
    command: list[str], url: str, log: Path, env: Mapping[str, str] | None = None
) -> Iterator[subprocess.Popen]:
    """A server process, ready when ``url`` answers 200; terminated at the end of the block.

    ``env``: variables set for the server on top of this process's environment.
    """
    environment = {**os.environ, **(env or {})}
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=environment)
    try:
        wait_for_service(url, process, log)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def mlflow_server(root: Path) -> Iterator[str]:
    """``mlflow server`` with a SQLite backend and a local artifact root on a free port; yields its URL."""
    assert MLFLOW_SERVER.exists(), f"{MLFLOW_SERVER} is missing: make setup"
    port = free_port()
    command = [
        str(MLFLOW_SERVER), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination", str(root / "artifacts"),
    ]  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    # The server's job runner (seven huey consumers, for GenAI evaluation jobs and trace
    # rollups) serves nothing a training logs, and its start cost 19 s of CPU per server.
    no_jobs = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with service(command, f"{url}/health", root / "mlflow-server.log", env=no_jobs):
        yield url
