"""Archives in the image's own Python: a `.tar.gz` per channel in, a `model.tar.gz` served.

The base image's Python 3.11.2 has no ``tarfile`` extraction filters, so these run the real
container rather than the host's Python. The session's training job (``trained_job``) reads
its channels as ``.tar.gz`` uploads.
"""

from __future__ import annotations

import json
import tarfile

import pytest

from .conftest import assert_served_as_measured, count_correct, remove_container, start_server

pytestmark = pytest.mark.docker


def test_train_writes_the_model_and_the_reports(trained_job):
    job_dir, log = trained_job
    config = json.loads((job_dir / "model" / "model_config.json").read_text())
    assert config["class_names"] == [str(digit) for digit in range(10)]
    assert (job_dir / "model" / "model.pt").stat().st_size > 0
    reports = [p.name for p in (job_dir / "output" / "data").iterdir()]
    assert reports, "no reports in output/data"
    assert not (job_dir / "output" / "failure").exists()
    assert "epoch=3 " in log and "valid_accuracy=" in log


def test_trains_from_tar_gz_channels_and_serves_a_model_tar_gz(
    serving_image, trained_job, digits_data, tmp_path
):
    job_dir = trained_job[0]
    for channel in ("train", "valid", "test"):
        assert [p.name for p in (job_dir / "input" / "data" / channel).iterdir()] == [f"{channel}.tar.gz"]
    config = json.loads((job_dir / "model" / "model_config.json").read_text())
    assert config["class_names"] == [str(digit) for digit in range(10)]

    # What a user downloads from S3 and drops into a read-only /opt/ml/model as is.
    serve_dir = tmp_path / "serve"
    (serve_dir / "model").mkdir(parents=True)
    with tarfile.open(serve_dir / "model" / "model.tar.gz", "w:gz") as tar:
        for path in sorted((job_dir / "model").iterdir()):
            tar.add(path, arcname=path.name)
    name, url = start_server(serving_image, serve_dir)
    try:
        correct, total = count_correct(url, sorted((digits_data / "test").glob("*/*.png")))
    finally:
        remove_container(name)
    assert [p.name for p in (serve_dir / "model").iterdir()] == ["model.tar.gz"]
    assert_served_as_measured(correct / total, job_dir, f"model.tar.gz, {correct}/{total} test digits")
