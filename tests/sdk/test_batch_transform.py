"""`transform --local` for real: the built image run as SageMaker runs a transform job, a folder
of digit PNGs in, one ``<name>.out`` per input out, a corrupt file failing alone.

The model is the session's one local-mode training (``digits_training``), served by the image
over its job's whole test split.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from tests.sdk.conftest import final_json, job_metrics

pytestmark = pytest.mark.docker

# Judged over the job's whole test split (100 digits): far above chance (0.1), and the training
# job's own test accuracy within a margin (the same model on the serving engine), whatever CPU
# trained it.
MIN_ACCURACY = 0.7
ENGINE_MARGIN = 0.05


def test_local_transform_writes_one_out_per_input_and_records_a_corrupt_file(
    digits_training, local_image, cli, tmp_path, capsys
):
    data, training = digits_training
    inputs = tmp_path / "in"
    shutil.copytree(data / "test", inputs)
    expected = {path.relative_to(inputs).as_posix(): path.parent.name for path in inputs.rglob("*.png")}
    (inputs / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    out = tmp_path / "out"

    model_data = final_json(training.stdout)["model_data"]
    code = cli(
        "transform", "--local", "--image", local_image, "--model-data", model_data,
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
    measured = job_metrics(training.stdout)["test"]["accuracy"]
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
