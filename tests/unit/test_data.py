import shutil
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from classifier import image_folders
from classifier.training import data
from classifier.transforms import eval_transform, to_rgb


def _zip_tree(source: Path, archive: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in sorted(source.rglob("*")):
            zipped.write(path, prefix + str(path.relative_to(source)))
    return archive


def test_plain_folder_channel(small_folder):
    root = image_folders.resolve_channel(small_folder)
    assert image_folders.find_class_names(root) == ["cat", "dog", "fox"]


def test_zip_channel_with_wrapper_folder(tmp_path, small_folder):
    channel = tmp_path / "channel"
    channel.mkdir()
    _zip_tree(small_folder, channel / "train.zip", prefix="dogImages/train/")
    root = image_folders.resolve_channel(channel, scratch_root=tmp_path / "scratch")
    assert image_folders.find_class_names(root) == ["cat", "dog", "fox"]
    dataset = image_folders.ImageFolderDataset(root, ["cat", "dog", "fox"], eval_transform(16), "train")
    assert len(dataset) == 18
    # A second resolve (another process on the host) reuses the extraction.
    assert image_folders.resolve_channel(channel, scratch_root=tmp_path / "scratch") == root


@pytest.mark.parametrize("suffix,mode", [(".tar.gz", "w:gz"), (".tar", "w")])
def test_tar_channel(tmp_path, small_folder, suffix, mode):
    channel = tmp_path / "channel"
    channel.mkdir()
    with tarfile.open(channel / f"data{suffix}", mode) as tar:
        for path in sorted(small_folder.iterdir()):
            tar.add(path, arcname=path.name)
    root = image_folders.resolve_channel(channel, scratch_root=tmp_path / "scratch")
    assert image_folders.find_class_names(root) == ["cat", "dog", "fox"]


def test_corrupt_archive_is_a_clear_error(tmp_path):
    channel = tmp_path / "channel"
    channel.mkdir()
    (channel / "train.zip").write_bytes(b"PK not really a zip")
    with pytest.raises(image_folders.DataError, match="channel cannot extract archive .*train.zip"):
        image_folders.resolve_channel(channel, scratch_root=tmp_path / "scratch")


def test_empty_channel_says_what_it_found(tmp_path):
    channel = tmp_path / "channel"
    channel.mkdir()
    (channel / "notes.txt").write_text("x")
    with pytest.raises(image_folders.DataError, match=r"neither class folders nor a single archive .*notes"):
        image_folders.resolve_channel(channel)


def test_class_missing_from_valid_is_named(tmp_path, small_folder):
    valid = tmp_path / "valid"
    shutil.copytree(small_folder, valid)
    shutil.rmtree(valid / "dog")
    (valid / "wolf").mkdir()
    with pytest.raises(image_folders.DataError) as error:
        image_folders.check_same_classes(["cat", "dog", "fox"], valid, "valid")
    assert "classes missing from valid: dog" in str(error.value)
    assert "classes in valid but not in train: wolf" in str(error.value)


def _write_bad_files(folder: Path) -> dict[str, str]:
    good = folder / "0.png"
    jpeg = folder / "whole.jpg"
    Image.open(good).convert("RGB").resize((64, 64)).save(jpeg, quality=90)
    truncated = folder / "truncated.jpg"
    truncated.write_bytes(jpeg.read_bytes()[: len(jpeg.read_bytes()) // 2])
    (folder / "text.png").write_text("this is not an image")
    (folder / "empty.jpg").write_bytes(b"")
    return {"truncated.jpg", "text.png", "empty.jpg"}


def test_unreadable_files_are_skipped_not_fatal(small_folder):
    bad = _write_bad_files(small_folder / "cat")
    classes = ["cat", "dog", "fox"]
    dataset = image_folders.ImageFolderDataset(small_folder, classes, eval_transform(16), "train")
    loader = torch.utils.data.DataLoader(dataset, batch_size=8, collate_fn=data.collate_skipping)
    batches = list(loader)
    skipped = [s for b in batches for s in b.skipped]
    assert {Path(s.path).name for s in skipped} == bad
    assert all(s.reason for s in skipped)
    assert sum(len(b) for b in batches) == len(dataset) - len(bad)
    assert all(b.images.shape[1:] == (3, 16, 16) for b in batches if len(b))


def test_skipped_share_over_limit_fails_with_the_list(small_folder):
    _write_bad_files(small_folder / "cat")
    skipped = [image_folders.SkippedFile(str(small_folder / "cat/text.png"), "UnidentifiedImageError")]
    data.check_skipped_share("train", skipped, 100, 0.05)
    with pytest.raises(image_folders.DataError, match=r"1 of 10 files in channel train .*text.png"):
        data.check_skipped_share("train", skipped, 10, 0.05)


@pytest.mark.parametrize(
    "make",
    [
        lambda: Image.new("L", (10, 10), 128),
        lambda: Image.new("CMYK", (10, 10), (0, 255, 0, 0)),
        lambda: Image.new("RGBA", (10, 10), (255, 0, 0, 0)),
        lambda: Image.new("LA", (10, 10), (10, 255)),
        lambda: Image.new("P", (10, 10), 3),
        lambda: Image.fromarray(np.full((10, 10), 65535, dtype=np.uint16)),
        lambda: Image.new("1", (10, 10), 1),
    ],
)
def test_every_mode_becomes_rgb(make):
    image = to_rgb(make())
    assert image.mode == "RGB" and image.size == (10, 10)


def test_sixteen_bit_white_stays_white_and_transparent_becomes_white():
    assert to_rgb(Image.fromarray(np.full((4, 4), 65535, dtype=np.uint16))).getpixel((0, 0)) == (
        255,
        255,
        255,
    )
    assert to_rgb(Image.new("RGBA", (4, 4), (255, 0, 0, 0))).getpixel((0, 0)) == (255, 255, 255)


def test_shard_sampler_covers_every_index_once():
    shards = [list(data.ShardSampler(10, rank, 3)) for rank in range(3)]
    assert sorted(i for shard in shards for i in shard) == list(range(10))


def test_augmentation_recipes():
    from torchvision import transforms

    from classifier.transforms import train_transform

    standard = train_transform(32, "standard").transforms[0]
    assert isinstance(standard, transforms.RandomResizedCrop) and standard.scale == (0.6, 1.0)
    strong = train_transform(32, "strong").transforms
    assert any(isinstance(t, transforms.TrivialAugmentWide) for t in strong)
    with pytest.raises(ValueError, match="augmentation must be one of"):
        train_transform(32, "wild")
