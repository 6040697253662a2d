"""Prometheus metrics of the model server, summed over every gunicorn worker.

Each worker is its own process, so the metrics use prometheus-client's multiprocess mode:
every process writes its values to files in ``PROMETHEUS_MULTIPROC_DIR`` and /metrics,
whichever worker answers it, reads them all. prometheus-client picks that mode when it
is first imported, from the environment, so nothing here imports it at import time: the
gunicorn master sets the directory (:func:`prepare_multiprocess_dir`) before any worker
forks, and a process without it (the in-process Flask tests) gets plain in-memory metrics.

SageMaker routes only /ping and /invocations to a container: /metrics serves
``docker run`` and self-hosted deployments.
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import sys
import tempfile
import threading
from collections.abc import Callable, Iterable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

from classifier import constants

logger = logging.getLogger(__name__)

MULTIPROC_DIR_ENV = constants.PROMETHEUS_MULTIPROC_DIR_ENV
# Requests that match no route (404 probes) share one label instead of one per path.
UNMATCHED_ROUTE = "unmatched"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64)
QUEUE_WAIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Without a backend or precision on the predictor, it is the trained module in float32.
DEFAULT_BACKEND = "torch"
DEFAULT_PRECISION = constants.PrecisionName.FP32

_lock = threading.Lock()
_metrics: SimpleNamespace | None = None


def _define() -> SimpleNamespace:
    from prometheus_client import Counter, Gauge, Histogram

    return SimpleNamespace(
        requests=Counter(
            "classifier_requests", "HTTP requests answered, by route and status.", ["route", "status"]
        ),
        latency=Histogram(
            "classifier_request_latency_seconds",
            "Time from the start of a request to its response, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
        ),
        batch_size=Histogram(
            "classifier_batch_size",
            "Images per forward pass of the micro-batcher.",
            buckets=BATCH_SIZE_BUCKETS,
        ),
        queue_wait=Histogram(
            "classifier_queue_wait_seconds",
            "Time an image waits in the micro-batcher's queue before its forward pass starts.",
            buckets=QUEUE_WAIT_BUCKETS,
        ),
        # live*: a worker that died takes its values with it (mark_worker_dead).
        model_load=Gauge(
            "classifier_model_load_seconds",
            "Time the slowest live worker took to load and warm up the model.",
            multiprocess_mode="livemax",
        ),
        model_info=Gauge(
            "classifier_model_info",
            "The model being served and the engine running it (always 1).",
            ["backend", "precision", "architecture"],
            multiprocess_mode="livemax",
        ),
    )


def _get() -> SimpleNamespace:
    """The metrics of this process, defined on first use (a second definition would clash)."""
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = _define()
    return _metrics


def _never_raise(function: Callable) -> Callable:
    """Metrics must not fail a request nor stop the batcher thread (a full disk, say): log once."""
    failed = threading.Event()

    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            function(*args, **kwargs)
        except Exception:  # noqa: BLE001 - any failure to record is only logged
            if not failed.is_set():
                failed.set()
                logger.exception("recording metrics failed in %s (logged once)", function.__name__)

    wrapper.failed = failed  # type: ignore[attr-defined]  # the once-flag, for tests to read and clear
    return wrapper


@_never_raise
def observe_request(route: str | None, status: int, seconds: float) -> None:
    """One answered request; ``route`` is the URL rule, None when no rule matched."""
    metrics = _get()
    route = route or UNMATCHED_ROUTE
    metrics.requests.labels(route=route, status=str(status)).inc()
    metrics.latency.labels(route=route).observe(seconds)


@_never_raise
def observe_batch(size: int, waits: Iterable[float]) -> None:
    """A forward pass of ``size`` images that waited ``waits`` seconds in the queue."""
    metrics = _get()
    metrics.batch_size.observe(size)
    for wait in waits:
        metrics.queue_wait.observe(max(0.0, wait))


@_never_raise
def record_model(predictor) -> None:
    """Load time and engine of this worker's predictor (attributes read only if present)."""
    metrics = _get()
    load_seconds = getattr(predictor, "load_seconds", None)
    if load_seconds is not None:
        metrics.model_load.set(load_seconds)
    spec = getattr(predictor, "spec", None)
    metrics.model_info.labels(
        backend=getattr(predictor, "backend_name", None) or DEFAULT_BACKEND,
        precision=getattr(predictor, "precision", None) or DEFAULT_PRECISION,
        architecture=getattr(spec, "architecture", None) or "unknown",
    ).set(1)


def multiprocess_enabled() -> bool:
    """Whether this process writes its metrics to files (decided when prometheus-client loaded)."""
    from prometheus_client import values

    return values.ValueClass is not values.MutexValue


def exposition() -> tuple[bytes, str]:
    """The /metrics body in the Prometheus text format, and its content type."""
    import prometheus_client
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

    _get()
    if multiprocess_enabled():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = prometheus_client.REGISTRY
    return generate_latest(registry), CONTENT_TYPE_LATEST


def mark_worker_dead(pid: int | None, environ: MutableMapping[str, str] = os.environ) -> None:
    """Master, when a worker exits: drop its live gauges (its counters still count)."""
    if pid is None or not environ.get(MULTIPROC_DIR_ENV):
        return
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid, environ[MULTIPROC_DIR_ENV])


@dataclass(frozen=True)
class MultiprocessDir:
    """The directory every worker writes its metrics to; only the master removes it."""

    path: Path
    created: bool
    owner_pid: int

    def cleanup(self) -> None:
        # Workers leave the master's run() through the same stack (gunicorn forks inside it).
        if os.getpid() != self.owner_pid:
            return
        if self.created:
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            _remove_metric_files(self.path)


def prepare_multiprocess_dir(environ: MutableMapping[str, str] = os.environ) -> MultiprocessDir:
    """Master, before any worker forks: an empty metrics directory, named in ``environ``.

    A directory the user names is emptied of metric files, as prometheus-client requires
    between runs; otherwise a temporary one is made and removed on exit.
    """
    if "prometheus_client" in sys.modules and not multiprocess_enabled():
        logger.warning(
            "prometheus_client was imported before %s was set: /metrics shows one worker only",
            MULTIPROC_DIR_ENV,
        )
    given = environ.get(MULTIPROC_DIR_ENV, "").strip()
    if given:
        path = Path(given)
        path.mkdir(parents=True, exist_ok=True)
        _remove_metric_files(path)
    else:
        path = Path(tempfile.mkdtemp(prefix="classifier-metrics-"))
        environ[MULTIPROC_DIR_ENV] = str(path)
    logger.info("workers write their metrics to %s", path)
    return MultiprocessDir(path, created=not given, owner_pid=os.getpid())


def _remove_metric_files(path: Path) -> None:
    for file in path.glob("*.db"):
        file.unlink(missing_ok=True)
