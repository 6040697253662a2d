"""Crafted archives, tar and zip, that try to write outside the folder they are extracted into.

Shared by the runtime tests (channels, model.tar.gz, multi-model loads, dogImages preparation)
and the client tests (upload-data, a local deploy's model): every extraction entry point meets
the same corpus. Each case either must be refused, with the member at fault named, or must
extract with its links turned into copies or dropped. Whatever would escape is named
``ESCAPED``: after any case, no such file exists anywhere under the test's folder.

The cases that name 2025's tarfile CVEs follow their published shapes (CVE-2025-4517,
CVE-2025-4330, CVE-2025-4138: links that lead out only once an earlier link exists on disk,
paths longer than PATH_MAX where ``os.path.realpath`` stops resolving).
"""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ESCAPED = "ESCAPED"
# Deep enough that every climb in the corpus (at most 3 levels) stays inside the test's folder.
NESTING = ("a", "b", "c")


@dataclass(frozen=True)
class Case:
    name: str
    build: Callable[[Path], Path]
    refused_member: str | None = None  # the member the error must name
    extracted: dict[str, bytes] = field(default_factory=dict)  # else: these files, these bytes
    absent: tuple[str, ...] = ()  # and none of these
    # Its files pass PATH_MAX: only a reader that goes folder by folder can check them.
    past_path_max: bool = False

    @property
    def is_zip(self) -> bool:
        return self.build.__qualname__.startswith("_zip")


def _tar(entries: list[tarfile.TarInfo | tuple[str, bytes]], name: str = "crafted.tar.gz"):
    def build(folder: Path) -> Path:
        path = folder / name
        with tarfile.open(path, "w:gz", format=tarfile.PAX_FORMAT) as tar:
            for entry in entries:
                if isinstance(entry, tarfile.TarInfo):
                    tar.addfile(entry)
                else:
                    info = tarfile.TarInfo(entry[0])
                    info.size = len(entry[1])
                    tar.addfile(info, io.BytesIO(entry[1]))
        return path

    return build


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def _folder(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.mode = tarfile.DIRTYPE, 0o755
    return info


def _special(name: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info


def _zip(files: dict[str, bytes], links: dict[str, str] | None = None, name: str = "crafted.zip"):
    def build(folder: Path) -> Path:
        path = folder / name
        with zipfile.ZipFile(path, "w") as zipped:
            for member, data in files.items():
                zipped.writestr(member, data)
            for member, target in (links or {}).items():
                info = zipfile.ZipInfo(member)
                info.create_system = 3  # Unix: the mode below is read
                info.external_attr = (stat.S_IFLNK | 0o777) << 16
                zipped.writestr(info, target)
        return path

    return build


# 16 folders of 250 characters: a path of about 4,000 characters, and with the file past
# PATH_MAX (4096) on Linux.
LONG = [("d" * 249) + str(i % 10) for i in range(16)]
LONG_PATH = "/".join(LONG)
PAYLOAD = b"payload"

CASES = [
    Case(
        "symlink chain a->., a/b->.. (the reported escape)",
        _tar([_link("a", "."), _link("a/b", ".."), (f"b/{ESCAPED}", PAYLOAD)]),
        refused_member="a/b",
    ),
    Case(
        "a chain whose third link climbs out",
        _tar(
            [
                _folder("x/y"),
                _link("x/y/l1", ".."),
                _link("x/y/l1/l2", ".."),
                _link("x/y/l1/l2/l3", ".."),
                (f"x/y/l1/l2/l3/{ESCAPED}", PAYLOAD),
            ]
        ),
        refused_member="x/y/l1/l2/l3",
    ),
    Case(
        "a folder replaced by a link that leads out",
        _tar(
            [_folder("cats"), ("cats/1.png", PAYLOAD), _link("cats", "../.."), (f"cats/{ESCAPED}", PAYLOAD)]
        ),
        refused_member="cats",
    ),
    Case(
        "a link to a link that leads out",
        _tar([_link("up", ".."), _link("hop", "up"), (f"hop/{ESCAPED}", PAYLOAD)]),
        refused_member="up",
    ),
    Case(
        "a hard link through a symlink (CVE-2025-4330's shape)",
        _tar([_link("s", ".."), _link(f"h{ESCAPED}", "s/secret", tarfile.LNKTYPE)]),
        refused_member="s",
    ),
    Case(
        "a symlink inside, then a hard link through it that climbs out",
        _tar([_folder("x"), _link("x/self", "."), _link(f"x/{ESCAPED}", "x/self/../../..", tarfile.LNKTYPE)]),
        refused_member=f"x/{ESCAPED}",
    ),
    Case(
        "a symlink past PATH_MAX that climbs out (CVE-2025-4517's shape)",
        _tar([_folder(LONG_PATH), _link(f"{LONG_PATH}/{ESCAPED}", "../" * 17 + ESCAPED)]),
        refused_member=f"{LONG_PATH}/{ESCAPED}",
    ),
    Case(
        "a symlink to an absolute path",
        _tar([_link("etc", "/etc"), (f"etc/{ESCAPED}", PAYLOAD)]),
        refused_member="etc",
    ),
    Case(
        "a device file", _tar([("ok.png", PAYLOAD), _special("dev", tarfile.CHRTYPE)]), refused_member="dev"
    ),
    Case(
        "a zip member with ..",
        _zip({"ok.png": PAYLOAD, f"../{ESCAPED}": PAYLOAD}),
        refused_member=f"../{ESCAPED}",
    ),
    Case(
        "a zip symlink that leads out",
        _zip({"ok.png": PAYLOAD, f"out/{ESCAPED}": PAYLOAD}, {"out": "../.."}),
        refused_member="out",
    ),
    Case(
        "links inside the folder become copies",
        _tar(
            [
                ("cat/1.png", PAYLOAD),
                _link("cat/2.png", "cat/1.png", tarfile.LNKTYPE),
                _link("dog/3.png", "../cat/2.png"),
            ]
        ),
        extracted={"cat/1.png": PAYLOAD, "cat/2.png": PAYLOAD, "dog/3.png": PAYLOAD},
    ),
    Case(
        "a link to a folder, a loop and a dangling link are dropped",
        _tar(
            [
                ("cat/1.png", PAYLOAD),
                _link("alias", "cat"),
                _link("loop1", "loop2"),
                _link("loop2", "loop1"),
                _link("gone", "missing.png"),
            ]
        ),
        extracted={"cat/1.png": PAYLOAD},
        absent=("alias", "loop1", "loop2", "gone"),
    ),
    Case(
        "a zip symlink to a file inside becomes a copy",
        _zip({"cat/1.png": PAYLOAD}, {"cat/2.png": "1.png"}),
        extracted={"cat/1.png": PAYLOAD, "cat/2.png": PAYLOAD},
    ),
    Case(
        "a path longer than PATH_MAX extracts where it says",
        _tar([(f"{LONG_PATH}/x.png", PAYLOAD)]),
        extracted={f"{LONG_PATH}/x.png": PAYLOAD},
        past_path_max=True,
    ),
]
REFUSED = [case for case in CASES if case.refused_member]
IDS = [case.name for case in CASES]


def jail(root: Path) -> Path:
    """A folder NESTING levels below ``root``: what a case's climbs reach is still in ``root``."""
    folder = root.joinpath(*NESTING)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def escaped_files(root: Path) -> list[str]:
    """Every file named like ``ESCAPED`` under ``root``, walked by folder descriptors (paths in
    the corpus pass PATH_MAX)."""
    return [
        f"{folder}/{name}"
        for folder, _, files, _ in os.fwalk(root)
        for name in files
        if ESCAPED in name and not name.startswith("crafted")
    ]


def read_long(root: Path, relative: str) -> bytes:
    """Read ``root/relative`` one folder at a time (the whole path may pass PATH_MAX)."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        *folders, name = relative.split("/")
        for folder in folders:
            child = os.open(folder, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        with os.fdopen(os.open(name, os.O_RDONLY, dir_fd=fd), "rb") as source:
            return source.read()
    finally:
        os.close(fd)


def exists_long(root: Path, relative: str) -> bool:
    try:
        read_long(root, relative)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return False
    return True
