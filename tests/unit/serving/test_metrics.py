"""GET /metrics: in-process through the Flask client, and summed over two real gunicorn workers."""

from __future__ import annotations

import http.client
import logging
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from classifier.serving import metrics

from .conftest import encode, photo
from .test_process import REPO, Server

JPEG = {"Content-Type": "image/jpeg"}


def sample(text: str, name: str, **labels) -> float:
    """The value of one sample in a /metrics body; 0 when absent (nothing counted yet)."""
    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and all(found.labels.get(k) == v for k, v in labels.items()):
                return found.value
    return 0.0


def scrape(client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.content_type.startswith("text/plain")
    return response.get_data(as_text=True)


def test_requests_are_counted_by_route_and_status(client, jpeg_bytes):
    before = scrape(client)
    for _ in range(3):
        assert client.get("/ping").status_code == 200
    for _ in range(2):
        assert client.post("/invocations", data=jpeg_bytes, headers=JPEG).status_code == 200
    assert client.post("/invocations", data=b"junk", headers=JPEG).status_code == 400
    assert client.get("/wp-admin/probe.php").status_code == 404
    after = scrape(client)

    def delta(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    total = "classifier_requests_total"
    assert delta(total, route="/ping", status="200") == 3
    assert delta(total, route="/invocations", status="200") == 2
    assert delta(total, route="/invocations", status="400") == 1
    assert delta(total, route="unmatched", status="404") == 1
    assert "/wp-admin/probe.php" not in after
    assert delta("classifier_request_latency_seconds_count", route="/invocations") == 3
    assert delta("classifier_request_latency_seconds_sum", route="/invocations") > 0
    # One image per request, sent one at a time: two forward passes of one image.
    assert delta("classifier_batch_size_count") == 2
    assert delta("classifier_batch_size_bucket", le="1.0") == 2
    assert delta("classifier_queue_wait_seconds_count") == 2
    assert delta("classifier_queue_wait_seconds_sum") >= 0


def test_model_load_time_and_engine_are_reported(client):
    text = scrape(client)
    assert sample(text, "classifier_model_load_seconds") > 0
    info = sample(text, "classifier_model_info", backend="torch", precision="fp32", architecture="resnet18")
    assert info == 1


def test_a_batch_observes_its_size_and_each_queue_wait(client):
    before = scrape(client)
    metrics.observe_batch(5, [0.5, 0.5, 0.5, 0.5, 0.5])
    after = scrape(client)
    assert (
        sample(after, "classifier_batch_size_bucket", le="8.0")
        - sample(before, "classifier_batch_size_bucket", le="8.0")
        == 1
    )
    assert sample(after, "classifier_batch_size_bucket", le="4.0") == sample(
        before, "classifier_batch_size_bucket", le="4.0"
    )
    assert (
        sample(after, "classifier_queue_wait_seconds_count")
        - sample(before, "classifier_queue_wait_seconds_count")
        == 5
    )


def test_a_failure_to_record_never_reaches_the_caller_and_is_logged_once(monkeypatch, caplog):
    def broken():
        raise OSError("no space left on device")

    monkeypatch.setattr(metrics, "_get", broken)
    try:
        with caplog.at_level(logging.ERROR, logger=metrics.__name__):
            for _ in range(3):
                assert metrics.observe_batch(1, [0.0]) is None
                assert metrics.observe_request("/ping", 200, 0.01) is None
        logged = [r.getMessage() for r in caplog.records if "recording metrics failed" in r.getMessage()]
        assert logged == [
            "recording metrics failed in observe_batch (logged once)",
            "recording metrics failed in observe_request (logged once)",
        ]
        assert "no space left on device" in caplog.text
    finally:
        metrics.observe_batch.failed.clear()
        metrics.observe_request.failed.clear()


def test_importing_the_server_leaves_prometheus_client_unloaded():
    """prometheus-client picks multiprocess mode at import: the master must set the dir first."""
    probe = (
        "import sys; import classifier.serving.gunicorn_app, classifier.serving.serve; "
        "assert 'prometheus_client' not in sys.modules, 'imported too early'"
    )
    environment = {**os.environ, "PYTHONPATH": str(REPO / "container")}
    result = subprocess.run([sys.executable, "-c", probe], env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_a_named_dir_is_emptied_of_metric_files_before_and_after(tmp_path):
    directory = tmp_path / "prometheus"
    directory.mkdir()
    (directory / "counter_123.db").write_bytes(b"stale")
    (directory / "keep.txt").write_text("not ours")
    environ = {metrics.MULTIPROC_DIR_ENV: str(directory)}
    prepared = metrics.prepare_multiprocess_dir(environ)
    assert not (directory / "counter_123.db").exists()
    (directory / "counter_456.db").write_bytes(b"this run")
    prepared.cleanup()
    assert sorted(p.name for p in directory.iterdir()) == ["keep.txt"]


def test_a_dead_worker_takes_only_its_live_gauges(tmp_path):
    for name in ("gauge_livemax_123.db", "gauge_livemax_456.db", "counter_123.db"):
        (tmp_path / name).write_bytes(b"")
    metrics.mark_worker_dead(123, {metrics.MULTIPROC_DIR_ENV: str(tmp_path)})
    metrics.mark_worker_dead(None, {metrics.MULTIPROC_DIR_ENV: str(tmp_path)})
    metrics.mark_worker_dead(456, {})  # single-process mode: nothing to do
    assert sorted(p.name for p in tmp_path.iterdir()) == ["counter_123.db", "gauge_livemax_456.db"]


def test_without_a_dir_a_temporary_one_is_made_and_only_its_owner_removes_it():
    environ: dict[str, str] = {}
    prepared = metrics.prepare_multiprocess_dir(environ)
    path = Path(environ[metrics.MULTIPROC_DIR_ENV])
    try:
        assert path == prepared.path and path.is_dir()
        metrics.MultiprocessDir(path, created=True, owner_pid=os.getpid() + 1).cleanup()
        assert path.is_dir()
    finally:
        prepared.cleanup()
    assert not path.exists()


# -- two real gunicorn workers ----------------------------------------------------------

DEADLINE_S = 60
REQUESTS_PER_ROUND = 8
CONNECTIONS = 4
METRICS_DIR_LINE = re.compile(r"workers write their metrics to (\S+)")


def _pids_serving(log: str, method: str, path: str) -> set[str]:
    """Worker pids whose request log lines show ``method path`` answered."""
    pattern = re.compile(rf"\[(\d+)\] \[INFO\] classifier\.serving\.requests: {method} {re.escape(path)} ")
    return set(pattern.findall(log))


def _send_round(server: Server, body: bytes) -> list[int]:
    """REQUESTS_PER_ROUND invocations spread over CONNECTIONS keep-alive connections."""
    statuses: list[int] = []
    lock = threading.Lock()

    def client(count: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        try:
            for _ in range(count):
                connection.request("POST", "/invocations", body=body, headers=JPEG)
                response = connection.getresponse()
                response.read()
                with lock:
                    statuses.append(response.status)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=client, args=(REQUESTS_PER_ROUND // CONNECTIONS,)) for _ in range(CONNECTIONS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_S)
    return statuses


@pytest.fixture
def two_workers(base_dir, monkeypatch):
    # The default: no directory named, so the server makes and removes its own.
    monkeypatch.delenv(metrics.MULTIPROC_DIR_ENV, raising=False)
    with Server(base_dir, SAGEMAKER_MODEL_SERVER_WORKERS=2) as server:
        yield server


@pytest.mark.slow
def test_metrics_sum_requests_over_both_workers(two_workers):
    server = two_workers
    body = encode(photo(), "JPEG")
    statuses: list[int] = []
    # Keep sending until both workers answered invocations, so the sum spans two processes.
    deadline = time.monotonic() + DEADLINE_S
    while len(_pids_serving(server.log, "POST", "/invocations")) < 2:
        assert time.monotonic() < deadline, f"one worker answered everything:\n{server.log}"
        statuses += _send_round(server, body)
    assert statuses and set(statuses) == {200}, statuses
    sent = len(statuses)

    # Each scrape is a new connection, answered by either worker: every one sees the sum.
    scrapes: list[str] = []
    while len(_pids_serving(server.log, "GET", "/metrics")) < 2 or len(scrapes) < 3:
        assert time.monotonic() < deadline + DEADLINE_S, f"one worker answered every scrape:\n{server.log}"
        status, text = server.request("GET", "/metrics")
        assert status == 200
        scrapes.append(text.decode())
    for text in scrapes:
        assert sample(text, "classifier_requests_total", route="/invocations", status="200") == sent
        assert sample(text, "classifier_request_latency_seconds_count", route="/invocations") == sent
        assert sample(text, "classifier_batch_size_count") >= 2  # warm-up of each worker, at least
        assert sample(text, "classifier_model_load_seconds") > 0
        assert sample(text, "classifier_model_info", backend="torch", architecture="resnet18") == 1
    print(scrapes[-1])

    directory = Path(METRICS_DIR_LINE.search(server.log).group(1))
    assert any(directory.glob("counter_*.db"))
    server.stop()
    assert server.process.returncode == 0
    assert not directory.exists(), "the metrics directory outlived the server"
