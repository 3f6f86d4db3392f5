"""Headless Chromium for the UI tests: Debian's `chromium` driven by Playwright from PyPI.

Playwright's own browser download needs hosts this project cannot reach, so the browser is the
Debian package (`make install` installs it) and Playwright only drives it. Every step of a test
leaves a screenshot under ``var/test-artifacts/browser/`` (not committed; ``docs/`` keeps a few).
"""
from __future__ import annotations

import contextlib
import re
import tempfile
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
# No GPU, no network beyond loopback, no first-run or update traffic, no sandbox (tests run as root).
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1400, "height": 900}


@contextlib.contextmanager
def chromium_context():
    """A browser context on a fresh profile folder (``--user-data-dir``), removed afterwards."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="skillflow-chromium-") as profile, sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            profile, executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS, viewport=VIEWPORT)
        try:
            yield context
        finally:
            context.close()


class Steps:
    """Numbered screenshots of a test's steps; on a failure the page's HTML is kept beside them."""

    def __init__(self, folder: Path):
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*"):
            old.unlink()
        self.count = 0

    def shot(self, page, name: str, full_page: bool = False) -> Path:
        self.count += 1
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        path = self.folder / f"{self.count:02d}-{slug}.png"
        page.screenshot(path=str(path), full_page=full_page)
        return path

    def keep_failure(self, page, name: str) -> None:
        with contextlib.suppress(Exception):
            self.shot(page, f"failed-{name}", full_page=True)
            (self.folder / f"failed-{name}.html").write_text(page.content())
