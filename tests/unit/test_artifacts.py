import json
import os
import tarfile
import tempfile
from pathlib import Path

import pytest
import torch

from classifier.artifacts import ModelArtifactError, ModelSpec, load_model, load_model_spec, save_model
from classifier.models import create_model

SPEC = ModelSpec("resnet18", ("001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier"), 32)


@pytest.fixture
def model_dir(tmp_path):
    torch.manual_seed(0)
    return save_model(tmp_path / "model", create_model("resnet18", 3).state_dict(), SPEC)


def test_round_trip_keeps_class_order_and_weights(model_dir):
    model, spec = load_model(model_dir)
    assert spec == SPEC and not model.training
    torch.manual_seed(0)
    reference = create_model("resnet18", 3).eval()
    x = torch.randn(1, 3, 32, 32)
    assert torch.allclose(model(x), reference(x))
    saved = json.loads((model_dir / "model_config.json").read_text())
    assert saved["class_names"] == list(SPEC.class_names) and saved["image_size"] == 32


def test_model_tar_gz_dropped_into_the_model_dir_is_unpacked(model_dir, tmp_path):
    archive_dir = tmp_path / "serving_model"
    archive_dir.mkdir()
    with tarfile.open(archive_dir / "model.tar.gz", "w:gz") as tar:
        for path in model_dir.iterdir():
            tar.add(path, arcname=path.name)
    assert load_model(archive_dir)[1] == SPEC


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda d: (d / "model.pt").write_bytes(b"garbage"), "model.pt is not a readable state_dict"),
        (lambda d: (d / "model.pt").unlink(), "no model.pt in model directory"),
        (lambda d: (d / "model_config.json").unlink(), "no model_config.json in model directory"),
        (lambda d: (d / "model_config.json").write_text("{}"), "is not a valid model config"),
        (
            lambda d: (d / "model_config.json").write_text(SPEC.to_json().replace("resnet18", "resnet34")),
            "does not fit resnet34 with 3 classes",
        ),
    ],
)
def test_damaged_model_dir_is_a_clear_error(model_dir, damage, message):
    damage(model_dir)
    with pytest.raises(ModelArtifactError, match=message):
        load_model(model_dir)


def test_duplicate_class_names_are_refused(model_dir):
    (model_dir / "model_config.json").write_text(
        SPEC.to_json().replace("002.Afghan_hound", "001.Affenpinscher")
    )
    with pytest.raises(ModelArtifactError, match="unique"):
        load_model_spec(model_dir)


def test_model_tar_gz_on_a_read_only_folder_is_unpacked_aside(model_dir, tmp_path, monkeypatch):
    archive_dir = tmp_path / "read_only_model"
    archive_dir.mkdir()
    with tarfile.open(archive_dir / "model.tar.gz", "w:gz") as tar:
        for path in model_dir.iterdir():
            tar.add(path, arcname=path.name)
    (tmp_path / "scratch").mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp_path / "scratch"))
    monkeypatch.setattr(tempfile, "tempdir", None)
    # A read-only mount (EROFS) refuses even root; chmod would not, so access() stands in.
    writable = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != archive_dir and writable(path, mode))
    assert load_model(archive_dir)[1] == SPEC
    assert load_model_spec(archive_dir) == SPEC
    assert sorted(p.name for p in archive_dir.iterdir()) == ["model.tar.gz"]
    unpacked = list((tmp_path / "scratch" / "classifier-models").iterdir())
    assert len(unpacked) == 1 and (unpacked[0] / "model.pt").is_file()
