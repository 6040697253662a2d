"""SIGTERM in every phase of a job: the clean checkpoint stays, the best model is written.

The signal is simulated by setting the job's own stop flag at the start of a phase (the
SIGTERM handler does nothing else), so each phase is hit deterministically and pytest's own
signal handlers stay untouched.
"""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow

FAST = {
    "model": "resnet18", "image_size": 16, "batch_size": 8, "num_workers": 0, "augmentation": "none",
    "inference_export": "none",
}  # fmt: skip


@pytest.fixture
def job(opt_ml, small_folder, monkeypatch):
    from classifier.training import program as train

    for channel in ("train", "valid", "test"):
        opt_ml.channel(channel, small_folder)
    opt_ml.hyperparameters({**FAST, "epochs": 3, "debug": "true"})
    monkeypatch.setenv("SM_PROCESSES_PER_HOST", "1")
    signals: list = []
    monkeypatch.setattr(train.StopSignal, "install", lambda self: signals.append(self))
    saved_epochs: list[int] = []
    save = train.save_checkpoint

    def recording_save(directory, state):
        saved_epochs.append(state["epoch"])
        return save(directory, state)

    monkeypatch.setattr(train, "save_checkpoint", recording_save)
    opt_ml.signals, opt_ml.saved_epochs = signals, saved_epochs
    return opt_ml


def _stop_on_call(monkeypatch, module, name: str, call: int, job) -> None:
    """Let the job's ``call``-th call of ``module.name`` start with SIGTERM already received."""
    original = getattr(module, name)
    calls = {"n": 0}

    def wrapper(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            job.signals[0].received = True
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


def _run() -> int:
    from classifier.training import program as train

    with pytest.raises(SystemExit) as exit_:
        train.main()
    return exit_.value.code


@pytest.mark.parametrize(
    "phase, function, call, completed",
    [
        ("epoch 3", "train_one_epoch", 3, [1, 2]),
        ("evaluation", "evaluate", 2, [1]),  # the validation pass of epoch 2
        ("the test pass", "evaluate", 4, [1, 2, 3]),  # 3 validation passes, then the test pass
    ],
)
def test_sigterm_keeps_the_clean_checkpoint_and_writes_the_best_model(
    job, monkeypatch, phase, function, call, completed
):
    from classifier.training import program as train

    _stop_on_call(monkeypatch, train, function, call, job)
    assert _run() == 143
    failure = job.failure.splitlines()[0]
    assert failure.startswith(f"TrainingInterrupted: SIGTERM during {phase}"), failure
    # No checkpoint was written after the signal: the last one is a clean end of epoch.
    assert job.saved_epochs == completed
    assert (job.root / "model" / "model.pt").exists()
    assert (job.root / "model" / "model_config.json").exists()


def test_sigterm_during_the_end_of_job_rules_skips_the_rest(job, monkeypatch):
    from classifier.training import job_outputs

    _stop_on_call(monkeypatch, job_outputs, "run_rules_and_report", 1, job)
    assert _run() == 143
    assert "end-of-job rules" in job.failure.splitlines()[0]
    report = json.loads((job.root / "output" / "data" / "report.json").read_text())
    assert {rule["status"] for rule in report["rules"]} == {"NotRun"}
    assert job.saved_epochs == [1, 2, 3]
    assert (job.root / "model" / "model.pt").exists()
