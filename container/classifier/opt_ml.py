"""The /opt/ml tree: where it is (one rule for every path of the contract), and the
configuration SageMaker writes there before a training job starts, written the same way for
jobs that run without SageMaker (a local tuning trial) and for tests.

Standard library only: the client environment (no torch) writes it too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from classifier.constants import (
    BASE_DIR_ENV,
    DEFAULT_BASE_DIR,
    HYPERPARAMETERS_FILE,
    INPUT_DATA_CONFIG_FILE,
    RESOURCE_CONFIG_FILE,
)
from classifier.hyperparameter_schema import as_text

HOST = "algo-1"


def base_dir(environ: Mapping[str, str]) -> Path:
    """The tree's root: ``SAGEMAKER_BASE_DIR`` (the sagemaker-training convention for running
    outside /opt/ml) when set, else /opt/ml."""
    return Path(environ.get(BASE_DIR_ENV, "").strip() or DEFAULT_BASE_DIR)


def rebased(path: Path, base: Path) -> Path:
    """``path`` with its /opt/ml prefix replaced by ``base``: a path SageMaker names under /opt/ml
    (a LocalPath of a checkpoint or TensorBoard config) follows the tree like every other path
    of the contract; any other path is kept as given."""
    default = Path(DEFAULT_BASE_DIR)
    return base / path.relative_to(default) if path.is_relative_to(default) else path


def local_path(config: Any, default: Path, base: Path) -> Path:
    """The ``LocalPath`` of one of SageMaker's output configs (checkpoints, TensorBoard), else
    ``default``; rebased onto ``base``."""
    given = config.get("LocalPath") if isinstance(config, dict) else None
    return rebased(Path(given) if isinstance(given, str) and given else default, base)


# One channel's entry of inputdataconfig.json, as SageMaker writes it for File mode.
FILE_CHANNEL = {
    "ContentType": "application/x-image",
    "TrainingInputMode": "File",
    "S3DistributionType": "FullyReplicated",
    "RecordWrapperType": "None",
}


def _write(base: Path, relative: str, content: Any) -> None:
    path = base / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2) + "\n")


def write_hyperparameters(base: Path, values: Mapping[str, Any]) -> None:
    """hyperparameters.json: every value a string, as SageMaker passes them."""
    _write(base, HYPERPARAMETERS_FILE, {key: as_text(value) for key, value in values.items()})


def write_resource_config(base: Path, hosts: Sequence[str] = (HOST,), current_host: str = HOST) -> None:
    config = {"current_host": current_host, "hosts": list(hosts), "network_interface_name": "eth0"}
    _write(base, RESOURCE_CONFIG_FILE, config)


def write_input_data_config(base: Path, channels: Iterable[str]) -> None:
    _write(base, INPUT_DATA_CONFIG_FILE, {channel: dict(FILE_CHANNEL) for channel in sorted(channels)})


def write_job_config(
    base: Path,
    hyperparameters: Mapping[str, Any],
    channels: Iterable[str],
    hosts: Sequence[str] = (HOST,),
    current_host: str = HOST,
) -> None:
    """The three files of a single-host File-mode job at ``base`` (the /opt/ml folder)."""
    write_hyperparameters(base, hyperparameters)
    write_resource_config(base, hosts, current_host)
    write_input_data_config(base, channels)
