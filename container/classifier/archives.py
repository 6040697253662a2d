"""Archive handling shared by the training channels, dogImages preparation and the client.

Standard library only: the client environment (no torch) imports it too.
"""

from __future__ import annotations

import hashlib
import tarfile
import zipfile
from pathlib import Path

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
IGNORED_PREFIXES = (".", "__MACOSX")


class ArchiveError(RuntimeError):
    """An archive cannot be read or extracted; the message names it."""


def scratch_folder(archive: Path, scratch_root: Path) -> Path:
    """Where ``archive`` is extracted under ``scratch_root``: a name from its path, size and
    modification time, so every process of a host finds the same extraction and a changed
    archive a new one."""
    stat = archive.stat()
    key = hashlib.sha256(f"{archive.resolve()}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()
    return scratch_root / key[:16]


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


# Bounds on what one archive may unpack to: generous for image data sets (dogImages is
# about 1 GB in 8,351 files), small enough that a crafted archive cannot fill the disk.
MAX_EXTRACTED_BYTES = 256 * 2**30
MAX_MEMBERS = 5_000_000


def extract(
    archive: Path, target: Path, max_bytes: int = MAX_EXTRACTED_BYTES, max_members: int = MAX_MEMBERS
) -> Path:
    """Extract ``archive`` into ``target``, refusing anything that would land outside it.

    Safe on every Python 3.11: the ``filter=`` argument of ``tarfile`` exists only from
    3.11.4 (Debian 12 ships 3.11.2), so each member is checked here instead: no absolute
    or ``..`` paths, no links that leave ``target``, no device files or FIFOs, and bounds on
    the total size and the number of members.
    """
    target.mkdir(parents=True, exist_ok=True)
    try:
        if archive.name.lower().endswith(".zip"):
            _extract_zip(archive, target, max_bytes, max_members)
        else:
            _extract_tar(archive, target, max_bytes, max_members)
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as error:
        raise ArchiveError(f"cannot extract archive {archive}: {error}") from error
    return target


def _check_bounds(archive: Path, members: int, total: int, max_bytes: int, max_members: int) -> None:
    if members > max_members:
        raise ArchiveError(f"archive {archive} has {members} members, more than the limit of {max_members}")
    if total > max_bytes:
        raise ArchiveError(
            f"archive {archive} would unpack to {total} bytes, more than the limit of {max_bytes}"
        )


def _inside(target: Path, name: str) -> bool:
    root = target.resolve()
    destination = (root / name).resolve()
    return destination == root or destination.is_relative_to(root)


def _extract_zip(archive: Path, target: Path, max_bytes: int, max_members: int) -> None:
    with zipfile.ZipFile(archive) as zipped:
        infos = zipped.infolist()
        _check_bounds(archive, len(infos), sum(i.file_size for i in infos), max_bytes, max_members)
        for info in infos:
            if not _inside(target, info.filename):
                raise ArchiveError(f"archive {archive}: member {info.filename!r} would land outside {target}")
        # zipfile writes symlink members as plain files, so no link can lead out.
        zipped.extractall(target)


def _extract_tar(archive: Path, target: Path, max_bytes: int, max_members: int) -> None:
    with tarfile.open(archive) as tar:
        members = tar.getmembers()
        total = sum(m.size for m in members if m.isfile())
        _check_bounds(archive, len(members), total, max_bytes, max_members)
        for member in members:
            _check_tar_member(archive, target, member)
        for member in members:
            # Checked above; set_attrs=False keeps the archive's owners and modes off the files.
            tar.extract(member, target, set_attrs=False)


def _check_tar_member(archive: Path, target: Path, member: tarfile.TarInfo) -> None:
    name = member.name
    if name.startswith("/") or not _inside(target, name):
        raise ArchiveError(f"archive {archive}: member {name!r} would land outside {target}")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise ArchiveError(f"archive {archive}: member {name!r} is a device or FIFO, not a file")
    if member.issym():
        link_target = str(Path(name).parent / member.linkname)
        if member.linkname.startswith("/") or not _inside(target, link_target):
            raise ArchiveError(
                f"archive {archive}: symlink {name!r} -> {member.linkname!r} points outside {target}"
            )
    if member.islnk() and (member.linkname.startswith("/") or not _inside(target, member.linkname)):
        raise ArchiveError(
            f"archive {archive}: hard link {name!r} -> {member.linkname!r} points outside {target}"
        )
