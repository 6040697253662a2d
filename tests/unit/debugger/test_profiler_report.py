"""Profiler settings, sampling and advice; the HTML/JSON report. Fast: no training."""

from __future__ import annotations

import json
import threading
import time

import pytest

from classifier.debugging.profiler import SmiGpuSampler, TrainingProfiler, profiler_settings
from classifier.debugging.report import write_job_report
from classifier.debugging.rules import RuleResult


def _write_profiler_config(base, payload) -> None:
    config = base / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "profilerconfig.json").write_text(json.dumps(payload))


def test_settings_default_on_without_sagemaker_config(tmp_path):
    settings = profiler_settings(tmp_path)
    assert settings.enabled and settings.interval_ms == 500 and settings.source == "default"
    assert not profiler_settings(tmp_path, enabled_default=False).enabled


def test_settings_from_sagemaker_profilerconfig(tmp_path):
    _write_profiler_config(
        tmp_path,
        {
            "ProfilingIntervalInMilliseconds": 100,
            "ProfilingParameters": {
                "LocalPath": "/opt/ml/output/profiler",
                "DataloaderProfilingConfig": '{"StartStep": 5, "NumSteps": 3}',
            },
        },
    )
    settings = profiler_settings(tmp_path)
    assert settings.enabled and settings.interval_ms == 100
    assert settings.parameters["dataloaderprofilingconfig"] == {"StartStep": 5, "NumSteps": 3}


def test_settings_disable_profiler(tmp_path):
    _write_profiler_config(tmp_path, {"DisableProfiler": True})
    assert not profiler_settings(tmp_path).enabled


class FakeGpu:
    def __init__(self, util: float, memory: float) -> None:
        self.reading = [(util, memory)]

    def sample(self):
        return self.reading

    def close(self):
        raise AssertionError("a sampler passed in is the caller's to close")


def test_idle_gpu_and_small_batch_are_recommended_with_evidence(tmp_path, monkeypatch):
    # A quiet CPU, whatever else this machine runs: BatchSize needs CPU p95 < 70 %.
    monkeypatch.setattr("classifier.debugging.profiler.psutil.cpu_percent", lambda percpu=False: [15.0] * 8)
    settings = profiler_settings(tmp_path)
    with TrainingProfiler(settings, 0, 4, "cuda:0", gpu_sampler=FakeGpu(20.0, 10.0), cpu_count=8) as p:
        for _ in range(5):
            p.sample_once()
        for _ in range(20):
            p.record_step(data_seconds=0.03, compute_seconds=0.01, batch_size=4)
    summary = p.summary()
    recs = {r["rule"]: r for r in summary["recommendations"]}
    assert recs["LowGPUUtilization"]["triggered"]
    assert recs["LowGPUUtilization"]["evidence"]["util_p95"] == 20.0
    assert recs["BatchSize"]["triggered"] and "batch_size=4" in recs["BatchSize"]["message"]
    assert recs["Dataloader"]["triggered"]
    assert recs["Dataloader"]["evidence"]["data_wait_share"] == pytest.approx(0.75)
    assert recs["BatchSize"]["evidence"]["cpu_p95"] == 15.0
    assert summary["steps"]["count"] == 20 and summary["steps"]["images"] == 80
    assert summary["timelines"]["gpu_util_percent"] == [[20.0] * 5]
    json.dumps(summary)


def test_busy_gpu_and_fast_loader_give_no_advice(tmp_path):
    with TrainingProfiler(
        profiler_settings(tmp_path), 8, 64, "cuda:0", gpu_sampler=FakeGpu(95.0, 80.0), cpu_count=8
    ) as p:
        p.sample_once()
        p.record_step(0.001, 0.1, 64)
    assert not any(r["triggered"] for r in p.summary()["recommendations"])


def test_sampling_thread_collects_until_exit(tmp_path):
    _write_profiler_config(tmp_path, {"ProfilingIntervalInMilliseconds": 50})
    with TrainingProfiler(profiler_settings(tmp_path), 0, 8, "cpu") as p:
        deadline = time.monotonic() + 10
        while p.summary()["system"]["samples"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    samples = p.summary()["system"]["samples"]
    assert samples >= 2
    assert "training-profiler" not in {thread.name for thread in threading.enumerate()}
    assert p.summary()["system"]["samples"] == samples


def test_nvidia_smi_output_parsing():
    assert SmiGpuSampler.parse("87, 4000, 16000\n12, 0, 16000\n") == [(87.0, 25.0), (12.0, 0.0)]


def test_report_html_and_json(tmp_path):
    history = [
        {
            "epoch": 1,
            "train_loss": 1.2,
            "train_accuracy": 0.5,
            "valid_loss": 1.0,
            "valid_accuracy": 0.6,
        },
        {
            "epoch": 2,
            "train_loss": float("nan"),
            "train_accuracy": 0.5,
            "valid_loss": 1.1,
            "valid_accuracy": 0.6,
        },
    ]
    rules = [
        RuleResult(
            "exploding_tensor",
            "ExplodingTensor",
            "IssuesFound",
            fired_at_step=7,
            violations=1,
            message="CrossEntropyLoss_output_0 is nan at step 7 <b>",
        ),
        RuleResult("overfit", "Overfit", "NoIssuesFound", datapoints=3),
    ]
    with TrainingProfiler(profiler_settings(tmp_path), 0, 8, "cpu") as p:
        p.sample_once()
        p.record_step(0.01, 0.02, 8)
    test = {
        "class_names": ["cat", "dog"],
        "confusion_matrix": [[3, 1], [0, 4]],
        "per_class_accuracy": {"cat": 0.75, "dog": 1.0},
        "accuracy": 0.875,
    }
    path = write_job_report(tmp_path / "out", history, rules, p.summary(), test)
    page = path.read_text()
    assert page.count("data:image/png;base64,") == 5  # curves, 2 profiler plots, matrix, per-class
    assert "&lt;b&gt;" in page and "<script" not in page and "http" not in page
    facts = json.loads((tmp_path / "out" / "report.json").read_text())
    assert facts["rules_fired"] == ["exploding_tensor"]
    assert facts["rules"][0]["fired_at_step"] == 7
    assert facts["history"][1]["train_loss"] == "nan"


def test_report_without_hook_profiler_or_test(tmp_path):
    page = write_job_report(tmp_path, [], None, None, None).read_text()
    assert "debug=true" in page and "No test channel" in page


class FakeNvml:
    """The part of pynvml the sampler calls, with two GPUs."""

    class NVMLError(Exception):
        pass

    def __init__(self) -> None:
        self.shut_down = False

    def nvmlInit(self):
        return None

    def nvmlShutdown(self):
        self.shut_down = True

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, index):
        return index

    def nvmlDeviceGetUtilizationRates(self, handle):
        return type("Util", (), {"gpu": 40 + 10 * handle})()

    def nvmlDeviceGetMemoryInfo(self, handle):
        return type("Memory", (), {"used": 4 * 2**30, "total": 16 * 2**30})()


def test_nvml_sampler_reads_every_gpu():
    from classifier.debugging.profiler import NvmlGpuSampler

    nvml = FakeNvml()
    sampler = NvmlGpuSampler(nvml)
    assert sampler.sample() == [(40.0, 25.0), (50.0, 25.0)]
    sampler.close()
    assert nvml.shut_down


def test_cpu_training_gets_no_gpu_sampler():
    from classifier.debugging.profiler import detect_gpu_sampler

    assert detect_gpu_sampler("cpu") is None


SECTION_HEADINGS = (
    "<h1>Training job report</h1>",
    "<h2>Training curves</h2>",
    "<h2>Debugger rules</h2>",
    "<h2>Profiler</h2>",
    "<h2>Test set</h2>",
)


@pytest.mark.parametrize("full", [True, False], ids=["everything", "nothing"])
def test_report_has_every_section_heading(tmp_path, full):
    history = [{"epoch": 1, "train_loss": 1.0, "valid_loss": 1.0, "valid_accuracy": 0.5}] if full else []
    rules = [RuleResult("overfit", "Overfit", "NoIssuesFound", datapoints=3)] if full else None
    test = {"class_names": ["a"], "confusion_matrix": [[1]], "accuracy": 1.0} if full else None
    with TrainingProfiler(profiler_settings(tmp_path, enabled_default=False), 0, 8, "cpu") as p:
        p.record_step(0.01, 0.02, 8)
    page = write_job_report(tmp_path / "out", history, rules, p.summary() if full else None, test).read_text()
    for heading in SECTION_HEADINGS:
        assert page.count(heading) == 1, heading


def test_report_escapes_class_names_and_rule_text(tmp_path):
    evil = "<script>alert(1)</script>"
    rules = [
        RuleResult(
            "class_imbalance",
            "ClassImbalance",
            "IssuesFound",
            fired_at_step=0,
            violations=1,
            message=f"class {evil} has 1 sample",
            parameters={"threshold_imbalance": evil},
        )
    ]
    test = {
        "class_names": ["cat", evil],
        "confusion_matrix": [[1, 0], [0, 1]],
        "per_class_accuracy": {"cat": 1.0, evil: 1.0},
        "accuracy": 1.0,
    }
    profiler = {"device": evil, "settings": {"source": evil}}
    page = write_job_report(tmp_path, [], rules, profiler, test).read_text()
    assert "<script" not in page
    assert "class &lt;script&gt;alert(1)&lt;/script&gt; has 1 sample" in page
    assert "threshold_imbalance=&lt;script&gt;" in page
    assert "device &lt;script&gt;" in page
    assert page.count("data:image/png;base64,") == 2  # matrix and per-class accuracy, still inline


def test_report_does_not_switch_the_matplotlib_backend(tmp_path, monkeypatch):
    import matplotlib

    def refuse(*args, **kwargs):
        raise AssertionError("the report must draw on its own canvas, not switch the process backend")

    monkeypatch.setattr(matplotlib, "use", refuse)
    history = [{"epoch": 1, "train_loss": 1.0, "valid_loss": 1.0, "valid_accuracy": 0.5}]
    page = write_job_report(tmp_path, history, None, None, None).read_text()
    assert page.count("data:image/png;base64,") == 1
