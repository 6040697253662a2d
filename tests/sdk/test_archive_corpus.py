"""The crafted-archive corpus (tests/archive_corpus.py) against what the client unpacks:
``upload-data`` of an archive, and the model.tar.gz a local endpoint or local transform serves.
A refused archive sends nothing to S3, and nothing lands outside its folder."""

from __future__ import annotations

import tempfile

import pytest

from classifier_client.config import ConfigurationError
from classifier_client.local_endpoints import prepare_model_dir
from tests.archive_corpus import CASES, REFUSED, escaped_files, jail, read_long

BUCKET = "corpus"


@pytest.fixture
def scratch_in(tmp_path, monkeypatch):
    """The client's temporary folders go under the test's folder, where an escape would land."""
    monkeypatch.setattr(tempfile, "tempdir", str(jail(tmp_path)))
    return jail(tmp_path)


@pytest.mark.parametrize("case", REFUSED, ids=lambda case: case.name)
def test_upload_data_refuses_a_crafted_archive_before_any_upload(
    aws, cli, capsys, tmp_path, scratch_in, case
):
    aws.boto3("s3").create_bucket(Bucket=BUCKET)
    before = len(aws.recorded.calls)
    assert cli("upload-data", case.build(scratch_in), f"s3://{BUCKET}/data") == 2
    assert repr(case.refused_member) in capsys.readouterr().err
    assert "PutObject" not in aws.recorded.operations()[before:]
    assert escaped_files(tmp_path) == []


@pytest.mark.parametrize("case", [c for c in CASES if not c.is_zip], ids=lambda case: case.name)
def test_a_local_endpoints_model_archive_is_extracted_safely(tmp_path, case):
    folder = jail(tmp_path)
    archive = case.build(folder)
    target = folder / "model"
    if case.refused_member:
        with pytest.raises(ConfigurationError) as raised:
            prepare_model_dir(None, str(archive), target)
        assert repr(case.refused_member) in str(raised.value)
    else:
        with pytest.raises(ConfigurationError, match="holds no model_config.json"):
            prepare_model_dir(None, f"file://{archive}", target)
        for relative, data in case.extracted.items():
            assert read_long(target, relative) == data
    assert escaped_files(tmp_path) == []
