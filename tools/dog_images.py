"""Prepare the 133-class dog breed data set (dogImages.zip) as ready training channels.

Checks the layout (train/valid/test, the same class folders in each), prints the counts,
and writes OUT/train, OUT/valid, OUT/test. ``--s3`` then uploads them with the client's
resumable uploader. Standard library only, so it runs in either environment.

Usage: python -m tools.dog_images (ZIP | --url URL) OUT [--s3 s3://bucket/prefix]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from classifier import archives

DOG_IMAGES_URL = "https://s3-us-west-1.amazonaws.com/udacity-aind/dog-project/dogImages.zip"
SPLITS = ("train", "valid", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


class LayoutError(ValueError):
    """The archive is not laid out as train/valid/test ImageFolders with the same classes."""


@dataclass(frozen=True)
class SplitSummary:
    name: str
    classes: int
    images: int


def download(url: str, target: Path) -> Path:
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as out:
            shutil.copyfileobj(response, out)
    except (urllib.error.URLError, OSError) as error:
        raise SystemExit(
            f"cannot download {url}: {error}. Download dogImages.zip elsewhere and pass its path."
        ) from error
    return target


def check_layout(root: Path) -> list[SplitSummary]:
    """Counts per split; raises LayoutError naming any missing split or class."""
    missing_splits = [s for s in SPLITS if not (root / s).is_dir()]
    if missing_splits:
        found = sorted(p.name for p in archives.visible_entries(root))
        raise LayoutError(f"{root} lacks split folders {missing_splits} (found {found})")
    classes = {s: sorted(p.name for p in archives.visible_entries(root / s) if p.is_dir()) for s in SPLITS}
    problems = []
    for split in ("valid", "test"):
        missing = sorted(set(classes["train"]) - set(classes[split]))
        extra = sorted(set(classes[split]) - set(classes["train"]))
        if missing:
            problems.append(f"classes missing from {split}: {', '.join(missing)}")
        if extra:
            problems.append(f"classes in {split} but not in train: {', '.join(extra)}")
    if problems:
        raise LayoutError("; ".join(problems))
    summaries = []
    for split in SPLITS:
        images = sum(
            1 for p in (root / split).rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        summaries.append(SplitSummary(split, len(classes[split]), images))
    return summaries


def prepare(archive: Path, out_dir: Path) -> list[SplitSummary]:
    """Extract, check, and move the three splits to ``out_dir``; returns the counts."""
    if out_dir.exists() and any(out_dir.iterdir()):
        raise SystemExit(f"{out_dir} is not empty; remove it or choose another output folder")
    with tempfile.TemporaryDirectory(dir=out_dir.parent if out_dir.parent.exists() else None) as tmp:
        root = archives.descend_single_folders(archives.extract(archive, Path(tmp)), stop_at=set(SPLITS))
        summaries = check_layout(root)
        out_dir.mkdir(parents=True, exist_ok=True)
        for split in SPLITS:
            shutil.move(str(root / split), out_dir / split)
    return summaries


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("archive", nargs="?", type=Path, help="path to dogImages.zip")
    source.add_argument("--url", nargs="?", const=DOG_IMAGES_URL, help=f"download (default {DOG_IMAGES_URL})")
    parser.add_argument("out_dir", type=Path, help="where to write train/, valid/, test/")
    parser.add_argument("--s3", help="also upload the channels under this s3://bucket/prefix")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            archive = args.archive or download(args.url, Path(tmp) / "dogImages.zip")
            summaries = prepare(archive, args.out_dir)
    except (LayoutError, archives.ArchiveError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for summary in summaries:
        target = args.out_dir / summary.name
        print(f"{summary.name}: {summary.classes} classes, {summary.images} images -> {target}")
    if args.s3:
        from classifier_client.config import aws_context
        from classifier_client.data import upload_data

        result = upload_data(aws_context(), args.out_dir, args.s3, progress=print)
        for channel, uri in result.channels.items():
            print(f"channel {channel}: {uri}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
