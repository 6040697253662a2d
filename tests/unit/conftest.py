"""Fixtures for the runtime tests: small real image data and a fresh /opt/ml tree per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from classifier.opt_ml import write_hyperparameters, write_input_data_config, write_resource_config
from tests.helpers import share_cores_among_workers, write_image_folder
from tools.demo_data import write_digits


def pytest_configure(config: pytest.Config) -> None:
    share_cores_among_workers()


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> Path:
    """The real digits demo data, written once per session."""
    out = tmp_path_factory.mktemp("digits")
    write_digits(out)
    return out


@pytest.fixture
def small_folder(tmp_path) -> Path:
    return write_image_folder(tmp_path / "small", {"cat": 6, "dog": 6, "fox": 6})


class OptMl:
    """A /opt/ml tree under tmp_path, written the way SageMaker writes it (string values)."""

    def __init__(self, root: Path):
        self.root = root
        self.channels: list[str] = []
        (root / "input" / "config").mkdir(parents=True)
        (root / "input" / "data").mkdir(parents=True)
        self.resource_config(["algo-1"], "algo-1")
        self.hyperparameters({})

    def hyperparameters(self, values: dict) -> OptMl:
        write_hyperparameters(self.root, values)
        return self

    def resource_config(self, hosts: list[str], current: str) -> OptMl:
        write_resource_config(self.root, hosts, current)
        return self

    def channel(self, name: str, source: Path) -> Path:
        target = self.root / "input" / "data" / name
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            target.mkdir(parents=True)
            shutil.copy(source, target / source.name)
        self.channels.append(name)
        write_input_data_config(self.root, self.channels)
        return target

    @property
    def failure(self) -> str | None:
        path = self.root / "output" / "failure"
        return path.read_text() if path.exists() else None


@pytest.fixture
def opt_ml(tmp_path, monkeypatch) -> OptMl:
    tree = OptMl(tmp_path / "opt_ml")
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tree.root))
    return tree
