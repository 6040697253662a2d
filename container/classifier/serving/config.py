"""Serving settings: the environment read once, in the gunicorn master, into one object.

Everything the server tunes (workers, threads, batching, limits) is decided here from
the machine and the SageMaker environment, so the layout can be unit tested with any
CPU/GPU count and logged in one startup line.
"""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import overload

from classifier import constants, opt_ml
from classifier.constants import PrecisionName

# SageMaker kills a container that does not answer an invocation in 60 s; a shorter
# gunicorn timeout would kill a worker that SageMaker still waits for.
MIN_TIMEOUT_S = 60
# SageMaker sends SIGKILL 30 s after SIGTERM; drain in-flight requests well before.
GRACEFUL_TIMEOUT_S = 25
DEFAULT_TOP_K = 5
# CreateTransformJob: "The value of MaxPayloadInMB cannot be greater than 100 MB. If you specify
# the MaxConcurrentTransforms parameter, the value of (MaxConcurrentTransforms * MaxPayloadInMB)
# also cannot exceed 100 MB."
TRANSFORM_PAYLOAD_LIMIT_MB = 100
DEFAULT_CPU_MAX_BATCH = 8
DEFAULT_GPU_MAX_BATCH = 32
# 0: a batch is whatever is queued when the model is free; while it runs, the next
# batch accumulates. Measured on 2 cores: waiting added latency and no throughput.
DEFAULT_MAX_BATCH_DELAY_MS = 0.0
# 40 megapixels: above every common camera's JPEG. Pillow's own default (89 MP) is 270 MB
# decoded; 16 concurrent requests of that size took 8 GB on an 8 GB ml.m5.large.
DEFAULT_MAX_IMAGE_PIXELS = 40_000_000
# Images decoded at once per worker: with the pixel limit, this bounds decode memory
# (2 x 40 MP x 3 bytes = 240 MB per worker at worst; JPEGs decode reduced, see decode_image).
DEFAULT_MAX_CONCURRENT_DECODES = 2
BATCH_STRATEGIES = ("MULTI_RECORD", "SINGLE_RECORD")
DEVICES = ("cpu", "cuda")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
KEEPALIVE_S = 5


class ServingConfigError(ValueError):
    """An environment variable has a value the server cannot run with."""


def available_cpus(cgroup_root: str = "/sys/fs/cgroup") -> int:
    """Cores this process may use: CPU affinity, capped by a cgroup v2 quota (docker --cpus)."""
    cpus = len(os.sched_getaffinity(0))
    try:
        quota, period = Path(cgroup_root, "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return cpus
    if quota == "max":
        return cpus
    return max(1, min(cpus, math.ceil(int(quota) / int(period))))


def visible_gpus(dev_dir: str = "/dev") -> int:
    """GPUs torch can see, counted in a child process so the gunicorn master never touches CUDA.

    A CUDA driver initialised before fork breaks CUDA in every worker, and device_count()
    falls back to cuInit where NVML is missing, hence the probe process. Hosts without
    NVIDIA device nodes skip it.
    """
    if not any(Path(dev_dir).glob("nvidia[0-9]*")) or importlib.util.find_spec("torch") is None:
        return 0  # no GPU, or the serving image (CPU only: OpenVINO)
    probe = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    if result.returncode != 0:
        raise ServingConfigError(f"counting GPUs failed: {result.stderr.strip()[-500:]}")
    return int(result.stdout.strip().splitlines()[-1])


def _read(env: Mapping[str, str], name: str, parse, default, check=None, expected=""):
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = parse(raw)
    except ValueError:
        value = None
    if value is None or (check is not None and not check(value)):
        raise ServingConfigError(f"{name}={raw!r} is invalid: expected {expected}")
    return value


@overload
def _positive_int(env: Mapping[str, str], name: str, default: int) -> int: ...
@overload
def _positive_int(env: Mapping[str, str], name: str, default: None) -> int | None: ...
def _positive_int(env: Mapping[str, str], name: str, default: int | None) -> int | None:
    return _read(env, name, int, default, lambda v: v > 0, "a positive integer")


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...], default: str) -> str:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    value = raw.upper().replace("-", "_") if choices[0].isupper() else raw.lower()
    aliases = {choice.replace("_", ""): choice for choice in choices}
    value = aliases.get(value.replace("_", ""), value)
    if value not in choices:
        raise ServingConfigError(f"{name}={raw!r} is invalid: expected one of {', '.join(choices)}")
    return value


@dataclass(frozen=True)
class ServingSettings:
    """What the server runs with; ``torch_threads`` None means adaptive (see ThreadBudget)."""

    model_dir: Path
    bind_host: str
    port: int
    device: str
    cpu_count: int
    gpu_count: int
    workers: int
    worker_threads: int
    torch_threads: int | None
    timeout_s: int
    graceful_timeout_s: int
    keepalive_s: int
    max_payload_mb: float
    batch_strategy: str
    max_batch_size: int
    max_batch_delay_ms: float
    max_image_pixels: int
    max_concurrent_decodes: int
    default_top_k: int
    log_level: str
    inference_backend: str = "auto"
    inference_precision: PrecisionName = PrecisionName.AUTO
    multi_model: bool = False
    multi_model_memory_mb: int = 0

    @property
    def max_payload_bytes(self) -> int:
        return int(self.max_payload_mb * 1024 * 1024)

    @property
    def advertised_payload_mb(self) -> int | None:
        """MaxPayloadInMB for /execution-parameters: whole megabytes, rounded down (a mini-batch
        sized to a rounded-up figure would be refused with 413); below 1 MB none (0 asks for
        chunked transfers), and the job's own MaxPayloadInMB applies."""
        return int(self.max_payload_mb) if self.max_payload_mb >= 1 else None

    @property
    def concurrent_transforms(self) -> int:
        """MaxConcurrentTransforms for /execution-parameters: enough requests in flight for each
        worker's micro-batcher to gather full batches (a request per worker left every batch at
        one image: 0.31x of what the CPU can do), within CreateTransformJob's "(MaxConcurrentTransforms
        * MaxPayloadInMB) also cannot exceed 100 MB" for the payload the job will use."""
        wanted = self.workers * min(self.max_batch_size, self.worker_threads)
        payload = self.advertised_payload_mb or constants.DEFAULT_MAX_PAYLOAD_MB
        return max(1, min(wanted, TRANSFORM_PAYLOAD_LIMIT_MB // payload))

    @property
    def adaptive_threads(self) -> bool:
        return self.torch_threads is None

    def threads_when_alone(self) -> int:
        """Intra-op threads for a forward pass while no other worker is busy."""
        if self.torch_threads is not None:
            return self.torch_threads
        return self.cpu_count

    def describe(self) -> str:
        threads = (
            f"adaptive {max(1, self.cpu_count // self.workers)}-{self.cpu_count}"
            if self.adaptive_threads
            else str(self.torch_threads)
        )
        return (
            f"workers={self.workers} worker_threads={self.worker_threads} "
            f"torch_threads={threads} device={self.device} cpus={self.cpu_count} "
            f"gpus={self.gpu_count} max_batch_size={self.max_batch_size} "
            f"max_batch_delay_ms={self.max_batch_delay_ms:g} timeout={self.timeout_s}s "
            f"max_payload={self.max_payload_mb:g}MB bind={self.bind_host}:{self.port}"
        )

    @classmethod
    def from_env(
        cls,
        env: Mapping[str, str] | None = None,
        cpu_count: int | None = None,
        gpu_count: int | None = None,
    ) -> ServingSettings:
        """Read and validate the serving environment; counts are injectable for tests."""
        env = os.environ if env is None else env
        base_dir = opt_ml.base_dir(env)
        cpus = available_cpus() if cpu_count is None else cpu_count
        device, gpu_count = _device(env, gpu_count)
        default_workers = gpu_count if device == "cuda" else min(cpus, constants.MAX_DEFAULT_CPU_WORKERS)
        workers = _positive_int(env, constants.MODEL_SERVER_WORKERS_ENV, default_workers)
        multi_model = _multi_model(env)
        if multi_model:
            # One process holds the table of loaded models (see serving/multi_model.py).
            workers = 1
        torch_threads = _positive_int(env, constants.SERVING_TORCH_THREADS_ENV, None)
        if torch_threads is None and device == "cuda":
            # On a GPU the CPU only preprocesses: split it evenly, nothing to adapt.
            torch_threads = max(1, cpus // workers)
        batching = _batching(env, device)
        timeout = _positive_int(env, constants.MODEL_SERVER_TIMEOUT_ENV, MIN_TIMEOUT_S)
        return cls(
            model_dir=base_dir / constants.MODEL_DIR,
            bind_host=env.get(constants.SERVING_BIND_HOST_ENV, "").strip() or "0.0.0.0",
            port=_read(
                env,
                constants.BIND_TO_PORT_ENV,
                int,
                constants.DEFAULT_PORT,
                lambda v: 0 < v < 65536,
                "a TCP port (1-65535)",
            ),  # fmt: skip
            device=device,
            cpu_count=cpus,
            gpu_count=gpu_count,
            workers=workers,
            torch_threads=torch_threads,
            timeout_s=max(MIN_TIMEOUT_S, timeout),
            graceful_timeout_s=GRACEFUL_TIMEOUT_S,
            keepalive_s=KEEPALIVE_S,
            **batching,
            **_request_limits(env),
            default_top_k=DEFAULT_TOP_K,
            log_level=_choice(env, constants.SERVING_LOG_LEVEL_ENV, LOG_LEVELS, "INFO"),
            **_inference(env),
            multi_model=multi_model,
            multi_model_memory_mb=_multi_model_memory_mb(env) if multi_model else 0,
        )


def _multi_model(env: Mapping[str, str]) -> bool:
    raw = env.get(constants.MULTI_MODEL_ENV, "").strip().lower()
    if raw not in ("", "true", "false"):
        raise ServingConfigError(f"{constants.MULTI_MODEL_ENV}={raw!r} is invalid: expected true or false")
    return raw == "true"


def _multi_model_memory_mb(env: Mapping[str, str]) -> int:
    from classifier.serving.memory import default_budget_mb

    return _positive_int(env, constants.MULTI_MODEL_MEMORY_MB_ENV, None) or default_budget_mb()


def _device(env: Mapping[str, str], gpu_count: int | None) -> tuple[str, int]:
    """``cuda`` when a GPU is visible unless the environment says otherwise; and the GPU count."""
    device = _choice(env, constants.SERVING_DEVICE_ENV, DEVICES, "")
    if gpu_count is None:
        gpu_count = 0 if device == "cpu" else visible_gpus()
    if not device:
        device = "cuda" if gpu_count > 0 else "cpu"
    if device == "cuda" and gpu_count == 0:
        raise ServingConfigError(
            f"{constants.SERVING_DEVICE_ENV}=cuda but no GPU is visible to this container"
        )
    return device, gpu_count


def _batching(env: Mapping[str, str], device: str) -> dict:
    default_batch = DEFAULT_GPU_MAX_BATCH if device == "cuda" else DEFAULT_CPU_MAX_BATCH
    max_batch_size = _positive_int(env, constants.SERVING_MAX_BATCH_SIZE_ENV, default_batch)
    return {
        "max_batch_size": max_batch_size,
        "max_batch_delay_ms": _read(
            env,
            constants.SERVING_MAX_BATCH_DELAY_MS_ENV,
            float,
            DEFAULT_MAX_BATCH_DELAY_MS,
            lambda v: 0 <= v <= 1000,
            "milliseconds between 0 and 1000",
        ),  # fmt: skip
        # Enough request threads that full batches gather while one runs, and that /ping
        # finds a free thread instead of queueing behind invocations.
        "worker_threads": _positive_int(
            env, constants.SERVING_WORKER_THREADS_ENV, max(16, 4 * max_batch_size)
        ),
    }


def _request_limits(env: Mapping[str, str]) -> dict:
    return {
        "max_payload_mb": _read(
            env,
            constants.MAX_PAYLOAD_IN_MB_ENV,
            float,
            float(constants.DEFAULT_MAX_PAYLOAD_MB),
            lambda v: 0 < v <= 1024,
            "megabytes between 0 and 1024",
        ),  # fmt: skip
        "batch_strategy": _choice(env, constants.BATCH_STRATEGY_ENV, BATCH_STRATEGIES, BATCH_STRATEGIES[0]),
        "max_image_pixels": _positive_int(
            env, constants.SERVING_MAX_IMAGE_PIXELS_ENV, DEFAULT_MAX_IMAGE_PIXELS
        ),
        "max_concurrent_decodes": _positive_int(
            env, constants.SERVING_MAX_CONCURRENT_DECODES_ENV, DEFAULT_MAX_CONCURRENT_DECODES
        ),
    }


def _inference(env: Mapping[str, str]) -> dict:
    backends, precisions = constants.INFERENCE_BACKENDS, constants.INFERENCE_PRECISIONS
    return {
        "inference_backend": _choice(env, constants.INFERENCE_BACKEND_ENV, backends, backends[0]),
        "inference_precision": PrecisionName(
            _choice(env, constants.INFERENCE_PRECISION_ENV, precisions, precisions[0])
        ),
    }
