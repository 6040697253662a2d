"""The profiler's checks on hand-made facts: each verdict, its message and its evidence."""

from __future__ import annotations

import pytest

from classifier.debugging.recommendations import ProfileFacts, recommend


def _steps(wait_share: float | None) -> dict:
    return {
        "data_wait_share": wait_share,
        "data_seconds": {"p95": 0.01 if wait_share is not None else None},
        "compute_seconds": {"p50": 0.1 if wait_share is not None else None},
    }


def _facts(**overrides) -> ProfileFacts:
    values = {
        "cpu": [20.0] * 4,
        "gpu_util": [[95.0] * 4],
        "gpu_memory": [[80.0] * 4],
        "steps": _steps(0.01),
        "device": "cuda:0",
        "num_workers": 8,
        "batch_size": 64,
        "cpu_count": 8,
    }
    return ProfileFacts(**{**values, **overrides})


def _by_rule(facts: ProfileFacts) -> dict:
    return {r["rule"]: r for r in recommend(facts)}


def test_checks_come_per_gpu_in_order_then_job_wide():
    facts = _facts(gpu_util=[[95.0] * 4, [20.0] * 4], gpu_memory=[[80.0] * 4, [10.0] * 4])
    found = [(r["rule"], r["evidence"].get("gpu")) for r in recommend(facts)]
    assert found == [
        ("LowGPUUtilization", 0),
        ("BatchSize", 0),
        ("LowGPUUtilization", 1),
        ("BatchSize", 1),
        ("CPUBottleneck", None),
        ("Dataloader", None),
    ]


def test_saturated_cpu_with_idle_gpu_is_a_cpu_bottleneck():
    advice = _by_rule(_facts(cpu=[95.0] * 4, gpu_util=[[5.0] * 4]))["CPUBottleneck"]
    assert advice["triggered"] and advice["evidence"]["share"] == 1.0
    assert advice["message"].startswith("the CPU was saturated while the GPU idled 100% of the time")


def test_more_workers_than_twice_the_cpus_is_flagged():
    advice = _by_rule(_facts(num_workers=20))["Dataloader"]
    assert advice["triggered"] and "num_workers=20 is more than 200% of 8 vCPUs" in advice["message"]
    assert advice["evidence"]["workers_percent_of_cpus"] == 250.0


@pytest.mark.parametrize(
    ("workers", "advice"),
    [(0, "raise num_workers (now 0 for 8 vCPUs)"), (8, "make decoding cheaper")],
)
def test_data_waits_get_advice_that_fits_the_workers(workers, advice):
    found = _by_rule(_facts(num_workers=workers, steps=_steps(0.5)))["Dataloader"]
    assert found["triggered"] and "training waited for data 50% of the step time" in found["message"]
    assert advice in found["message"]


def test_cpu_training_says_why_gpu_checks_are_missing():
    found = recommend(_facts(gpu_util=[], gpu_memory=[], device="cpu", steps=_steps(None)))
    assert [r["rule"] for r in found] == ["LowGPUUtilization", "Dataloader"]
    assert found[0]["message"] == "no GPU: utilisation checks do not apply" and not found[0]["triggered"]
    assert found[1]["message"] == "no training steps were recorded" and not found[1]["triggered"]
