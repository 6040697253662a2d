"""gunicorn, configured in code from :class:`ServingSettings` through its own settings and hooks.

The master never imports a model nor touches CUDA: each worker loads the model after
fork (``load`` runs in the worker), on its own GPU when there are GPUs. gthread workers
keep a thread free for /ping while others wait on the model.
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import shutil
import socket
import tempfile

from gunicorn.app.base import BaseApplication

from classifier.artifacts import ModelSpec
from classifier.serving import metrics
from classifier.serving.app import build_single_model_app
from classifier.serving.config import ServingSettings

logger = logging.getLogger(__name__)


def gunicorn_options(settings: ServingSettings) -> dict:
    """gunicorn settings (by their config-file names) for ``settings``."""
    options = {
        "bind": [f"{settings.bind_host}:{settings.port}"],
        "workers": settings.workers,
        "worker_class": "gthread",
        "threads": settings.worker_threads,
        "timeout": settings.timeout_s,
        "graceful_timeout": settings.graceful_timeout_s,
        "keepalive": settings.keepalive_s,
        "preload_app": False,
        # One line per request comes from the app, with latency and sizes.
        "accesslog": None,
        "errorlog": "-",
        "loglevel": settings.log_level.lower(),
        # Would otherwise create $HOME/.gunicorn/gunicorn.ctl inside the container.
        "control_socket_disable": True,
        "proc_name": "classifier-serve",
    }
    if settings.workers > 1 and hasattr(socket, "SO_REUSEPORT"):
        # Each worker opens its own SO_REUSEPORT socket on the port after fork (gunicorn's
        # reuse_port), and the kernel spreads new connections over them by their addresses.
        # With one socket shared by the gthread workers, the worker that woke first accepted
        # every connection of a burst: the 16 keep-alive connections of a batch transform all
        # sat in one worker, whose one GIL carried every request while the others idled. A
        # worker's socket lives and dies with it: its replacement listens from its fork, so
        # connections hashed to it wait for its model to load (about 1 s on a CPU).
        options["reuse_port"] = True
    if os.path.isdir("/dev/shm"):
        # Worker heartbeats on a tmpfs: a slow overlay filesystem cannot stall them.
        options["worker_tmp_dir"] = "/dev/shm"
    return options


class ServingApplication(BaseApplication):
    """gunicorn's master, with one shared busy flag per worker slot made before fork."""

    def __init__(self, settings: ServingSettings, spec: ModelSpec | None):
        self.settings = settings
        self.spec = spec
        self.busy_flags = multiprocessing.RawArray(ctypes.c_uint8, settings.workers)
        self._slot_owner: dict[int, object] = {}
        self.worker_slot: int | None = None
        self.worker_age = 0
        # Multi-model: where the master keeps the table of loaded models (see model_table).
        self.model_table_dir: str | None = None
        super().__init__()

    def load_config(self) -> None:
        for key, value in gunicorn_options(self.settings).items():
            self.cfg.set(key, value)
        self.cfg.set("pre_fork", self.pre_fork)
        self.cfg.set("post_fork", self.post_fork)
        self.cfg.set("child_exit", self.child_exit)
        self.cfg.set("when_ready", self.when_ready)

    def pre_fork(self, server, worker) -> None:
        """Master: give the worker a free slot (its busy flag and its GPU)."""
        free = [s for s in range(self.settings.workers) if s not in self._slot_owner]
        worker.serving_slot = free[0] if free else None
        if worker.serving_slot is not None:
            self._slot_owner[worker.serving_slot] = worker

    def post_fork(self, server, worker) -> None:
        """Worker: remember the slot for ``load``, which runs next in this process."""
        self.worker_slot = worker.serving_slot
        self.worker_age = worker.age

    def child_exit(self, server, worker) -> None:
        """Master: a dead worker's slot is free again, and not busy; its live gauges go."""
        slot = getattr(worker, "serving_slot", None)
        if slot is not None and self._slot_owner.get(slot) is worker:
            del self._slot_owner[slot]
            self.busy_flags[slot] = 0
        metrics.mark_worker_dead(getattr(worker, "pid", None))

    def when_ready(self, server) -> None:
        if self.spec is None:
            logger.info("starting to serve a multi-model endpoint: %s", self.settings.describe())
            return
        names = ", ".join(self.spec.class_names[:5])
        more = ", ..." if self.spec.num_classes > 5 else ""
        logger.info(
            "starting to serve %s with %d classes (%s%s) from %s: %s",
            self.spec.architecture,
            self.spec.num_classes,
            names,
            more,
            self.settings.model_dir,
            self.settings.describe(),
        )

    def run(self):
        """Master: the metrics directory is in the environment before any worker forks (and
        imports prometheus-client), and removed however the master stops; so is the table
        of a multi-model endpoint's loaded models."""
        metrics_dir = metrics.prepare_multiprocess_dir()
        master = os.getpid()
        if self.settings.multi_model:
            self.model_table_dir = tempfile.mkdtemp(prefix="classifier-models-")
        try:
            super().run()
        finally:
            metrics_dir.cleanup()
            # A worker leaves through here too (SystemExit after fork): only the master removes.
            if self.model_table_dir is not None and os.getpid() == master:
                shutil.rmtree(self.model_table_dir, ignore_errors=True)

    def load(self):
        slot = self.worker_slot
        device_index = slot if slot is not None else self.worker_age
        if self.settings.multi_model:
            from classifier.serving.model_table import ModelTable
            from classifier.serving.multi_model_app import build_multi_model_app

            assert self.model_table_dir is not None, "the master makes the table's folder before fork"
            table = ModelTable(self.model_table_dir)
            return build_multi_model_app(self.settings, slot, self.busy_flags, device_index, table)
        return build_single_model_app(self.settings, slot, self.busy_flags, device_index)
