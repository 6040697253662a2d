"""Channels as ImageFolder data sets that survive the real world.

A channel holds an ImageFolder tree or one .zip/.tar/.tar.gz of it. Class names are the
sorted folder names of the train channel and must be the same in every channel. Corrupt,
truncated and non-image files are skipped and reported, never fatal to an epoch.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from torch.utils.data.dataloader import default_collate
from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

from classifier import archives
from classifier.training import distributed
from classifier.training.environment import TrainingEnvironment
from classifier.training.errors import JobInputError
from classifier.training.hyperparameters import Hyperparameters
from classifier.transforms import IMAGENET_MEAN, IMAGENET_STD, eval_transform, to_rgb, train_transform

logger = logging.getLogger(__name__)

# Errors Pillow raises for files that are not images, are truncated or are too large.
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError)


class DataError(JobInputError):
    """A channel's layout or content makes training impossible; the message says where."""


def _extract(archive: Path, scratch_root: Path) -> Path:
    """Extract once per host; concurrent processes wait on a lock and reuse the result."""
    stat = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
    target = scratch_root / key[:16]
    scratch_root.mkdir(parents=True, exist_ok=True)
    with open(scratch_root / f"{key[:16]}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done_marker = target / ".extracted"
        if not done_marker.exists():
            logger.info("extracting %s to %s", archive, target)
            try:
                archives.extract(archive, target)
            except archives.ArchiveError as error:
                raise DataError(f"channel {error}") from error
            done_marker.touch()
    return target


def resolve_channel(channel_dir: Path, scratch_root: Path | None = None) -> Path:
    """The ImageFolder root of a channel, extracting a lone archive if that is what it holds."""
    entries = archives.visible_entries(channel_dir)
    folders = [p for p in entries if p.is_dir()]
    packed = [p for p in entries if archives.is_archive(p)]
    if not folders and len(packed) == 1:
        scratch_root = scratch_root or Path(tempfile.gettempdir()) / "classifier-channels"
        return archives.descend_single_folders(_extract(packed[0], scratch_root))
    if not folders:
        raise DataError(
            f"channel {channel_dir} holds neither class folders nor a single archive "
            f"({', '.join(archives.ARCHIVE_SUFFIXES)}); found: {sorted(p.name for p in entries) or 'nothing'}"
        )
    return archives.descend_single_folders(channel_dir)


def find_class_names(root: Path) -> list[str]:
    names = sorted(p.name for p in archives.visible_entries(root) if p.is_dir())
    if not names:
        raise DataError(f"no class folders in {root}")
    return names


def check_same_classes(reference: list[str], root: Path, channel: str) -> None:
    """Every channel must use the train channel's index→name map, or labels silently shift."""
    names = find_class_names(root)
    missing = sorted(set(reference) - set(names))
    extra = sorted(set(names) - set(reference))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"classes missing from {channel}: {', '.join(missing)}")
        if extra:
            parts.append(f"classes in {channel} but not in train: {', '.join(extra)}")
        raise DataError(f"{'; '.join(parts)} ({root})")


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


class ImageFolderDataset(Dataset):
    """ImageFolder whose unreadable files become :class:`SkippedFile` entries, not exceptions."""

    def __init__(self, root: Path, class_names: list[str], transform, channel: str):
        self.root = root
        self.channel = channel
        self.class_names = list(class_names)
        self.transform = transform
        class_to_idx = {name: index for index, name in enumerate(self.class_names)}
        self.samples = make_dataset(str(root), class_to_idx, IMG_EXTENSIONS, allow_empty=True)
        if not self.samples:
            raise DataError(f"channel {channel} ({root}) has no image files ({', '.join(IMG_EXTENSIONS)})")
        self.targets = [target for _, target in self.samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        path, target = self.samples[index]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(path) as image:
                    image.load()
                    rgb = to_rgb(image)
            return self.transform(rgb), target
        except IMAGE_ERRORS as error:
            return SkippedFile(path, f"{type(error).__name__}: {error}")


@dataclass
class Batch:
    images: torch.Tensor | None
    targets: torch.Tensor | None
    skipped: list[SkippedFile]

    def __len__(self) -> int:
        return 0 if self.targets is None else len(self.targets)


def collate_skipping(items) -> Batch:
    """Collate the readable samples; carry the unreadable ones along so the loop can count them."""
    good = [item for item in items if not isinstance(item, SkippedFile)]
    skipped = [item for item in items if isinstance(item, SkippedFile)]
    if not good:
        return Batch(None, None, skipped)
    images, targets = default_collate(good)
    return Batch(images, targets, skipped)


class ShardSampler(Sampler[int]):
    """Every index exactly once across ranks (no padding), so eval metrics are exact."""

    def __init__(self, length: int, rank: int, world_size: int):
        self.indices = list(range(rank, length, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def check_skipped_share(channel: str, skipped: list[SkippedFile], total: int, max_fraction: float) -> None:
    if total and len(skipped) / total > max_fraction:
        listing = "; ".join(f"{s.path} ({s.reason})" for s in skipped[:20])
        more = f" and {len(skipped) - 20} more" if len(skipped) > 20 else ""
        raise DataError(
            f"{len(skipped)} of {total} files in channel {channel} are unreadable, more than "
            f"max_skipped_fraction={max_fraction}: {listing}{more}"
        )


# --- the job's channels and loaders ----------------------------------------------------


@dataclass
class Channels:
    class_names: list[str]
    train: ImageFolderDataset
    valid: ImageFolderDataset
    test: ImageFolderDataset | None


def load_channels(env: TrainingEnvironment, hp: Hyperparameters) -> Channels:
    train_root = resolve_channel(env.train_channel())
    class_names = find_class_names(train_root)
    valid_root = resolve_channel(env.valid_channel())
    check_same_classes(class_names, valid_root, "valid")
    test_dir = env.test_channel()
    test_root = resolve_channel(test_dir) if test_dir else None
    if test_root is not None:
        check_same_classes(class_names, test_root, "test")
    evaluation = eval_transform(hp.image_size, IMAGENET_MEAN, IMAGENET_STD)
    return Channels(
        class_names=class_names,
        train=ImageFolderDataset(
            train_root, class_names, train_transform(hp.image_size, hp.augmentation), "train"
        ),
        valid=ImageFolderDataset(valid_root, class_names, evaluation, "valid"),
        test=ImageFolderDataset(test_root, class_names, evaluation, "test") if test_root else None,
    )


def make_loader(dataset, hp: Hyperparameters, ctx: distributed.DistributedContext, train: bool):
    if train:
        sampler = (
            DistributedSampler(dataset, ctx.world_size, ctx.rank, shuffle=True, seed=hp.seed)
            if ctx.enabled
            else torch.utils.data.RandomSampler(dataset, generator=torch.Generator().manual_seed(hp.seed))
        )
    else:
        sampler = ShardSampler(len(dataset), ctx.rank, ctx.world_size)
    return DataLoader(
        dataset,
        batch_size=hp.batch_size,
        sampler=sampler,
        num_workers=hp.num_workers,
        collate_fn=collate_skipping,
        pin_memory=ctx.device.type == "cuda",
        persistent_workers=hp.num_workers > 0,
        prefetch_factor=4 if hp.num_workers > 0 else None,
    )
