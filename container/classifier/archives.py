"""Archive handling shared by the training channels, dogImages preparation and the client.

Standard library only: the client environment (no torch) imports it too.
"""

from __future__ import annotations

import tarfile
import zipfile
from pathlib import Path

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
IGNORED_PREFIXES = (".", "__MACOSX")


class ArchiveError(RuntimeError):
    """An archive cannot be read or extracted; the message names it."""


def is_archive(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(ARCHIVE_SUFFIXES)


def visible_entries(directory: Path) -> list[Path]:
    """Folder entries without hidden files and macOS zip debris."""
    return [p for p in directory.iterdir() if not p.name.startswith(IGNORED_PREFIXES)]


def descend_single_folders(root: Path, stop_at: set[str] | None = None) -> Path:
    """``dogImages.zip`` holds ``dogImages/train/...``: step down through lone wrapper folders.

    Stops at a folder that has one of ``stop_at`` as a child (e.g. ``train``), or whose
    lone child holds only files (that child is a class folder, not a wrapper).
    """
    while True:
        entries = visible_entries(root)
        if stop_at and any(e.name in stop_at for e in entries):
            return root
        if len(entries) == 1 and entries[0].is_dir():
            if any(p.is_dir() for p in visible_entries(entries[0])):
                root = entries[0]
                continue
        return root


def extract(archive: Path, target: Path) -> Path:
    """Extract ``archive`` into ``target`` (tar members filtered against path traversal)."""
    target.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.lower().endswith(".zip"):
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(target)
        else:
            with tarfile.open(archive) as tar:
                tar.extractall(target, filter="data")
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as error:
        raise ArchiveError(f"cannot extract archive {archive}: {error}") from error
    return target
