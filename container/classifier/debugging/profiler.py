"""A low-overhead training profiler: system utilisation over time, step time split, advice.

It gives every user what SageMaker's ProfilerReport gave the seeds (LowGPUUtilization,
BatchSize, CPUBottleneck, Dataloader), without the managed rule containers: a daemon
thread samples CPU, memory and GPU every ``interval_ms``; the training loop reports each
step's data-wait and compute time. ``summary()`` turns both into timelines and
recommendations, each with the numbers behind it.
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

logger = logging.getLogger(__name__)

DEFAULT_INTERVAL_MS = 500  # SageMaker's default system monitor interval
MAX_POINTS = 100_000  # per series; older points are thinned 2:1 beyond this
TIMELINE_POINTS = 600  # points per series in summary() (the report's plots)

# ProfilerReport's thresholds (AWS defaults), percent.
LOW_GPU_P95 = 70.0
LOW_GPU_P5 = 10.0
BATCH_SIZE_P95 = 70.0
CPU_BOTTLENECK_CPU = 90.0
CPU_BOTTLENECK_GPU = 10.0
CPU_BOTTLENECK_SHARE = 0.5
DATALOADER_MIN_WORKERS_PERCENT = 70.0
DATALOADER_MAX_WORKERS_PERCENT = 200.0
# Share of step time spent waiting for the next batch above which data loading is the bottleneck.
DATA_WAIT_SHARE = 0.2


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
        logger.warning(
            "%s: bad ProfilingIntervalInMilliseconds; using %d", path, DEFAULT_INTERVAL_MS
        )
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
        self._handles = [
            nvml.nvmlDeviceGetHandleByIndex(i) for i in range(nvml.nvmlDeviceGetCount())
        ]

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


def _percentile(values, q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100.0 * (len(ordered) - 1))))
    return float(ordered[index])


def _mean(values) -> float | None:
    return float(sum(values) / len(values)) if values else None


def _thin(values, points: int = TIMELINE_POINTS) -> list[float]:
    values = list(values)
    if len(values) <= points:
        return [round(v, 4) for v in values]
    step = len(values) / points
    return [round(values[int(i * step)], 4) for i in range(points)]


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
        self._started = self._ended = None
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
    def summary(self) -> dict:
        with self._lock:
            cpu = list(self._cpu.values)
            memory = list(self._memory.values)
            times = list(self._time.values)
            cores = [list(s.values) for s in self._cores]
            gpu_util = [list(s.values) for s in self._gpu_util]
            gpu_memory = [list(s.values) for s in self._gpu_memory]
        data, compute = list(self._data.values), list(self._compute.values)
        totals = dict(self._totals)
        end = self._ended if self._ended is not None else time.monotonic()
        duration = end - self._started if self._started is not None else 0.0
        busy = totals["data"] + totals["compute"]
        steps = {
            "count": totals["steps"],
            "images": totals["images"],
            "images_per_second": totals["images"] / busy if busy > 0 else None,
            "data_wait_share": totals["data"] / busy if busy > 0 else None,
            "data_seconds": {
                "mean": _mean(data),
                "p50": _percentile(data, 50),
                "p95": _percentile(data, 95),
            },
            "compute_seconds": {
                "mean": _mean(compute),
                "p50": _percentile(compute, 50),
                "p95": _percentile(compute, 95),
            },
        }
        system = {
            "samples": len(times),
            "cpu_percent": {
                "mean": _mean(cpu),
                "p95": _percentile(cpu, 95),
                "max": max(cpu, default=None),
            },
            "cpu_per_core_mean": [_mean(c) for c in cores],
            "memory_percent": {"mean": _mean(memory), "max": max(memory, default=None)},
            "gpus": [
                {
                    "index": i,
                    "util_percent": {
                        "mean": _mean(u),
                        "p5": _percentile(u, 5),
                        "p95": _percentile(u, 95),
                    },
                    "memory_percent": {
                        "mean": _mean(m),
                        "p95": _percentile(m, 95),
                        "max": max(m, default=None),
                    },
                }
                for i, (u, m) in enumerate(zip(gpu_util, gpu_memory, strict=True))
            ],
        }
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
            "duration_seconds": duration,
            "steps": steps,
            "system": system,
            "timelines": {
                "time_seconds": _thin(times),
                "cpu_percent": _thin(cpu),
                "memory_percent": _thin(memory),
                "gpu_util_percent": [_thin(u) for u in gpu_util],
                "gpu_memory_percent": [_thin(m) for m in gpu_memory],
                "step_data_seconds": _thin(data),
                "step_compute_seconds": _thin(compute),
            },
            "recommendations": self._recommendations(cpu, gpu_util, gpu_memory, steps),
        }

    def _recommendations(self, cpu, gpu_util, gpu_memory, steps) -> list[dict]:
        found = []

        def add(rule, triggered, message, **evidence):
            found.append(
                {"rule": rule, "triggered": triggered, "message": message, "evidence": evidence}
            )

        cpu_p95 = _percentile(cpu, 95)
        if gpu_util:
            for index, (util, mem) in enumerate(zip(gpu_util, gpu_memory, strict=True)):
                p95, p5 = _percentile(util, 95), _percentile(util, 5)
                if p95 is None:
                    continue
                low = p95 < LOW_GPU_P95
                fluctuating = not low and p5 is not None and p5 < LOW_GPU_P5
                add(
                    "LowGPUUtilization",
                    low or fluctuating,
                    f"GPU {index} is underused (p95 {p95:.0f}% < {LOW_GPU_P95:.0f}%): "
                    "use a smaller "
                    "instance type or give it more work per step"
                    if low
                    else f"GPU {index} utilisation fluctuates (p95 {p95:.0f}%, p5 {p5:.0f}%): "
                    "look for "
                    "blocking calls or data stalls between steps"
                    if fluctuating
                    else f"GPU {index} is busy (p95 {p95:.0f}%)",
                    gpu=index,
                    util_p95=p95,
                    util_p5=p5,
                )
                mem_p95 = _percentile(mem, 95)
                small = (
                    p95 < BATCH_SIZE_P95
                    and (mem_p95 or 0) < BATCH_SIZE_P95
                    and (cpu_p95 or 0) < BATCH_SIZE_P95
                )
                add(
                    "BatchSize",
                    small,
                    f"batch_size={self.batch_size} leaves GPU {index} at p95 {p95:.0f}% "
                    "utilisation "
                    f"and {mem_p95:.0f}% memory: try a larger batch_size (scale learning_rate too)"
                    if small
                    else f"batch_size={self.batch_size} keeps GPU {index} or its memory busy",
                    gpu=index,
                    util_p95=p95,
                    memory_p95=mem_p95,
                    cpu_p95=cpu_p95,
                    batch_size=self.batch_size,
                )
            pairs = list(zip(cpu, gpu_util[0], strict=False))
            if pairs:
                share = sum(
                    1 for c, g in pairs if c > CPU_BOTTLENECK_CPU and g < CPU_BOTTLENECK_GPU
                ) / len(pairs)
                add(
                    "CPUBottleneck",
                    share > CPU_BOTTLENECK_SHARE,
                    f"the CPU was saturated while the GPU idled {share:.0%} of the time: move "
                    "preprocessing to the GPU or use an instance with more vCPUs"
                    if share > CPU_BOTTLENECK_SHARE
                    else f"CPU-bound with an idle GPU only {share:.0%} of the time",
                    share=share,
                    cpu_threshold=CPU_BOTTLENECK_CPU,
                    gpu_threshold=CPU_BOTTLENECK_GPU,
                )
        else:
            add(
                "LowGPUUtilization",
                False,
                "no GPU: utilisation checks do not apply",
                device=self.device,
            )
        workers_percent = 100.0 * self.num_workers / self.cpu_count
        wait = steps["data_wait_share"]
        bottleneck = wait is not None and wait > DATA_WAIT_SHARE
        too_few = workers_percent < DATALOADER_MIN_WORKERS_PERCENT
        too_many = workers_percent > DATALOADER_MAX_WORKERS_PERCENT
        if bottleneck:
            advice = (
                f"raise num_workers (now {self.num_workers} for {self.cpu_count} vCPUs)"
                if too_few
                else "make decoding cheaper (smaller stored images) or use more vCPUs"
            )
            message = f"training waited for data {wait:.0%} of the step time: {advice}"
        elif too_many:
            message = (
                f"num_workers={self.num_workers} is more than "
                f"{DATALOADER_MAX_WORKERS_PERCENT:.0f}% "
                f"of {self.cpu_count} vCPUs: workers compete with training for the CPU"
            )
        else:
            message = (
                f"data loading keeps up (waited {wait:.0%} of step time)"
                if wait is not None
                else "no training steps were recorded"
            )
        add(
            "Dataloader",
            bottleneck or too_many,
            message,
            data_wait_share=wait,
            data_wait_p95_seconds=steps["data_seconds"]["p95"],
            compute_p50_seconds=steps["compute_seconds"]["p50"],
            num_workers=self.num_workers,
            cpu_count=self.cpu_count,
            workers_percent_of_cpus=workers_percent,
        )
        return found
