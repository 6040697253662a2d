"""Render a local HTML page in headless Chromium, offline, and read the screenshot's pixels.

Chromium runs with every host name but 127.0.0.1 unresolvable, so a page that needed anything from the
network (a CDN script, a web font, a remote image) renders without it and the pixel checks
of the callers fail: passing proves the page is self-contained.
"""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest

BROWSERS = ("chromium", "chromium-browser")
WIDTH = 1200


def chromium() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("needs Debian's chromium package (apt-get install chromium; .ci/run installs it)")


def screenshot(page: Path | str, out: Path, height: int = 3000) -> Path:
    """A full-width PNG of ``page`` (a file, or a URL on 127.0.0.1) after its scripts ran
    (virtual time lets plots finish)."""
    command = [
        chromium(),
        "--headless",
        "--disable-gpu",
        "--no-sandbox",
        "--hide-scrollbars",
        f"--user-data-dir={out.parent / 'chromium-profile'}",
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--virtual-time-budget=15000",
        f"--window-size={WIDTH},{height}",
        f"--screenshot={out}",
        page if isinstance(page, str) else page.resolve().as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180)
    assert out.exists(), f"chromium wrote no screenshot:\n{result.stderr[-3000:]}"
    return out


def colour_counts(png: Path) -> tuple[Counter, int]:
    """How many pixels have each colour, and the pixel count."""
    from PIL import Image

    with Image.open(png) as image:
        rgb = image.convert("RGB")
        colours = rgb.getcolors(maxcolors=rgb.width * rgb.height)
    return Counter({colour: n for n, colour in colours}), rgb.width * rgb.height


def near(counts: Counter, colour: tuple[int, int, int], tolerance: int = 12) -> int:
    """How many pixels lie within ``tolerance`` of ``colour`` (per channel)."""
    return sum(
        n for c, n in counts.items() if all(abs(a - b) <= tolerance for a, b in zip(c, colour, strict=True))
    )


def non_white_share(counts: Counter, total: int) -> float:
    white = sum(n for c, n in counts.items() if min(c) >= 245)
    return 1 - white / total
