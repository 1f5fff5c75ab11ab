"""The site checker's own processes and command line (tests/site_check.py).

Kept apart from tests/test_site_checker.py: Playwright's sync API allows one driver per thread,
and that module holds one browser open for all its cases.
"""

import pytest

import site_check
from test_site_checker import CLEAN_BODY, make_site, needs_chromium

pytestmark = pytest.mark.slow  # a real browser in every test


@needs_chromium
def test_the_browser_stops_when_the_check_fails(tmp_path):
    pytest.importorskip("playwright", reason="playwright is not installed")
    with pytest.raises(ValueError, match="root must be a built site"):
        with site_check.SiteChecker() as checker:
            browser = checker._browser
            checker.check(tmp_path / "no-site")
    assert not browser.is_connected()


@needs_chromium
def test_command_line_exit_status_and_screenshot(tmp_path, capsys):
    pytest.importorskip("playwright", reason="playwright is not installed")
    site = make_site(tmp_path / "site", body=CLEAN_BODY + "<p>{glue:text}`x`</p>")
    shots = tmp_path / "shots"
    assert site_check.main([str(site), "--screenshots", str(shots)]) == 1
    out = capsys.readouterr().out
    assert "[glue] page.html" in out and "1 problems" in out
    assert out.rstrip().endswith("pages: 4 passed, 1 failed")  # the zh_CN page passes
    assert (shots / "page.png").is_file()
