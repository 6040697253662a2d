"""Fixtures for the runtime tests: small real image data and a fresh /opt/ml tree per test."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.helpers import write_image_folder
from tools.demo_data import write_digits


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
        (root / "input" / "config").mkdir(parents=True)
        (root / "input" / "data").mkdir(parents=True)
        self.resource_config(["algo-1"], "algo-1")
        self.hyperparameters({})

    def _write(self, name: str, payload) -> None:
        (self.root / "input" / "config" / name).write_text(json.dumps(payload))

    def hyperparameters(self, values: dict) -> OptMl:
        self._write("hyperparameters.json", {k: str(v) for k, v in values.items()})
        return self

    def resource_config(self, hosts: list[str], current: str) -> OptMl:
        self._write(
            "resourceconfig.json",
            {"current_host": current, "hosts": hosts, "network_interface_name": "eth0"},
        )
        return self

    def channel(self, name: str, source: Path) -> Path:
        target = self.root / "input" / "data" / name
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            target.mkdir(parents=True)
            shutil.copy(source, target / source.name)
        config_path = self.root / "input" / "config" / "inputdataconfig.json"
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
        config[name] = {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated"}
        config_path.write_text(json.dumps(config))
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
