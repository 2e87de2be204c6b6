"""The zoo leaderboard in headless Chromium: clicking a column sorts the rows, with no console error and no network."""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.browser

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def test_leaderboard_sorts_by_any_column_offline(swept: tuple[Path, Path, Any]) -> None:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("Chromium is not installed: run 'apt-get install chromium' (scripts/test does it when run as root)")
    _, zoo, _ = swept
    rows = json.loads((zoo / "zoo.json").read_text())["models"]
    robust = {r["name"]: next(c["value"] for c in r["robust_accuracy"]["linf"].values() if c["eps"] == 0.1) for r in rows}
    url = (zoo / "zoo.html").resolve().as_uri()
    requests: list[str] = []
    problems: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.on("request", lambda r: requests.append(r.url))
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.goto(url, wait_until="load")

        def order() -> list[str]:
            return page.locator("#zoo-table tbody tr td:first-child").all_inner_texts()

        assert order() == ["bs16", "bs32", "bs64"]
        header = page.locator("#zoo-table th", has_text="tag batch_size")
        header.click()
        assert order() == ["bs16", "bs32", "bs64"]
        header.click()
        assert order() == ["bs64", "bs32", "bs16"]
        robust_header = page.locator("#zoo-table th", has_text=re.compile(r"^robust linf ε=0\.1$"))
        robust_header.click()
        ascending = order()
        assert [robust[n] for n in ascending] == sorted(robust.values())
        robust_header.click()
        assert [robust[n] for n in order()] == sorted(robust.values(), reverse=True)
        links = page.locator("#zoo-table tbody a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
        browser.close()
    assert problems == []
    assert [r for r in requests if not r.startswith("data:")] == [url]
    assert sorted(links) == [f"models/{n}/report.html" for n in ("bs16", "bs32", "bs64")]
    assert all((zoo / link).is_file() for link in links)
