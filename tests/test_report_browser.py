"""report.html in a real headless browser (Debian's chromium; `make html-check` installs it)."""

import shutil
import subprocess

import pytest

from detector.report.html import render_html
from detector.report.summary import build_summary
from tests.report_fixtures import run_data

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium not installed (make html-check installs it)"
)

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND",
]


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, *args], capture_output=True, text=True, timeout=90)


def test_report_renders_in_chromium(tmp_path):
    page = tmp_path / "report.html"
    page.write_text(render_html(build_summary(run_data())), encoding="utf-8")
    dom = _chromium("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    for marker in ('id="night"', 'id="campaigns"', 'id="replay"', "<svg", "blanket shutdown"):
        assert marker in dom.stdout
    shot = tmp_path / "shot.png"
    res = _chromium("--window-size=1100,2400", f"--screenshot={shot}", page.as_uri())
    assert res.returncode == 0, res.stderr[-2000:]
    assert shot.stat().st_size > 20_000  # a page with charts, not a blank one
