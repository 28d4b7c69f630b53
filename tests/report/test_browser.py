"""The quickstart's report.html in headless Chromium: offline, no error, every chart drawn.

The page checks itself (see onybench/report/assets/report.js) and writes the
result into `#render-status`: how many `.chart` elements drew a canvas with a
non-zero size, any error or console error, any fetch its Content-Security-Policy
blocked and any resource it loaded. Chromium dumps the DOM once the page's timers
have run; a screenshot is kept beside the run as a test artifact.

Needs Debian's `chromium` (`.ci/run` installs it). Without a browser the test
is skipped, except under CI=true, where a missing browser is a failure.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest

from onybench.report.charts import chart_sections
from onybench.report.outputs import read_timeline

MAX_QUICKSTART_HTML_BYTES = 1_500_000
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
STATUS = re.compile(r'<pre id="render-status" data-status="(\w+)"[^>]*>(.*?)</pre>', re.S)


def find_browser() -> str:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("no Chromium on a CI machine: .ci/run must install Debian's chromium")
    pytest.skip("no Chromium found (apt-get install chromium); the browser test needs one")


def chromium(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--no-first-run",
            "--no-default-browser-check",
            # Belt and braces: a request that escaped the page's own policy could not
            # resolve any host either.
            "--host-resolver-rules=MAP * ~NOTFOUND",
            f"--user-data-dir={profile}",
            # Let the page's timers (its self-check) run before the DOM is dumped.
            "--virtual-time-budget=10000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_the_quickstart_report_html_is_small_and_self_contained(quickstart_run: Path) -> None:
    page = (quickstart_run / "report.html").read_text()
    size = len(page.encode())
    assert size <= MAX_QUICKSTART_HTML_BYTES, size
    # Nothing to fetch: no external script, stylesheet, image or font.
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)=", page)
    assert "url(" not in page.replace("url(data:", "")
    assert "Content-Security-Policy" in page


@pytest.mark.slow
def test_the_quickstart_report_draws_every_chart_offline_without_errors(
    quickstart_run: Path, tmp_path: Path
) -> None:
    browser = find_browser()
    page = quickstart_run / "report.html"
    report = orjson.loads((quickstart_run / "report.json").read_bytes())
    timeline = read_timeline(quickstart_run, report)
    expected_charts = sum(len(s.charts) for s in chart_sections(report, timeline))
    assert expected_charts >= 10  # distributions, time series

    dumped = chromium(browser, tmp_path / "profile", "--dump-dom", page.as_uri())

    assert dumped.returncode == 0, dumped.stderr[-2000:]
    match = STATUS.search(dumped.stdout)
    assert match, "the page's self-check did not run:\n" + dumped.stdout[-2000:]
    status, detail = match.group(1), json.loads(html.unescape(match.group(2)))
    assert detail["errors"] == []
    assert detail["violations"] == []  # nothing was blocked: nothing tried to load
    assert detail["resources"] == []  # and nothing was loaded
    assert detail["unsized"] == []
    assert detail["charts"] == detail["sized"] == expected_charts
    assert status == "ok"

    shot = tmp_path / "quickstart-report.png"
    taken = chromium(
        browser,
        tmp_path / "profile",
        "--hide-scrollbars",
        "--window-size=1280,4200",
        f"--screenshot={shot}",
        page.as_uri(),
    )
    assert taken.returncode == 0, taken.stderr[-2000:]
    assert shot.stat().st_size > 50_000  # a page of charts, not a blank one
