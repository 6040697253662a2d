"""The training job's report.html in a real browser: headless Chromium, offline.

The page is what ``classifier.debugging.report.write_job_report`` writes into
output/data of every training job. The screenshot must show the training curves drawn
(matplotlib's line colours in quantity), not a blank page or a broken image.
"""

from __future__ import annotations

import pytest

from classifier.debugging.report import write_job_report
from tests.sdk.browser import colour_counts, near, non_white_share, screenshot

pytestmark = pytest.mark.slow

TRAIN_BLUE = (31, 119, 180)  # matplotlib's first and second colours: train_* and valid_*
VALID_ORANGE = (255, 127, 14)


def history(epochs: int = 6) -> list[dict]:
    return [
        {
            "epoch": e,
            "train_loss": 1 / e,
            "train_accuracy": 0.5 + 0.05 * e,
            "valid_loss": 1.2 / e,
            "valid_accuracy": 0.45 + 0.06 * e,
            "train_seconds": 3.0,
            "train_images_per_second": 400.0,
        }
        for e in range(1, epochs + 1)
    ]


def test_the_training_report_draws_its_curves_in_chromium(tmp_path):
    page = write_job_report(tmp_path / "output" / "data", history(), None, None, None)
    png = screenshot(page, tmp_path / "report.png", height=1600)
    counts, total = colour_counts(png)
    assert non_white_share(counts, total) > 0.02, "the page rendered (almost) blank"
    assert near(counts, TRAIN_BLUE) > 300, "no train curve in the screenshot"
    assert near(counts, VALID_ORANGE) > 300, "no valid curve in the screenshot"
