"""Channels as ImageFolder data sets that survive the real world; training reads them, and so
does the export's parity check.

A channel holds an ImageFolder tree or one .zip/.tar/.tar.gz of it. Class names are the
sorted folder names of the train channel and must be the same in every channel. Corrupt,
truncated and non-image files are skipped and reported, never fatal to an epoch.
"""

from __future__ import annotations

import fcntl
import logging
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from torch.utils.data import Dataset
from torchvision.datasets.folder import IMG_EXTENSIONS, make_dataset

from classifier import archives
from classifier.errors import JobInputError
from classifier.preprocessing import to_rgb

logger = logging.getLogger(__name__)

# Errors Pillow raises for files that are not images, are truncated or are too large.
IMAGE_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError, EOFError)


class DataError(JobInputError):
    """A channel's layout or content makes training impossible; the message says where."""


def _extract(archive: Path, scratch_root: Path) -> Path:
    """Extract once per host; concurrent processes wait on a lock and reuse the result."""
    target = archives.scratch_folder(archive, scratch_root)
    scratch_root.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(f"{target.name}.lock"), "w") as lock:
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
