"""Browser tests: Playwright for Python driving Debian's ``chromium`` (``.ci/run`` installs it, with
``fonts-noto-cjk`` so that Chinese renders; Playwright downloads no browser of its own) against a real
``eldercare serve`` on a database of its own, with the real MQTT ingest.

Screenshots go to ``test-artifacts/`` (gitignored). Each page a journey passes through is checked
with axe-core (the vendored copy): no serious or critical violation.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright

from core.settings import PROJECT_ROOT

CHROMIUM = os.environ.get("ELDERCARE_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = PROJECT_ROOT / "test-artifacts"
AXE = PROJECT_ROOT / "web" / "static" / "vendor" / "axe-core" / "axe.min.js"


def _chromium_or_skip() -> str:
    """The browser; without it a developer's run skips these tests, CI's fails (it installs it)."""
    if Path(CHROMIUM).exists() or shutil.which(CHROMIUM):
        return CHROMIUM
    if os.environ.get("CI"):
        pytest.fail(f"{CHROMIUM} is missing: .ci/run installs Debian's chromium")
    pytest.skip(f"{CHROMIUM} is missing (Debian package chromium; .ci/run installs it)")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def browser() -> AsyncIterator[Browser]:
    executable = _chromium_or_skip()
    async with async_playwright() as p:
        b = await p.chromium.launch(
            executable_path=executable,
            headless=True,
            args=["--autoplay-policy=no-user-gesture-required", "--no-sandbox"],
        )
        yield b
        await b.close()


async def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    await page.screenshot(path=str(path), full_page=True)
    return path


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations of the page as it stands (WCAG 2 A/AA rules)."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.add_script_tag(path=str(AXE))
    result: dict[str, Any] = await page.evaluate(
        """() => axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a',
           'wcag21aa', 'best-practice']}, resultTypes: ['violations']})"""
    )
    return [
        {
            "id": v["id"],
            "impact": v["impact"],
            "help": v["help"],
            "nodes": [n["target"] for n in v["nodes"]][:5],
        }
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
