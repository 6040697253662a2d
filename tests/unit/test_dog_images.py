import zipfile

import boto3
import pytest
from moto import mock_aws
from PIL import Image

from tools import dog_images

BREEDS = ["001.Affenpinscher", "002.Afghan_hound", "003.Airedale_terrier"]


def make_dog_zip(path, splits=dog_images.SPLITS, drop=None):
    """A dogImages.zip in miniature: dogImages/<split>/<NNN.Breed>/<Breed>_NNNNN.jpg."""
    image = path.parent / "dog.jpg"
    Image.new("RGB", (30, 20), (120, 80, 40)).save(image)
    with zipfile.ZipFile(path, "w") as zipped:
        for split in splits:
            for breed in BREEDS:
                if (split, breed) == drop:
                    continue
                for i in range(3 if split == "train" else 1):
                    zipped.write(image, f"dogImages/{split}/{breed}/{breed.split('.')[1]}_{i:05d}.jpg")
        zipped.writestr("__MACOSX/dogImages/._train", b"")
    return path


def test_prepares_channels_and_prints_counts(tmp_path, capsys):
    archive = make_dog_zip(tmp_path / "dogImages.zip")
    assert dog_images.main([str(archive), str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    assert "train: 3 classes, 9 images" in printed
    assert "valid: 3 classes, 3 images" in printed and "test: 3 classes, 3 images" in printed
    assert sorted(p.name for p in (tmp_path / "out/train").iterdir()) == BREEDS


def test_class_missing_from_a_split_is_named(tmp_path, capsys):
    archive = make_dog_zip(tmp_path / "dogImages.zip", drop=("valid", "002.Afghan_hound"))
    assert dog_images.main([str(archive), str(tmp_path / "out")]) == 2
    assert "classes missing from valid: 002.Afghan_hound" in capsys.readouterr().err


def test_missing_split_is_named(tmp_path, capsys):
    archive = make_dog_zip(tmp_path / "dogImages.zip", splits=("train", "valid"))
    assert dog_images.main([str(archive), str(tmp_path / "out")]) == 2
    assert "lacks split folders ['test']" in capsys.readouterr().err


def test_uploads_the_channels_to_s3(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    archive = make_dog_zip(tmp_path / "dogImages.zip")
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="dogs")
        assert dog_images.main([str(archive), str(tmp_path / "out"), "--s3", "s3://dogs/data"]) == 0
        keys = [o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="dogs")["Contents"]]
    assert len(keys) == 15
    assert "data/train/001.Affenpinscher/Affenpinscher_00000.jpg" in keys
    assert "channel train: s3://dogs/data/train" in capsys.readouterr().out


def test_download_failure_is_explained(tmp_path):
    with pytest.raises(SystemExit, match="cannot download http://127.0.0.1:9/dogImages.zip"):
        dog_images.download("http://127.0.0.1:9/dogImages.zip", tmp_path / "x.zip")
