#!/usr/bin/env python3
"""Classify a few images per class of an ImageFolder through a running endpoint; print accuracy.

Usage: predict_folder.py FOLDER [--per-class N] [--url http://127.0.0.1:8080] [--min-accuracy A]
FOLDER holds <class>/<image> files (e.g. the demo data's test split). Standard library only, so
it runs with any python3. Exits 1 on a failed request or when accuracy is below --min-accuracy.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

CONTENT_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg"}


def pick_images(folder: Path, per_class: int) -> list[tuple[str, Path]]:
    """The first ``per_class`` images of every class folder, in name order (deterministic)."""
    picked = []
    for class_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        files = sorted(p for p in class_dir.iterdir() if p.suffix.lower() in CONTENT_TYPES)
        picked.extend((class_dir.name, path) for path in files[:per_class])
    return picked


def classify(url: str, path: Path, timeout: float) -> dict:
    request = urllib.request.Request(
        f"{url.rstrip('/')}/invocations",
        data=path.read_bytes(),
        headers={"Content-Type": CONTENT_TYPES[path.suffix.lower()], "Accept": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        predictions = json.load(response)["predictions"]
    return predictions[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--per-class", type=int, default=2)
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--min-accuracy", type=float, default=0.0)
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)

    images = pick_images(args.folder, args.per_class)
    if not images:
        print(f"no images under {args.folder}/<class>/", file=sys.stderr)
        return 1
    correct = 0
    print(f"{'image':<28} {'true':>5} {'predicted':>9} {'probability':>11}")
    for label, path in images:
        try:
            top = classify(args.url, path, args.timeout)
        except (urllib.error.URLError, OSError, KeyError, ValueError) as error:
            print(f"request for {path} failed: {error}", file=sys.stderr)
            return 1
        correct += top["label"] == label
        mark = "" if top["label"] == label else "  <- wrong"
        print(f"{path.name:<28} {label:>5} {top['label']:>9} {top['probability']:>11.3f}{mark}")
    accuracy = correct / len(images)
    print(f"accuracy: {correct}/{len(images)} = {accuracy:.3f}")
    return 0 if accuracy >= args.min_accuracy else 1


if __name__ == "__main__":
    sys.exit(main())
