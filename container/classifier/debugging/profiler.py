"""A low-overhead training profiler: system utilisation over time, step time split, advice.

It gives every user what SageMaker's ProfilerReport gave the seeds (LowGPUUtilization,
BatchSize, CPUBottleneck, Dataloader), without the managed rule containers: a daemon
thread samples CPU, memory and GPU every ``interval_ms``; the training loop reports each
step's data-wait and compute time. ``summary()`` turns both into timelines
(profile_summary.py) and recommendations, each with the numbers behind it (recommendations.py).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import threading
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from classifier import constants
from classifier.debugging import profile_summary
from classifier.debugging.profile_summary import Samples
from classifier.debugging.recommendations import ProfileFacts, recommend

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_MS = 500  # SageMaker's default system monitor interval
MAX_POINTS = 100_000  # per series; older points are thinned 2:1 beyond this


@dataclass(frozen=True)
class ProfilerSettings:
    enabled: bool
    interval_ms: int = DEFAULT_INTERVAL_MS
    source: str = "default"
    parameters: dict = field(default_factory=dict)


def _lower_keys(value):
    if isinstance(value, dict):
        return {str(k).lower(): _lower_keys(v) for k, v in value.items()}
    return value


def profiler_settings(base_dir: Path, enabled_default: bool = True) -> ProfilerSettings:
    """Settings from SageMaker's ``input/config/profilerconfig.json``, else the defaults.

    The file mirrors CreateTrainingJob's ProfilerConfig: ``DisableProfiler``,
    ``ProfilingIntervalInMilliseconds`` and ``ProfilingParameters`` (a string map whose
    framework configs, e.g. ``DataloaderProfilingConfig``, are JSON strings). Keys are
    matched case-insensitively, as smdebug does. Without the file (local runs) profiling
    is on at the default interval unless ``enabled_default`` is False.
    """
    path = Path(base_dir) / constants.PROFILER_CONFIG_FILE
    if not path.exists():
        return ProfilerSettings(enabled=enabled_default, source="default")
    try:
        config = _lower_keys(json.loads(path.read_text()))
    except json.JSONDecodeError as error:
        logger.warning("ignoring unreadable %s (%s); profiling with defaults", path, error)
        return ProfilerSettings(enabled=enabled_default, source=f"default ({path.name} unreadable)")
    if not isinstance(config, dict):
        logger.warning("ignoring %s: not a JSON object; profiling with defaults", path)
        return ProfilerSettings(enabled=enabled_default, source=f"default ({path.name} invalid)")
    disabled = str(config.get("disableprofiler", False)).strip().lower() == "true"
    try:
        interval = int(float(config.get("profilingintervalinmilliseconds", DEFAULT_INTERVAL_MS)))
    except (TypeError, ValueError):
        logger.warning("%s: bad ProfilingIntervalInMilliseconds; using %d", path, DEFAULT_INTERVAL_MS)
        interval = DEFAULT_INTERVAL_MS
    parameters = {}
    for key, value in (config.get("profilingparameters") or {}).items():
        if isinstance(value, str) and value.strip().startswith("{"):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                logger.warning("%s: ProfilingParameters.%s is not JSON; kept as text", path, key)
        parameters[key] = value
    return ProfilerSettings(
        enabled=not disabled, interval_ms=max(interval, 50), source=str(path), parameters=parameters
    )


# --- GPU sampling ------------------------------------------------------------------------


class NvmlGpuSampler:
    """GPU utilisation and memory through NVML (nvidia-ml-py), a few microseconds a call."""

    def __init__(self, nvml) -> None:
        self._nvml = nvml
        nvml.nvmlInit()
        self._handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())]

    def sample(self) -> list[tuple[float, float]]:
        """(utilisation %, memory used %) per GPU."""
        result = []
        for handle in self._handles:
            util = self._nvml.nvmlDeviceGetUtilizationRates(handle)
            memory = self._nvml.nvmlDeviceGetMemoryInfo(handle)
            result.append((float(util.gpu), 100.0 * memory.used / max(memory.total, 1)))
        return result

    def close(self) -> None:
        self._nvml.nvmlShutdown()


class SmiGpuSampler:
    """Fallback through ``nvidia-smi`` (a process per sample: use only without NVML)."""

    QUERY = [
        "--query-gpu=utilization.gpu,memory.used,memory.total",
        "--format=csv,noheader,nounits",
    ]

    def __init__(self, executable: str) -> None:
        self._executable = executable

    def sample(self) -> list[tuple[float, float]]:
        out = subprocess.run(
            [self._executable, *self.QUERY], capture_output=True, text=True, timeout=5, check=True
        ).stdout
        return self.parse(out)

    @staticmethod
    def parse(text: str) -> list[tuple[float, float]]:
        result = []
        for line in text.strip().splitlines():
            util, used, total = (float(part) for part in line.split(","))
            result.append((util, 100.0 * used / max(total, 1.0)))
        return result

    def close(self) -> None:
        return None


def detect_gpu_sampler(device: str):
    """NVML when importable, else nvidia-smi, else None (CPU training)."""
    if not device.startswith("cuda"):
        return None
    try:
        import pynvml  # provided by nvidia-ml-py
    except ImportError:
        pynvml = None
    if pynvml is not None:
        try:
            return NvmlGpuSampler(pynvml)
        except pynvml.NVMLError as error:
            logger.warning("NVML unavailable (%s); trying nvidia-smi", error)
    executable = shutil.which("nvidia-smi")
    return SmiGpuSampler(executable) if executable else None


# --- the profiler ----------------------------------------------------------------------------


class _Series:
    """A bounded float series: beyond MAX_POINTS every other point is dropped (stride doubles)."""

    def __init__(self) -> None:
        self.values = array("d")
        self.stride = 1
        self._skip = 0

    def append(self, value: float) -> None:
        self._skip += 1
        if self._skip < self.stride:
            return
        self._skip = 0
        self.values.append(value)
        if len(self.values) >= MAX_POINTS:
            self.values = self.values[::2]
            self.stride *= 2


class TrainingProfiler:
    """Context manager around the training loop; ``record_step`` once per train step."""

    def __init__(
        self,
        settings: ProfilerSettings,
        num_workers: int,
        batch_size: int,
        device: str,
        *,
        gpu_sampler=None,
        cpu_count: int | None = None,
    ) -> None:
        self.settings = settings
        self.num_workers = num_workers
        self.batch_size = batch_size
        self.device = device
        self.cpu_count = cpu_count or os.cpu_count() or 1
        self._gpu = gpu_sampler
        self._gpu_given = gpu_sampler is not None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._started: float | None = None
        self._ended: float | None = None
        self._time, self._cpu, self._memory = _Series(), _Series(), _Series()
        self._cores: list[_Series] = []
        self._gpu_util: list[_Series] = []
        self._gpu_memory: list[_Series] = []
        self._sample_errors = 0
        self._data, self._compute, self._images = _Series(), _Series(), _Series()
        self._totals = {"steps": 0, "images": 0, "data": 0.0, "compute": 0.0}

    # -- lifecycle --
    def __enter__(self) -> TrainingProfiler:
        self._started = time.monotonic()
        if not self.settings.enabled:
            return self
        if self._gpu is None:
            self._gpu = detect_gpu_sampler(self.device)
        psutil.cpu_percent(percpu=True)  # prime: the first call always returns 0.0
        self._thread = threading.Thread(target=self._run, name="training-profiler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._ended = time.monotonic()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._gpu is not None and not self._gpu_given:
            self._gpu.close()

    def _run(self) -> None:
        interval = self.settings.interval_ms / 1000.0
        while not self._stop.wait(interval):
            self.sample_once()

    def sample_once(self) -> None:
        """Take one sample now (the thread calls this; tests call it directly)."""
        now = time.monotonic() - (self._started or time.monotonic())
        cores = psutil.cpu_percent(percpu=True)
        memory = psutil.virtual_memory().percent
        gpus: list[tuple[float, float]] = []
        if self._gpu is not None:
            try:
                gpus = self._gpu.sample()
            except (OSError, subprocess.SubprocessError, ValueError) as error:
                self._sample_errors += 1
                if self._sample_errors == 1:
                    logger.warning("GPU sampling failed (%s); GPU timelines will have gaps", error)
        with self._lock:
            self._time.append(now)
            self._cpu.append(sum(cores) / max(len(cores), 1))
            self._memory.append(memory)
            while len(self._cores) < len(cores):
                self._cores.append(_Series())
            for series, value in zip(self._cores, cores, strict=False):
                series.append(value)
            while len(self._gpu_util) < len(gpus):
                self._gpu_util.append(_Series())
                self._gpu_memory.append(_Series())
            for index, (util, mem) in enumerate(gpus):
                self._gpu_util[index].append(util)
                self._gpu_memory[index].append(mem)

    def record_step(self, data_seconds: float, compute_seconds: float, batch_size: int) -> None:
        """One training step: time spent waiting for the batch and time computing on it."""
        self._totals["steps"] += 1
        self._totals["images"] += batch_size
        self._totals["data"] += data_seconds
        self._totals["compute"] += compute_seconds
        self._data.append(data_seconds)
        self._compute.append(compute_seconds)
        self._images.append(float(batch_size))

    # -- results --
    def _samples(self) -> Samples:
        with self._lock:  # the sampling thread appends to these
            times, cpu, memory = (list(s.values) for s in (self._time, self._cpu, self._memory))
            cores = [list(s.values) for s in self._cores]
            gpu_util = [list(s.values) for s in self._gpu_util]
            gpu_memory = [list(s.values) for s in self._gpu_memory]
        return Samples(
            times=times,
            cpu=cpu,
            memory=memory,
            cores=cores,
            gpu_util=gpu_util,
            gpu_memory=gpu_memory,
            data=list(self._data.values),
            compute=list(self._compute.values),
            totals=dict(self._totals),
        )

    def summary(self) -> dict:
        samples = self._samples()
        end = self._ended if self._ended is not None else time.monotonic()
        steps = profile_summary.step_statistics(samples)
        return {
            "enabled": self.settings.enabled,
            "settings": {
                "interval_ms": self.settings.interval_ms,
                "source": self.settings.source,
                "parameters": self.settings.parameters,
            },
            "device": self.device,
            "num_workers": self.num_workers,
            "batch_size": self.batch_size,
            "cpu_count": self.cpu_count,
            "duration_seconds": end - self._started if self._started is not None else 0.0,
            "steps": steps,
            "system": profile_summary.system_statistics(samples),
            "timelines": profile_summary.timelines(samples),
            "recommendations": self._recommendations(samples, steps),
        }

    def _recommendations(self, samples: Samples, steps: dict) -> list[dict]:
        facts = ProfileFacts(
            cpu=samples.cpu,
            gpu_util=samples.gpu_util,
            gpu_memory=samples.gpu_memory,
            steps=steps,
            device=self.device,
            num_workers=self.num_workers,
            batch_size=self.batch_size,
            cpu_count=self.cpu_count,
        )
        return recommend(facts)
