"""Summary statistics of what the training profiler recorded: step times, system use, timelines.

Pure functions over a ``Samples`` copy, so the sampling thread is never blocked while they run.
"""

from __future__ import annotations

from dataclasses import dataclass

TIMELINE_POINTS = 600  # points per series in the summary (the report's plots)


@dataclass(frozen=True)
class Samples:
    """Plain lists copied out of the profiler's bounded series."""

    times: list[float]
    cpu: list[float]
    memory: list[float]
    cores: list[list[float]]
    gpu_util: list[list[float]]
    gpu_memory: list[list[float]]
    data: list[float]
    compute: list[float]
    totals: dict


def percentile(values, q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100.0 * (len(ordered) - 1))))
    return float(ordered[index])


def mean(values) -> float | None:
    return float(sum(values) / len(values)) if values else None


def thin(values, points: int = TIMELINE_POINTS) -> list[float]:
    values = list(values)
    if len(values) <= points:
        return [round(v, 4) for v in values]
    step = len(values) / points
    return [round(values[int(i * step)], 4) for i in range(points)]


def _spread(values) -> dict:
    return {"mean": mean(values), "p50": percentile(values, 50), "p95": percentile(values, 95)}


def step_statistics(samples: Samples) -> dict:
    totals = samples.totals
    busy = totals["data"] + totals["compute"]
    return {
        "count": totals["steps"],
        "images": totals["images"],
        "images_per_second": totals["images"] / busy if busy > 0 else None,
        "data_wait_share": totals["data"] / busy if busy > 0 else None,
        "data_seconds": _spread(samples.data),
        "compute_seconds": _spread(samples.compute),
    }


def _gpu_statistics(index: int, util: list[float], memory: list[float]) -> dict:
    return {
        "index": index,
        "util_percent": {"mean": mean(util), "p5": percentile(util, 5), "p95": percentile(util, 95)},
        "memory_percent": {
            "mean": mean(memory),
            "p95": percentile(memory, 95),
            "max": max(memory, default=None),
        },
    }


def system_statistics(samples: Samples) -> dict:
    cpu, memory = samples.cpu, samples.memory
    gpus = zip(samples.gpu_util, samples.gpu_memory, strict=True)
    return {
        "samples": len(samples.times),
        "cpu_percent": {"mean": mean(cpu), "p95": percentile(cpu, 95), "max": max(cpu, default=None)},
        "cpu_per_core_mean": [mean(c) for c in samples.cores],
        "memory_percent": {"mean": mean(memory), "max": max(memory, default=None)},
        "gpus": [_gpu_statistics(i, util, mem) for i, (util, mem) in enumerate(gpus)],
    }


def timelines(samples: Samples) -> dict:
    return {
        "time_seconds": thin(samples.times),
        "cpu_percent": thin(samples.cpu),
        "memory_percent": thin(samples.memory),
        "gpu_util_percent": [thin(u) for u in samples.gpu_util],
        "gpu_memory_percent": [thin(m) for m in samples.gpu_memory],
        "step_data_seconds": thin(samples.data),
        "step_compute_seconds": thin(samples.compute),
    }
