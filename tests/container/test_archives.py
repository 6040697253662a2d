"""Archives in the image's own Python: a `.tar.gz` per channel in, a `model.tar.gz` served.

The base image's Python 3.11.2 has no ``tarfile`` extraction filters, so these run the real
container rather than the host's Python.
"""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from .conftest import count_correct, make_job_dir, remove_container, run_training, start_server

pytestmark = pytest.mark.docker


def _pack_channels(job_dir: Path) -> list[str]:
    """Replace each channel's folder tree by one ``<channel>.tar.gz`` of it, as users upload it."""
    packed = []
    for channel in sorted((job_dir / "input" / "data").iterdir()):
        archive = channel.with_suffix(".tar.gz")
        with tarfile.open(archive, "w:gz") as tar:
            for class_dir in sorted(channel.iterdir()):
                tar.add(class_dir, arcname=f"{channel.name}/{class_dir.name}")
        for image in channel.glob("*/*"):
            image.unlink()
        for class_dir in channel.iterdir():
            class_dir.rmdir()
        archive.replace(channel / archive.name)
        packed.append(channel.name)
    return packed


def test_trains_from_tar_gz_channels_and_serves_a_model_tar_gz(image, digits_data, tmp_path):
    job_dir = make_job_dir(tmp_path / "job", digits_data, {"epochs": "4", "batch_size": "16"}, per_class=30)
    assert _pack_channels(job_dir) == ["test", "train", "valid"]

    result = run_training(image, job_dir, timeout=900)
    assert result.returncode == 0, f"training failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    config = json.loads((job_dir / "model" / "model_config.json").read_text())
    assert config["class_names"] == [str(digit) for digit in range(10)]

    # What a user downloads from S3 and drops into a read-only /opt/ml/model as is.
    serve_dir = tmp_path / "serve"
    (serve_dir / "model").mkdir(parents=True)
    with tarfile.open(serve_dir / "model" / "model.tar.gz", "w:gz") as tar:
        for path in sorted((job_dir / "model").iterdir()):
            tar.add(path, arcname=path.name)
    name, url = start_server(image, serve_dir)
    try:
        correct, total = count_correct(url, sorted((digits_data / "test").glob("*/*.png"))[::5])
    finally:
        remove_container(name)
    assert [p.name for p in (serve_dir / "model").iterdir()] == ["model.tar.gz"]
    assert correct / total >= 0.5, f"{correct}/{total} correct"
