"""Generated ImageFolder data for the benchmarks: one base colour per class plus noise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = ((220, 40, 40), (40, 200, 60), (40, 60, 220), (230, 210, 40))


def write_colour_classes(
    root: Path, counts: dict[str, int], size: int, seed: int, signal: bool = True
) -> None:
    """PNGs under ``root/<class>/``; with ``signal=False`` the class cannot be seen (pure noise)."""
    rng = np.random.default_rng(seed)
    for index, (name, count) in enumerate(counts.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        base = np.array(COLOURS[index % len(COLOURS)] if signal else (128, 128, 128), float)
        for i in range(count):
            pixels = base + rng.normal(0, 40, (size, size, 3))
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i}.png")
