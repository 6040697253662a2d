"""The local tuning job's report.html in a real browser: headless Chromium, offline.

Plotly draws the plots in the browser, so the HTML file alone proves nothing: the
screenshot must show plot areas (plotly's background colour) with data markers in them.
The same page with its inline plotly.js removed is the control: then nothing is drawn.
"""

from __future__ import annotations

import re

import pytest

from tests.sdk.browser import colour_counts, near, non_white_share, screenshot
from tests.sdk.test_local_tuning import StubRunner, run, settings_for

pytestmark = pytest.mark.slow

PLOT_AREA = (229, 236, 246)  # plotly's default plot background, #E5ECF6
MARKER = (99, 110, 250)  # plotly's first trace colour, #636EFA
PLOTS = 4


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("tuning-report")
    result = run(tmp_path, settings_for(tmp_path, max_jobs=6, strategy="Random"), StubRunner())
    return result.report


def test_the_report_embeds_plotly_and_loads_nothing_from_the_network(report):
    page = report.read_text()
    assert page.count("<script") >= PLOTS and "Plotly.newPlot" in page
    tags = re.findall(r"<(?:script|link|img)[^>]*(?:src|href)=\"https?:", page)
    assert tags == []


def test_the_tuning_report_draws_its_plots_in_chromium(report, tmp_path):
    counts, total = colour_counts(screenshot(report, tmp_path / "report.png"))
    assert non_white_share(counts, total) > 0.1, "the page rendered (almost) blank"
    # Four plot areas of about 1000 x 350 pixels each, less grid lines and data.
    assert near(counts, PLOT_AREA, tolerance=4) > PLOTS * 150_000
    assert near(counts, MARKER) > 50, "plot areas without data markers"


def test_without_its_script_the_same_page_draws_no_plot(report, tmp_path):
    stripped = tmp_path / "no-plotly.html"
    stripped.write_text(re.sub(r"<script.*?</script>", "", report.read_text(), flags=re.S))
    counts, _ = colour_counts(screenshot(stripped, tmp_path / "stripped.png"))
    assert near(counts, PLOT_AREA, tolerance=4) < 1000
