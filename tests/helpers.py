"""Helpers every test suite (and the serving benchmark) imports: ports and image data."""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path

Colour = tuple[int, int, int]
GREY: Colour = (128, 128, 128)
NOISE_STD = 40


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _primary(index: int) -> Colour:
    """Red, green, blue, red...: the colour of the index-th class when none is given."""
    return tuple(200 if channel == index % 3 else 0 for channel in range(3))


def write_image_folder(
    root: Path,
    counts: Mapping[str, int],
    *,
    seed: int = 0,
    size: tuple[int, int] = (12, 12),
    colours: Mapping[str, Colour] | None = None,
    signal: bool = True,
) -> Path:
    """An ImageFolder of PNGs ``root/<class>/<i>.png``: a colour per class plus noise.

    The classes are separable, so a few epochs learn them. Each class's colour is
    ``colours[name]``, else a primary colour by position; with ``signal=False`` every class
    is the same grey, so the class cannot be seen in the image (pure noise).
    """
    # Imported here: free_port's callers (the container tests, the benchmark) need neither.
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    for index, (name, count) in enumerate(counts.items()):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        colour = (colours or {}).get(name) or _primary(index)
        base = np.array(colour if signal else GREY, dtype=np.float64)
        for i in range(count):
            pixels = base + rng.normal(0, NOISE_STD, size=(*size, 3))
            Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return root
