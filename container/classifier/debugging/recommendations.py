"""The profiler's advice: SageMaker ProfilerReport's checks, one small function each.

Every check returns ``{"rule", "triggered", "message", "evidence"}`` so the report can show the
numbers behind a verdict; ``recommend`` runs them in the order the report lists them.
"""

from __future__ import annotations

from dataclasses import dataclass

from classifier.debugging.profile_summary import percentile

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
class ProfileFacts:
    """What the checks judge: the sampled series, the step statistics and the job's settings."""

    cpu: list[float]
    gpu_util: list[list[float]]
    gpu_memory: list[list[float]]
    steps: dict  # profile_summary.step_statistics()
    device: str
    num_workers: int
    batch_size: int
    cpu_count: int


def _advice(rule: str, triggered: bool, message: str, **evidence) -> dict:
    return {"rule": rule, "triggered": triggered, "message": message, "evidence": evidence}


def low_gpu_utilization(facts: ProfileFacts, index: int) -> dict:
    util = facts.gpu_util[index]
    p95, p5 = percentile(util, 95), percentile(util, 5)
    assert p95 is not None, "recommend() judges only a GPU with samples"
    low = p95 < LOW_GPU_P95
    fluctuating = not low and p5 is not None and p5 < LOW_GPU_P5
    if low:
        message = (
            f"GPU {index} is underused (p95 {p95:.0f}% < {LOW_GPU_P95:.0f}%): use a smaller "
            "instance type or give it more work per step"
        )
    elif fluctuating:
        message = (
            f"GPU {index} utilisation fluctuates (p95 {p95:.0f}%, p5 {p5:.0f}%): look for "
            "blocking calls or data stalls between steps"
        )
    else:
        message = f"GPU {index} is busy (p95 {p95:.0f}%)"
    return _advice("LowGPUUtilization", low or fluctuating, message, gpu=index, util_p95=p95, util_p5=p5)


def batch_size(facts: ProfileFacts, index: int) -> dict:
    p95 = percentile(facts.gpu_util[index], 95)
    assert p95 is not None, "recommend() judges only a GPU with samples"
    mem_p95 = percentile(facts.gpu_memory[index], 95)
    cpu_p95 = percentile(facts.cpu, 95)
    small = p95 < BATCH_SIZE_P95 and (mem_p95 or 0) < BATCH_SIZE_P95 and (cpu_p95 or 0) < BATCH_SIZE_P95
    message = (
        f"batch_size={facts.batch_size} leaves GPU {index} at p95 {p95:.0f}% utilisation "
        f"and {mem_p95:.0f}% memory: try a larger batch_size (scale learning_rate too)"
        if small
        else f"batch_size={facts.batch_size} keeps GPU {index} or its memory busy"
    )
    return _advice(
        "BatchSize",
        small,
        message,
        gpu=index,
        util_p95=p95,
        memory_p95=mem_p95,
        cpu_p95=cpu_p95,
        batch_size=facts.batch_size,
    )


def cpu_bottleneck(facts: ProfileFacts) -> dict | None:
    """Judged on the first GPU only, as ProfilerReport does; None without GPU samples."""
    pairs = list(zip(facts.cpu, facts.gpu_util[0], strict=False)) if facts.gpu_util else []
    if not pairs:
        return None
    share = sum(1 for c, g in pairs if c > CPU_BOTTLENECK_CPU and g < CPU_BOTTLENECK_GPU) / len(pairs)
    triggered = share > CPU_BOTTLENECK_SHARE
    message = (
        f"the CPU was saturated while the GPU idled {share:.0%} of the time: move "
        "preprocessing to the GPU or use an instance with more vCPUs"
        if triggered
        else f"CPU-bound with an idle GPU only {share:.0%} of the time"
    )
    return _advice(
        "CPUBottleneck",
        triggered,
        message,
        share=share,
        cpu_threshold=CPU_BOTTLENECK_CPU,
        gpu_threshold=CPU_BOTTLENECK_GPU,
    )


def no_gpu(facts: ProfileFacts) -> dict | None:
    """Says why the GPU checks are missing, so an empty table is not mistaken for a clean one."""
    if facts.gpu_util:
        return None
    return _advice("LowGPUUtilization", False, "no GPU: utilisation checks do not apply", device=facts.device)


def _workers_percent(facts: ProfileFacts) -> float:
    return 100.0 * facts.num_workers / facts.cpu_count


def _dataloader_message(facts: ProfileFacts, bottleneck: bool, too_many: bool) -> str:
    wait = facts.steps["data_wait_share"]
    if bottleneck:
        advice = (
            f"raise num_workers (now {facts.num_workers} for {facts.cpu_count} vCPUs)"
            if _workers_percent(facts) < DATALOADER_MIN_WORKERS_PERCENT
            else "make decoding cheaper (smaller stored images) or use more vCPUs"
        )
        return f"training waited for data {wait:.0%} of the step time: {advice}"
    if too_many:
        return (
            f"num_workers={facts.num_workers} is more than {DATALOADER_MAX_WORKERS_PERCENT:.0f}% "
            f"of {facts.cpu_count} vCPUs: workers compete with training for the CPU"
        )
    if wait is None:
        return "no training steps were recorded"
    return f"data loading keeps up (waited {wait:.0%} of step time)"


def dataloader(facts: ProfileFacts) -> dict:
    steps = facts.steps
    wait = steps["data_wait_share"]
    workers_percent = _workers_percent(facts)
    bottleneck = wait is not None and wait > DATA_WAIT_SHARE
    too_many = workers_percent > DATALOADER_MAX_WORKERS_PERCENT
    return _advice(
        "Dataloader",
        bottleneck or too_many,
        _dataloader_message(facts, bottleneck, too_many),
        data_wait_share=wait,
        data_wait_p95_seconds=steps["data_seconds"]["p95"],
        compute_p50_seconds=steps["compute_seconds"]["p50"],
        num_workers=facts.num_workers,
        cpu_count=facts.cpu_count,
        workers_percent_of_cpus=workers_percent,
    )


PER_GPU_CHECKS = (low_gpu_utilization, batch_size)
JOB_CHECKS = (cpu_bottleneck, no_gpu, dataloader)


def recommend(facts: ProfileFacts) -> list[dict]:
    """Each GPU's checks in GPU order, then the job-wide ones; checks that do not apply are left out."""
    found: list[dict] = []
    for index, util in enumerate(facts.gpu_util):
        if percentile(util, 95) is not None:  # a GPU with no samples has nothing to judge
            found.extend(check(facts, index) for check in PER_GPU_CHECKS)
    for check in JOB_CHECKS:
        advice = check(facts)
        if advice is not None:
            found.append(advice)
    return found
