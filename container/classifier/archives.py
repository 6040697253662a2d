"""Archive handling shared by the training channels, model.tar.gz, dogImages preparation and the
client: one :func:`extract` for every archive the project unpacks.

Standard library only: the client environment (no torch) imports it too.

Why :func:`extract` does not call ``TarFile.extract``: the image's Python is 3.11.2, which has no
``filter=`` (3.11.4+), and even the filters were bypassed in 2025 (CVE-2025-4517 and its
siblings: ``os.path.realpath`` on paths longer than PATH_MAX, links to links, a directory
replaced by a link). Checking member names before anything exists on disk cannot see what links
created earlier in the same archive do to later paths: ``a -> .``, ``a/b -> ..``,
``b/escaped.txt`` passed such a check and wrote one level above the target. So:

- every member name is checked lexically (no absolute path, no ``..``, no NUL);
- every link is resolved in the archive's own namespace, through the other links, and one that
  leads outside the target refuses the archive, naming the member;
- nothing is written through a path: each folder is opened with ``O_NOFOLLOW`` relative to its
  parent's descriptor, and each file created with ``O_NOFOLLOW`` in it, so no symlink on disk,
  pre-existing or not, is ever followed;
- no link is ever created: a link to a regular file of the archive is written as a copy of it,
  and any other link (to a folder, dangling, a loop) is dropped with a warning.
"""

from __future__ import annotations

import hashlib
import logging
import os
import stat
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

logger = logging.getLogger(__name__)

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
IGNORED_PREFIXES = (".", "__MACOSX")


class ArchiveError(RuntimeError):
    """An archive cannot be read or extracted; the message names it, and the member at fault."""


def scratch_folder(archive: Path, scratch_root: Path) -> Path:
    """Where ``archive`` is extracted under ``scratch_root``: a name from its path, size and
    modification time, so every process of a host finds the same extraction and a changed
    archive a new one."""
    stat_result = archive.stat()
    key = hashlib.sha256(
        f"{archive.resolve()}:{stat_result.st_size}:{stat_result.st_mtime_ns}".encode()
    ).hexdigest()
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
# As the kernel's own limit on symlinks followed in one lookup (path_resolution(7)).
MAX_LINK_HOPS = 40
MAX_LINK_TARGET = 4096  # PATH_MAX
_COPY_CHUNK = 1 << 20

FILE, FOLDER, SYMLINK, HARDLINK = "file", "folder", "symlink", "hard link"
Parts = tuple[str, ...]


@dataclass(frozen=True)
class _Member:
    name: str
    kind: str
    size: int = 0
    link: str = ""
    open: Callable[[], IO[bytes] | None] | None = None


def extract(
    archive: Path, target: Path, max_bytes: int = MAX_EXTRACTED_BYTES, max_members: int = MAX_MEMBERS
) -> Path:
    """Extract ``archive`` (.zip, .tar, .tar.gz, .tgz) into ``target``; nothing lands outside it.

    A member that would leave ``target`` (by its name or through any chain of links), a device
    or FIFO, or an archive over ``max_bytes``/``max_members`` refuses the whole archive before
    anything is written. Links are written as copies of the file they name, or dropped. What
    only writing finds (a member under a file, a zip whose sizes lie, a symlink already on disk)
    stops the extraction with an ArchiveError and leaves what was written: extract into a
    scratch folder and discard it on error, as every caller does.
    """
    target.mkdir(parents=True, exist_ok=True)
    try:
        with _members(archive) as members:
            plan = _Plan.check(archive, target, members, max_bytes, max_members)
            plan.write(target, max_bytes)
    except ArchiveError:
        raise
    # RuntimeError: an encrypted zip member; NotImplementedError: a zip compression method
    # Python lacks; zlib.error: damaged deflate data.
    except (
        zipfile.BadZipFile,
        tarfile.TarError,
        OSError,
        EOFError,
        RuntimeError,
        NotImplementedError,
        zlib.error,
    ) as error:
        raise ArchiveError(f"cannot extract archive {archive}: {type(error).__name__}: {error}") from error
    return target


# --- reading: tar and zip as one list of members ------------------------------------------


@contextmanager
def _members(archive: Path) -> Iterator[list[_Member]]:
    if archive.name.lower().endswith(".zip"):
        with zipfile.ZipFile(archive) as zipped:
            yield [_zip_member(zipped, info) for info in zipped.infolist()]
    else:
        with tarfile.open(archive) as tar:
            yield [_tar_member(tar, info) for info in tar.getmembers()]


def _tar_member(tar: tarfile.TarFile, info: tarfile.TarInfo) -> _Member:
    if info.isfile():
        return _Member(info.name, FILE, info.size, open=lambda: tar.extractfile(info))
    if info.isdir():
        return _Member(info.name, FOLDER)
    if info.issym():
        return _Member(info.name, SYMLINK, link=info.linkname)
    if info.islnk():
        return _Member(info.name, HARDLINK, link=info.linkname)
    return _Member(info.name, "device or FIFO")


def _zip_member(zipped: zipfile.ZipFile, info: zipfile.ZipInfo) -> _Member:
    if info.is_dir():
        return _Member(info.filename, FOLDER)
    if stat.S_ISLNK(info.external_attr >> 16):  # a Unix zip stores a link's target as its data
        if info.file_size > MAX_LINK_TARGET:
            raise ArchiveError(
                f"zip member {info.filename!r}: a symlink whose target is {info.file_size} bytes long"
            )
        link = zipped.read(info)[: MAX_LINK_TARGET + 1].decode("utf-8", "surrogateescape")
        return _Member(info.filename, SYMLINK, link=link)
    return _Member(info.filename, FILE, info.file_size, open=lambda: zipped.open(info))


# --- checking: names, kinds, bounds and links, before anything is written -----------------


class _Plan:
    """What will be written: files and folders by their checked parts, and each link as a copy
    of the file it leads to."""

    def __init__(self, archive: Path, target: Path):
        self.archive = archive
        self.target = target
        self.entries: dict[Parts, _Member] = {}
        self.links: dict[Parts, _Member] = {}
        self.copies: list[tuple[Parts, Parts]] = []  # (where the link was, the file it names)

    @classmethod
    def check(cls, archive: Path, target: Path, members: list[_Member], max_bytes: int, max_members: int):
        plan = cls(archive, target)
        if len(members) > max_members:
            raise ArchiveError(
                f"archive {archive} has {len(members)} members, more than the limit of {max_members}"
            )
        total = sum(m.size for m in members if m.kind == FILE)
        if total > max_bytes:
            raise ArchiveError(
                f"archive {archive} would unpack to {total} bytes, more than the limit of {max_bytes}"
            )
        for member in members:
            if member.kind not in (FILE, FOLDER, SYMLINK, HARDLINK):
                raise ArchiveError(
                    f"archive {archive}: member {member.name!r} is a device or FIFO, not a file"
                )
            plan._add(member)
        plan._plan_copies()
        return plan

    def _add(self, member: _Member) -> None:
        """Place ``member`` where an extractor would: its folder reached through the links
        before it. A later member in the same place replaces an earlier one, as in tar."""
        parts = self._parts(member)
        if not parts:
            return
        folder = self._resolve([(p, member) for p in parts[:-1]], member)
        if folder is None:
            raise ArchiveError(f"archive {self.archive}: member {member.name!r} lies under a loop of links")
        place = (*folder, parts[-1])
        self.entries.pop(place, None)
        self.links.pop(place, None)
        (self.links if member.kind in (SYMLINK, HARDLINK) else self.entries)[place] = member

    def _plan_copies(self) -> None:
        """Each link becomes a copy of the file it leads to, or is dropped (said once every
        link is known to stay inside)."""
        dropped = []
        for place, member in self.links.items():
            start = place[:-1] if member.kind == SYMLINK else ()  # a hard link names a path from the root
            leads_to = self._resolve([(p, member) for p in start] + self._steps(member, member), member)
            if leads_to is not None and leads_to in self.entries and self.entries[leads_to].kind == FILE:
                self.copies.append((place, leads_to))
            else:
                dropped.append(member)
        for member in dropped:
            logger.warning(
                "archive %s: %s %r -> %r dropped: it leads to no file of the archive",
                self.archive, member.kind, member.name, member.link,
            )  # fmt: skip

    def _parts(self, member: _Member) -> Parts:
        """The member's path components, refused if absolute, with ``..`` or with a NUL."""
        name = member.name
        components = tuple(p for p in name.split("/") if p not in ("", "."))
        if name.startswith("/") or ".." in components or "\0" in name:
            raise ArchiveError(f"archive {self.archive}: member {name!r} would land outside {self.target}")
        return components

    def _resolve(self, pending: list[tuple[str, _Member]], member: _Member) -> Parts | None:
        """The place ``pending`` (path components, each with the member it comes from) leads
        to, through every link on the way; None for a loop. A step above the target refuses the
        archive, naming ``member`` and the link that took it there."""
        resolved: list[str] = []
        hops = 0
        while pending:
            component, source = pending.pop(0)
            if component == "..":
                if not resolved:
                    raise self._outside(member, source)
                resolved.pop()
                continue
            resolved.append(component)
            link = self.links.get(tuple(resolved))
            if link is None:
                continue
            hops += 1
            if hops > MAX_LINK_HOPS:
                return None
            resolved.pop()
            if link.kind == HARDLINK:
                resolved = []
            pending = self._steps(link, member) + pending
        return tuple(resolved)

    def _steps(self, link: _Member, member: _Member) -> list[tuple[str, _Member]]:
        if link.link.startswith("/") or "\0" in link.link:
            raise self._outside(member, link)
        return [(p, link) for p in link.link.split("/") if p not in ("", ".")]

    def _outside(self, member: _Member, via: _Member) -> ArchiveError:
        if via is member:
            return ArchiveError(
                f"archive {self.archive}: {member.kind} {member.name!r} -> {member.link!r} points "
                f"outside {self.target}"
            )
        return ArchiveError(
            f"archive {self.archive}: member {member.name!r} would land outside {self.target} "
            f"through {via.kind} {via.name!r} -> {via.link!r}"
        )

    # --- writing: through folder descriptors, never through a path -------------------------

    def write(self, target: Path, max_bytes: int) -> None:
        root = os.open(target, os.O_RDONLY | os.O_DIRECTORY)
        budget = _Budget(self.archive, max_bytes)
        try:
            for parts, member in self.entries.items():
                if member.kind == FOLDER:
                    os.close(_open_folder(root, parts))
                    continue
                source = member.open() if member.open else None
                if source is None:
                    raise ArchiveError(f"archive {self.archive}: member {member.name!r} has no data")
                with source:
                    _write_file(root, parts, source, budget)
            for parts, leads_to in self.copies:
                with os.fdopen(_open_existing_file(root, leads_to), "rb") as source:
                    _write_file(root, parts, source, budget)
        finally:
            os.close(root)


class _Budget:
    """The bytes still allowed: a zip's sizes are what its directory claims, so the data
    written is counted too."""

    def __init__(self, archive: Path, max_bytes: int):
        self.archive, self.max_bytes, self.left = archive, max_bytes, max_bytes

    def spend(self, count: int) -> None:
        self.left -= count
        if self.left < 0:
            raise ArchiveError(
                f"archive {self.archive} unpacks to more than the limit of {self.max_bytes} bytes"
            )


_FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW


def _open_folder(root: int, parts: Parts) -> int:
    """A descriptor of folder ``parts`` under ``root``, each level created if missing and
    opened with O_NOFOLLOW: a symlink anywhere on the way fails (ELOOP) instead of being
    followed."""
    fd = os.dup(root)
    try:
        for part in parts:
            try:
                os.mkdir(part, 0o755, dir_fd=fd)
            except FileExistsError:
                pass
            child = os.open(part, _FOLDER_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def _write_file(root: int, parts: Parts, source: IO[bytes], budget: _Budget) -> None:
    folder = _open_folder(root, parts[:-1])
    try:
        fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644, dir_fd=folder)
    finally:
        os.close(folder)
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(_COPY_CHUNK):
            budget.spend(len(chunk))
            out.write(chunk)


def _open_existing_file(root: int, parts: Parts) -> int:
    folder = os.dup(root)
    try:
        for part in parts[:-1]:
            child = os.open(part, _FOLDER_FLAGS, dir_fd=folder)
            os.close(folder)
            folder = child
        return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW, dir_fd=folder)
    finally:
        os.close(folder)
