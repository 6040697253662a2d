"""Run the checkout's real ``./train`` on a data folder, as the benchmarks measure it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def run_train(data_dir: Path, channels: tuple[str, ...], hyperparameters: dict, env: dict | None = None):
    """``./train`` in a temporary /opt/ml tree whose channels link to ``data_dir/<channel>``, with
    ``env`` added to its environment; returns its metrics.json with the job's ``wall_seconds``,
    or exits with the job's output if it failed."""
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        (base / "input/config").mkdir(parents=True)
        (base / "input/data").mkdir(parents=True)
        for channel in channels:
            (base / "input/data" / channel).symlink_to(data_dir / channel)
        (base / "input/config/hyperparameters.json").write_text(
            json.dumps({k: str(v) for k, v in hyperparameters.items()})
        )
        environment = {**os.environ, **(env or {}), "SAGEMAKER_BASE_DIR": str(base)}
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, str(REPO_ROOT / "train")], env=environment, capture_output=True, text=True
        )
        wall_seconds = time.perf_counter() - started
        if result.returncode != 0:
            raise SystemExit(f"train failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}")
        return {**json.loads((base / "output/data/metrics.json").read_text()), "wall_seconds": wall_seconds}
