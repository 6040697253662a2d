"""Archive extraction refuses whatever would land outside its target, on any Python 3.11."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from classifier.archives import ArchiveError, extract


def _tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, payload in members:
            if payload is not None:
                info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def _file(name: str) -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), b"data"


def _link(name: str, target: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


@pytest.fixture(params=["with filter", "python 3.11.2 without filter"])
def tarfile_variant(request, monkeypatch):
    """The image's Python 3.11.2 has no extraction filters: prove safety does not rely on them."""
    if request.param != "with filter":
        original = tarfile.TarFile.extract

        def extract_without_filter(self, member, path="", set_attrs=True, *, numeric_owner=False, **kw):
            if "filter" in kw:
                raise TypeError("extract() got an unexpected keyword argument 'filter'")
            return original(self, member, path, set_attrs, numeric_owner=numeric_owner)

        monkeypatch.setattr(tarfile.TarFile, "extract", extract_without_filter)
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    return request.param


def test_a_plain_tar_extracts(tmp_path, tarfile_variant):
    archive = _tar(tmp_path / "ok.tar.gz", [_file("cat/1.png"), _file("dog/2.png")])
    out = extract(archive, tmp_path / "out")
    assert (out / "cat/1.png").read_bytes() == b"data"
    assert (out / "dog/2.png").exists()


@pytest.mark.parametrize(
    "member, message",
    [
        (_file("../escape.png"), "would land outside"),
        (_file("/etc/evil.png"), "would land outside"),
        (_link("cat/link", "../../outside", tarfile.SYMTYPE), "symlink"),
        (_link("cat/abs", "/etc/passwd", tarfile.SYMTYPE), "symlink"),
        (_link("cat/hard", "../outside", tarfile.LNKTYPE), "hard link"),
        (_link("dev", "", tarfile.CHRTYPE), "device or FIFO"),
        (_link("fifo", "", tarfile.FIFOTYPE), "device or FIFO"),
    ],
)
def test_hostile_tar_members_are_refused_and_nothing_escapes(tmp_path, tarfile_variant, member, message):
    archive = _tar(tmp_path / "bad.tar.gz", [_file("cat/1.png"), member])
    target = tmp_path / "deep" / "out"
    with pytest.raises(ArchiveError, match=message) as error:
        extract(archive, target)
    assert str(archive) in str(error.value)
    assert not (tmp_path / "deep" / "escape.png").exists()
    assert not list(target.rglob("*")), "nothing is extracted from a refused archive"


def test_links_inside_the_target_are_kept(tmp_path, tarfile_variant):
    archive = _tar(
        tmp_path / "links.tar.gz",
        [_file("cat/1.png"), _link("cat/alias.png", "1.png", tarfile.SYMTYPE)],
    )
    out = extract(archive, tmp_path / "out")
    assert (out / "cat/alias.png").read_bytes() == b"data"


def test_size_and_member_bounds(tmp_path, tarfile_variant):
    archive = _tar(tmp_path / "many.tar.gz", [_file(f"cat/{i}.png") for i in range(5)])
    with pytest.raises(ArchiveError, match="5 members, more than the limit of 4"):
        extract(archive, tmp_path / "a", max_members=4)
    with pytest.raises(ArchiveError, match="would unpack to 20 bytes, more than the limit of 19"):
        extract(archive, tmp_path / "b", max_bytes=19)


def test_zip_bounds_and_traversal(tmp_path):
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w") as zipped:
        zipped.writestr("cat/1.png", b"x" * 100)
        zipped.writestr("../escape.png", b"x")
    with pytest.raises(ArchiveError, match="would land outside"):
        extract(path, tmp_path / "out")
    with pytest.raises(ArchiveError, match="more than the limit of 50"):
        extract(path, tmp_path / "out2", max_bytes=50)
    assert not (tmp_path / "escape.png").exists()


def test_model_archive_is_checked_the_same_way(tmp_path):
    from classifier.artifacts import ModelArtifactError, load_model_spec

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    _tar(model_dir / "model.tar.gz", [_file("model_config.json"), _file("../../escape")])
    with pytest.raises(ModelArtifactError, match="would land outside"):
        load_model_spec(model_dir)
