"""Write scikit-learn's UCI handwritten digits as an ImageFolder with train/valid/test splits.

The demo and the tests train on this: real data, 1,797 images in 10 classes, no download.
Usage: ``python -m tools.demo_data OUT_DIR [--valid-fraction 0.15] [--test-fraction 0.15]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image

SPLITS = ("train", "valid", "test")


def stratified_split(labels: np.ndarray, valid_fraction: float, test_fraction: float, seed: int):
    """Indices per split; every class is split in the same proportions, deterministically."""
    rng = np.random.default_rng(seed)
    splits = {name: [] for name in SPLITS}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(len(members) * test_fraction))
        n_valid = int(round(len(members) * valid_fraction))
        splits["test"].extend(members[:n_test])
        splits["valid"].extend(members[n_test : n_test + n_valid])
        splits["train"].extend(members[n_test + n_valid :])
    return {name: sorted(int(i) for i in idx) for name, idx in splits.items()}


def write_digits(
    out_dir: Path, valid_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0
) -> dict[str, int]:
    """Write PNGs to ``out_dir/<split>/<digit>/``; returns the image count per split."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    # Pixel values are 0..16; scale to 0..255 and keep the 8x8 resolution (the model resizes).
    images = (digits.images * (255.0 / 16.0)).round().astype(np.uint8)
    counts = {}
    for split, indices in stratified_split(digits.target, valid_fraction, test_fraction, seed).items():
        for index in indices:
            class_dir = out_dir / split / str(digits.target[index])
            class_dir.mkdir(parents=True, exist_ok=True)
            Image.fromarray(images[index]).save(class_dir / f"digit_{index:04d}.png")
        counts[split] = len(indices)
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--valid-fraction", type=float, default=0.15)
    parser.add_argument("--test-fraction", type=float, default=0.15)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.out_dir.exists() and any(args.out_dir.iterdir()):
        print(f"{args.out_dir} is not empty; remove it first to regenerate", file=sys.stderr)
        return 2
    counts = write_digits(args.out_dir, args.valid_fraction, args.test_fraction, args.seed)
    print(" ".join(f"{split}={count}" for split, count in counts.items()), f"-> {args.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
