"""Open a full report in headless Chromium: it renders, logs no console errors and makes no network request.

Needs Debian's ``chromium`` (``scripts/test`` installs it when run as root, as in CI). The
screenshot goes to ``$ROBAUDIT_SCREENSHOT`` when set (e.g. ``ROBAUDIT_SCREENSHOT=/tmp/report.png
bash scripts/test -k browser``), else into pytest's temporary directory; open it with any
image viewer.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("Chromium is not installed: run 'apt-get install chromium' (scripts/test does it when run as root), "
                    "or deselect with -m 'not browser'")
    return path


def test_report_in_a_real_browser(demo_run: Path, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    shot = Path(os.environ.get("ROBAUDIT_SCREENSHOT") or tmp_path / "report.png")
    url = (demo_run / "report.html").resolve().as_uri()
    requests: list[str] = []
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.goto(url, wait_until="load")
        headings = page.locator("h2").all_inner_texts()
        # the two answers: on the first screen, and above section 3
        first_screen = {sel: page.locator(sel).bounding_box() for sel in ("#verdict", "#top-indicators")}
        section3 = page.locator("h2", has_text="3. ").first.bounding_box()
        page.screenshot(path=str(shot.with_name(shot.stem + "-first-screen.png")))
        svg_count = page.locator("svg").count()
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert problems == []
    assert [r for r in requests if not r.startswith("data:")] == [url]
    assert headings[0].startswith("1. Verdict summary") and headings[-1].endswith("Methods")
    for sel, box in first_screen.items():
        assert box is not None and box["height"] > 0, sel
        assert box["y"] + box["height"] <= 1000, (sel, box)
        assert box["y"] + box["height"] <= section3["y"], (sel, box, section3)
    assert svg_count >= 2
    assert shot.stat().st_size > 50_000
