"""Tiny real trainings for the debugger tests: a generated ImageFolder and classifier.training.program.

Each training is a few dozen 16x16 images on resnet18, so a run takes seconds on 2 cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from classifier.opt_ml import write_hyperparameters
from tests.helpers import write_image_folder

# Four visually distinct classes: a base colour each, plus per-image noise.
CLASS_COLOURS = {
    "a_red": (220, 40, 40),
    "b_green": (40, 200, 60),
    "c_blue": (40, 60, 220),
    "d_yellow": (230, 210, 40),
}
IMAGE_SIZE = 16


def _write_split(root: Path, counts: dict[str, int], seed: int, signal: bool = True) -> None:
    write_image_folder(
        root, counts, seed=seed, size=(IMAGE_SIZE, IMAGE_SIZE), colours=CLASS_COLOURS, signal=signal
    )


def balanced(per_class: int) -> dict[str, int]:
    return {name: per_class for name in CLASS_COLOURS}


HEALTHY = {
    "model": "resnet18",
    "epochs": "2",
    "batch_size": "8",
    "learning_rate": "0.001",
    "optimizer": "adam",
    "image_size": str(IMAGE_SIZE),
    "num_workers": "0",
    "augmentation": "none",
    "debug": "true",
    "seed": "0",
    "inference_export": "none",  # the rules are under test, not the serving export
}


class TrainingRun:
    def __init__(self, base_dir: Path, exit_code: int) -> None:
        self.base_dir = base_dir
        self.exit_code = exit_code
        self.output_data = base_dir / "output" / "data"
        self.tensors = base_dir / "output" / "tensors"

    @property
    def report(self) -> dict:
        return json.loads((self.output_data / "report.json").read_text())

    def fired(self) -> set[str]:
        return set(self.report["rules_fired"])

    @property
    def failure(self) -> str:
        path = self.base_dir / "output" / "failure"
        return path.read_text() if path.exists() else ""


@pytest.fixture
def train_job(tmp_path, monkeypatch):
    """Run classifier.training.program.main() on generated data under a tmp /opt/ml tree."""

    def run(
        hyperparameters: dict | None = None,
        train: dict[str, int] | None = None,
        valid: dict[str, int] | None = None,
        test: dict[str, int] | None = None,
        signal: bool = True,
        data_from: Path | None = None,
    ) -> TrainingRun:
        from classifier.training import program as training

        base = tmp_path / "opt_ml"
        write_hyperparameters(base, {**HEALTHY, **(hyperparameters or {})})
        data = base / "input" / "data"
        if data_from is not None:
            data.mkdir(parents=True)
            for split in ("train", "valid"):
                (data / split).symlink_to(data_from / split, target_is_directory=True)
        else:
            _write_split(data / "train", train or balanced(10), seed=1, signal=signal)
            _write_split(data / "valid", valid or balanced(4), seed=2, signal=signal)
        if test:
            _write_split(data / "test", test, seed=3)
        monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(base))
        monkeypatch.setenv("SM_PROCESSES_PER_HOST", "1")
        try:
            training.main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code or 0
        return TrainingRun(base, code)

    return run
