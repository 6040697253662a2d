"""`transform --local` for real: the built image run as SageMaker runs a transform job, a folder
of digit PNGs in, one ``<name>.out`` per input out, a corrupt file failing alone.

The model is trained by the real ``./train`` in the runtime env (no Docker), as in
test_metric_lines, then served by the image.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.sdk.conftest import train_on_host

pytestmark = pytest.mark.docker

# The demo's hyperparameters (local_test) with 5 of its 8 epochs: 0.98 test accuracy on the host.
OVERRIDES = {"epochs": "5", "num_workers": "0"}
# Judged over the whole test split: far above chance, and the training job's own test accuracy
# within a margin (the same model on the serving engine), whatever CPU trained it.
MIN_ACCURACY = 0.9
ENGINE_MARGIN = 0.05


@pytest.fixture(scope="module")
def trained_job(runtime_python, repo_root, digits_dir, tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("transform-train") / "opt_ml"
    demo = json.loads((repo_root / "local_test/test_dir/input/config/hyperparameters.json").read_text())
    result = train_on_host(runtime_python, repo_root, base, {**demo, **OVERRIDES}, digits_dir, timeout=1200)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return base


def test_local_transform_writes_one_out_per_input_and_records_a_corrupt_file(
    trained_job, digits_dir, local_image, cli, tmp_path, capsys
):
    inputs = tmp_path / "in"
    shutil.copytree(digits_dir / "test", inputs)
    expected = {path.relative_to(inputs).as_posix(): path.parent.name for path in inputs.rglob("*.png")}
    (inputs / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    out = tmp_path / "out"

    code = cli(
        "transform", "--local", "--image", local_image, "--model-data", trained_job / "model",
        "--input", inputs, "--output", out, "--job-name", f"ct-transform-{os.getpid()}",
    )  # fmt: skip
    summary = json.loads(capsys.readouterr().out)
    assert code == 1  # like a SageMaker job with a failed file: the others still complete
    assert summary["files"] == len(expected) + 1 and summary["completed"] == len(expected)
    assert list(summary["failed"]) == ["corrupt.png"]
    assert summary["failed"]["corrupt.png"]["status"] == 400
    error = json.loads((out / "corrupt.png.error").read_text())
    assert error["input"] == "corrupt.png" and "error" in error
    assert not (out / "corrupt.png.out").exists()
    # The container's /execution-parameters decided what the job left open.
    assert summary["batch_strategy"] == "MultiRecord" and summary["max_payload_mb"] == 6

    outs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.out"))
    assert outs == sorted(f"{name}.out" for name in expected)
    right = sum(
        json.loads((out / f"{name}.out").read_text())["predictions"][0]["label"] == digit
        for name, digit in expected.items()
    )
    served = right / len(expected)
    measured = json.loads((trained_job / "output" / "data" / "metrics.json").read_text())["test"]["accuracy"]
    print(f"{right}/{len(expected)} right ({served:.3f}); the job measured {measured:.3f}")
    assert served >= MIN_ACCURACY and abs(served - measured) <= ENGINE_MARGIN, (served, measured)
    assert (
        subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"name=ct-transform-{os.getpid()}"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        == ""
    )
