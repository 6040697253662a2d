"""The crafted-archive corpus (tests/archive_corpus.py) against every extraction of the image:
archives.extract, a training channel, a model.tar.gz, and dogImages preparation (the multi-model
API's loads: tests/unit/serving/test_multi_model.py). None writes outside its folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from classifier.archives import ArchiveError, extract
from classifier.artifacts import ModelArtifactError, resolve_model_dir
from classifier.image_folders import DataError, resolve_channel
from tests.archive_corpus import CASES, REFUSED, escaped_files, exists_long, jail, read_long


def _check_extracted(case, root: Path) -> None:
    for relative, data in case.extracted.items():
        assert read_long(root, relative) == data, relative
    for relative in case.absent:
        assert not exists_long(root, relative), relative


def _extract_directly(archive: Path, folder: Path) -> Path:
    return extract(archive, folder / "out")


def _extract_channel(archive: Path, folder: Path) -> Path:
    channel = folder / "channel"
    channel.mkdir()
    archive = archive.rename(channel / archive.name)
    return resolve_channel(channel, scratch_root=folder / "scratch")


def _extract_model(archive: Path, folder: Path) -> Path:
    model_dir = folder / "model"
    model_dir.mkdir()
    archive.rename(model_dir / "model.tar.gz")
    return resolve_model_dir(model_dir)


ENTRY_POINTS = {
    "archives.extract": (_extract_directly, ArchiveError),
    "a training channel": (_extract_channel, DataError),
    "model.tar.gz": (_extract_model, ModelArtifactError),
}


def _applies(case, entry: str) -> bool:
    """A model artefact is a tar.gz (SageMaker's ModelDataUrl); only archives.extract's result
    is read folder by folder, as paths past PATH_MAX need."""
    if entry == "model.tar.gz" and case.is_zip:
        return False
    return entry == "archives.extract" or not case.past_path_max


COMBINATIONS = [
    pytest.param(case, entry, id=f"{entry}: {case.name}")
    for entry in ENTRY_POINTS
    for case in CASES
    if _applies(case, entry)
]


@pytest.mark.parametrize(("case", "entry"), COMBINATIONS)
def test_no_crafted_archive_writes_outside_its_folder(tmp_path, case, entry):
    extract_with, error_type = ENTRY_POINTS[entry]
    folder = jail(tmp_path)
    archive = case.build(folder)
    if case.refused_member:
        with pytest.raises(error_type) as raised:
            extract_with(archive, folder)
        assert repr(case.refused_member) in str(raised.value)
    else:
        _check_extracted(case, extract_with(archive, folder))
    assert escaped_files(tmp_path) == []


@pytest.mark.parametrize("case", REFUSED, ids=[case.name for case in REFUSED])
def test_dog_images_preparation_refuses_a_crafted_archive(tmp_path, case):
    from tools.dog_images import prepare

    folder = jail(tmp_path)
    with pytest.raises(ArchiveError, match="points outside|would land outside|device or FIFO"):
        prepare(case.build(folder), folder / "dogs")
    assert escaped_files(tmp_path) == []
