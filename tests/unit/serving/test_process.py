"""The real ``./serve`` (gunicorn master + workers) on a free 127.0.0.1 port, over HTTP."""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from tests.helpers import REPO_ROOT, free_port

from .conftest import encode, make_model_dir, photo

pytestmark = pytest.mark.slow

REPO = REPO_ROOT
START_DEADLINE_S = 90


class Server:
    """``./serve`` in a subprocess, its log in a file, polled with deadlines."""

    def __init__(self, base_dir: Path, **env):
        self.port = free_port()
        self.log_path = base_dir / f"serve-{self.port}.log"
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("SAGEMAKER_", "CLASSIFIER_"))
        }
        environment.update(
            SAGEMAKER_BASE_DIR=str(base_dir),
            SAGEMAKER_BIND_TO_PORT=str(self.port),
            CLASSIFIER_BIND_HOST="127.0.0.1",
            PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
            **{key: str(value) for key, value in env.items()},
        )
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [str(REPO / "serve")], cwd=REPO, env=environment, stdout=log, stderr=log
            )

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(self, method, path, body=None, headers=None, timeout=30):
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def wait_ready(self) -> None:
        deadline = time.monotonic() + START_DEADLINE_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"serve exited with {self.process.returncode}:\n{self.log}")
            try:
                if self.request("GET", "/ping", timeout=2)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)  # poll interval, not a wait for an event
        pytest.fail(f"/ping not 200 within {START_DEADLINE_S} s:\n{self.log}")

    def wait_exit(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def wait_for_log(self, text: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.log:
            if time.monotonic() > deadline or self.process.poll() is not None:
                pytest.fail(f"{text!r} not in the log:\n{self.log}")
            time.sleep(0.05)

    def __enter__(self) -> Server:
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="module")
def server(base_dir):
    # Two workers on any machine: the tests below count them.
    with Server(base_dir, SAGEMAKER_MAX_PAYLOAD_IN_MB=1, SAGEMAKER_MODEL_SERVER_WORKERS=2) as server:
        yield server


JPEG = {"Content-Type": "image/jpeg"}


def test_startup_line_names_model_classes_and_layout(server):
    line = next(line for line in server.log.splitlines() if "starting to serve" in line)
    for part in ("resnet18", "3 classes", "cat", "workers=2", "torch_threads=", "device=cpu"):
        assert part in line


def test_serves_images_and_batches(server):
    body = encode(photo(), "JPEG")
    status, answer = server.request("POST", "/invocations", body, JPEG)
    assert status == 200
    assert [p["label"] for p in json.loads(answer)["predictions"]] != []
    batch = json.dumps({"instances": [base64.b64encode(body).decode()] * 2})
    status, answer = server.request("POST", "/invocations", batch, {"Content-Type": "application/json"})
    assert status == 200
    assert len(json.loads(answer)["predictions"]) == 2
    assert server.request("POST", "/invocations", body, {"Content-Type": "text/csv"})[0] == 415
    assert server.request("POST", "/invocations", b"junk", JPEG)[0] == 400
    status, answer = server.request("GET", "/execution-parameters")
    assert json.loads(answer)["MaxPayloadInMB"] == 1


def test_oversize_bodies_are_413_with_and_without_content_length(server):
    big = b"\0" * (1024 * 1024 + 10)
    assert server.request("POST", "/invocations", big, JPEG)[0] == 413
    # Chunked: no Content-Length, so the limit is enforced while reading.
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        connection.request(
            "POST", "/invocations", body=iter([big[:600_000], big[600_000:]]), headers=JPEG,
            encode_chunked=True,
        )  # fmt: skip
        assert connection.getresponse().status == 413
    finally:
        connection.close()


def test_concurrent_load_has_no_5xx_and_ping_stays_fast(server):
    body = encode(photo(451, 300, seed=7), "JPEG", quality=90)
    duration_s, clients = 4.0, 16
    statuses: list[int] = []
    ping_latencies: list[float] = []
    stop_at = time.monotonic() + duration_s
    lock = threading.Lock()

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        while time.monotonic() < stop_at:
            connection.request("POST", "/invocations", body=body, headers=JPEG)
            response = connection.getresponse()
            response.read()
            with lock:
                statuses.append(response.status)
        connection.close()

    ping_statuses: list[int] = []

    def pinger():
        while time.monotonic() < stop_at:
            started = time.monotonic()
            status, _ = server.request("GET", "/ping", timeout=5)
            ping_latencies.append(time.monotonic() - started)
            ping_statuses.append(status)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    threads.append(threading.Thread(target=pinger))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration_s + 60)
    assert statuses and set(statuses) == {200}, f"statuses: {sorted(set(statuses))}"
    assert len(ping_latencies) >= 3 and set(ping_statuses) == {200}, ping_statuses
    assert max(ping_latencies) < 2.0, f"slowest /ping {max(ping_latencies):.2f} s"


def _workers(server: Server) -> list[psutil.Process]:
    return psutil.Process(server.process.pid).children()


def _connections_per_worker(server: Server) -> list[int]:
    return [
        sum(
            1
            for connection in worker.net_connections(kind="tcp")
            if connection.status == psutil.CONN_ESTABLISHED and connection.laddr.port == server.port
        )
        for worker in _workers(server)
    ]


def test_keep_alive_connections_are_spread_over_both_workers(server):
    """A burst of keep-alive connections (a batch transform's) reaches every worker, not the
    first one to wake: each worker has its own SO_REUSEPORT socket. With one shared socket all
    16 landed in one worker."""
    connections = [http.client.HTTPConnection("127.0.0.1", server.port, timeout=30) for _ in range(16)]
    try:
        for connection in connections:
            connection.request("GET", "/ping")
            response = connection.getresponse()
            response.read()
            assert response.status == 200
        per_worker = _connections_per_worker(server)
    finally:
        for connection in connections:
            connection.close()
    assert len(per_worker) == 2 and sum(per_worker) == 16, per_worker
    # Spread by the kernel's hash of each connection's addresses: all 16 in one worker has odds
    # of 2 in 65,536.
    assert min(per_worker) >= 1, per_worker


def test_after_a_worker_is_killed_every_new_connection_is_answered(server):
    """The dead worker's socket goes with it; new connections reach the live worker's socket, or
    the replacement's, which listens from its fork and answers once its model is loaded."""
    body = encode(photo(300, 200, seed=3), "JPEG")
    victim = _workers(server)[0]
    victim.kill()
    victim.wait(10)
    statuses = [server.request("POST", "/invocations", body=body, headers=JPEG)[0] for _ in range(16)]
    deadline = time.monotonic() + START_DEADLINE_S
    while len(_workers(server)) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)  # poll interval for the replacement's fork
    assert statuses == [200] * 16
    assert len(_workers(server)) == 2 and victim.pid not in [w.pid for w in _workers(server)]


def _smooth_jpeg(width: int, height: int) -> bytes:
    """A large photo-sized JPEG that compresses to a small body (a smooth gradient)."""
    from PIL import Image

    gradient = Image.radial_gradient("L").resize((width, height))
    image = Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT), gradient))
    return encode(image, "JPEG", quality=80)


def _tree_rss(pid: int) -> int:
    import psutil

    root = psutil.Process(pid)
    processes = [root, *root.children(recursive=True)]
    total = 0
    for process in processes:
        try:
            total += process.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total


# 16 concurrent huge images: with Pillow's defaults (89 MP, every thread decoding at full
# size) the server grew by 8 GB; here the growth must stay under this bound.
RSS_GROWTH_BOUND = 1 * 2**30


@pytest.fixture
def default_server(base_dir):
    """``./serve`` with the default payload limit (6 MB) and decoding limits."""
    with Server(base_dir) as server:
        yield server


def test_concurrent_huge_images_keep_memory_bounded_and_ping_green(default_server):
    server = default_server
    bodies = {"80 MP": _smooth_jpeg(10_000, 8_000), "36 MP": _smooth_jpeg(7_200, 5_000)}
    baseline = _tree_rss(server.process.pid)
    results: list[tuple[str, int]] = []
    ping_statuses: list[int] = []
    peak = [baseline]
    done = threading.Event()

    def send(kind: str) -> None:
        status, _ = server.request("POST", "/invocations", body=bodies[kind], headers=JPEG, timeout=120)
        results.append((kind, status))

    def watch() -> None:
        while not done.is_set():
            ping_statuses.append(server.request("GET", "/ping", timeout=5)[0])
            peak[0] = max(peak[0], _tree_rss(server.process.pid))
            done.wait(0.05)

    watcher = threading.Thread(target=watch)
    watcher.start()
    senders = [threading.Thread(target=send, args=(kind,)) for kind in ("80 MP", "36 MP") for _ in range(8)]
    for thread in senders:
        thread.start()
    for thread in senders:
        thread.join(180)
    done.set()
    watcher.join(30)
    assert len(results) == 16
    assert {status for kind, status in results if kind == "80 MP"} == {400}, results
    assert {status for kind, status in results if kind == "36 MP"} == {200}, results
    assert ping_statuses and set(ping_statuses) == {200}, ping_statuses
    growth = peak[0] - baseline
    assert growth < RSS_GROWTH_BOUND, f"server RSS grew by {growth / 2**20:.0f} MiB"


def test_sigterm_finishes_the_request_in_flight_then_exits(base_dir):
    server = Server(base_dir, SAGEMAKER_MODEL_SERVER_WORKERS=1, CLASSIFIER_LOG_LEVEL="DEBUG")
    try:
        server.wait_ready()
        body = encode(photo(), "JPEG")
        request_id = "drain-test-request"
        connection = socket.create_connection(("127.0.0.1", server.port), timeout=30)
        head = (
            f"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\n"
            f"X-Request-Id: {request_id}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode()
        connection.sendall(head + body[:100])
        server.wait_for_log(f"started POST /invocations id={request_id}")

        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        server.wait_for_log("Handling signal: term")
        connection.sendall(body[100:])
        response = connection.makefile("rb").readline()
        connection.close()
        assert response.startswith(b"HTTP/1.1 200"), response
        assert server.wait_exit(30) == 0
        assert time.monotonic() - started < 30
    finally:
        server.stop()


def test_missing_model_exits_non_zero_with_the_reason(tmp_path):
    server = Server(tmp_path)
    try:
        assert server.wait_exit(START_DEADLINE_S) != 0
    finally:
        server.stop()
    assert "no servable model" in server.log
    assert "model_config.json" in server.log


def test_broken_weights_exit_non_zero_without_a_green_ping(tmp_path):
    make_model_dir(tmp_path)
    (tmp_path / "model" / "model.pt").write_bytes(b"not a state dict")
    server = Server(tmp_path, SAGEMAKER_MODEL_SERVER_WORKERS=1)
    try:
        deadline = time.monotonic() + START_DEADLINE_S
        while server.process.poll() is None and time.monotonic() < deadline:
            try:
                assert server.request("GET", "/ping", timeout=2)[0] != 200
            except OSError:
                pass
            time.sleep(0.1)  # poll interval
        assert server.process.poll() not in (None, 0)
    finally:
        server.stop()
    assert "the model failed to load" in server.log
    assert "UnpicklingError" in server.log


# A MultiRecord mini-batch at the payload limit (0.25 MB) of 8x8 PNGs for a 128 px model, 726
# records: held as input tensors all at once they grew the server by 225 MiB; a chunk at a time
# (64 records, 13 MB of tensors) by 32 MiB. The bound grows with the chunk, not the record count.
BATCH_RSS_GROWTH_BOUND = 120 * 2**20


def test_a_mini_batch_at_the_payload_limit_keeps_memory_bounded(tmp_path):
    make_model_dir(tmp_path, image_size=128)
    record = base64.b64encode(encode(photo(8, 8), "PNG"))
    limit = 2**18
    body = b"\n".join([record] * (limit // (len(record) + 1)))
    assert limit - len(record) <= len(body) <= limit
    with Server(tmp_path, SAGEMAKER_MAX_PAYLOAD_IN_MB=0.25, SAGEMAKER_MODEL_SERVER_WORKERS=1) as server:
        baseline = _tree_rss(server.process.pid)
        peak = [baseline]
        done = threading.Event()

        def watch() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], _tree_rss(server.process.pid))
                done.wait(0.05)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            lines = {"Content-Type": "application/jsonlines"}
            status, answer = server.request("POST", "/invocations", body=body, headers=lines, timeout=300)
        finally:
            done.set()
            watcher.join(30)
    assert status == 200, answer[:500]
    assert len(answer.splitlines()) == body.count(b"\n") + 1
    growth = peak[0] - baseline
    records = len(answer.splitlines())
    print(f"{len(body)} B, {records} records: server RSS grew by {growth / 2**20:.0f} MiB")
    assert growth < BATCH_RSS_GROWTH_BOUND, f"server RSS grew by {growth / 2**20:.0f} MiB"


def _process_tree(pid: int, expected: int) -> list[int]:
    """The server's processes once there are ``expected`` of them.

    Polled: a worker may still be forking, or may briefly run a child of its own (ctypes'
    find_library runs ``ldconfig -p``) on a loaded machine.
    """
    import psutil

    deadline = time.monotonic() + START_DEADLINE_S
    while True:
        tree = [pid, *(child.pid for child in psutil.Process(pid).children(recursive=True))]
        if len(tree) == expected or time.monotonic() > deadline:
            return tree
        time.sleep(0.2)


def test_an_openvino_server_loads_no_torch_in_any_process(tmp_path):
    """torch and torchvision (672 MB of RSS) are mapped by no process of a server that runs
    OpenVINO: preprocessing is Pillow and numpy, normalization is in the compiled graph."""
    import numpy as np

    from classifier.artifacts import load_model
    from classifier.inference.export import export_model

    model_dir = make_model_dir(tmp_path)
    model, spec = load_model(model_dir)
    pixels = [np.asarray(photo(32, 32, seed)) for seed in range(8)]
    export_model(model, spec, model_dir, pixels, threads=2)
    with Server(tmp_path, SAGEMAKER_MODEL_SERVER_WORKERS=2) as server:
        status, answer = server.request("POST", "/invocations", encode(photo()), JPEG)
        assert status == 200 and len(json.loads(answer)["predictions"]) == 3
        assert "inference backend openvino" in server.log
        processes = _process_tree(server.process.pid, expected=3)
        assert len(processes) == 3, f"the master and its two workers: {processes}"
        for pid in processes:
            mapped = Path(f"/proc/{pid}/maps").read_text()
            assert "libtorch" not in mapped and "/torchvision/" not in mapped, f"process {pid} loaded torch"
