"""Headless Chromium for the explorer tests: Debian's /usr/bin/chromium driven by Playwright
(never `playwright install`: no browser is downloaded), a tab that records script errors and
CSP violations, and screenshot checks.

Importing this module skips the importing test module, saying why, when Chromium, Playwright
or Pillow is missing, except under CI=true, where the explorer test must run and it fails."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CXL_CHROMIUM", "/usr/bin/chromium")
VIEWPORT = {"width": 1280, "height": 900}
# Playwright adds --headless and a fresh temporary --user-data-dir
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
               "--disable-component-update", "--disable-sync"]


def _missing(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"the explorer test must run in CI: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


try:
    from playwright import sync_api
    from PIL import Image
except ImportError as exc:
    _missing(f"{exc.name} is not installed (pip install -e '.[test]')")
if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
    _missing(f"no Chromium at {CHROMIUM}: apt-get install -y chromium, or scripts/ensure_chromium (or set CXL_CHROMIUM)")


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS, timeout=60_000)
        try:
            yield b
        finally:
            b.close()


class Page:
    """One browser tab on the explorer that records every console error and page error."""

    def __init__(self, browser, url: str, shots: Path):
        self.page = browser.new_page(viewport=VIEWPORT, device_scale_factor=1)
        self.page.set_default_timeout(15_000)
        self.errors: list[str] = []
        self.page.on("console", self._console)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.url, self.shots = url, shots
        self.page.goto(url + "/explorer/")
        self.wait_ready()

    def _console(self, msg) -> None:
        # an API 404/400 is an answer the page shows (unknown id, bad filter); anything else counts
        api_answer = msg.text.startswith("Failed to load resource") and "/v1/" in msg.location.get("url", "")
        if msg.type == "error" and not api_answer:
            self.errors.append(f"{msg.text} ({msg.location.get('url')})")

    def wait_ready(self):
        self.page.wait_for_function(
            "() => { const m = document.getElementById('view');"
            " return m.dataset.state !== 'loading' && m.dataset.hash === location.hash; }")

    def open(self, route: str) -> "Page":
        self.page.evaluate("h => { location.hash = h; }", route)
        self.wait_ready()
        assert self.state() == "ready", (route, self.text("#view"))
        return self

    def state(self) -> str:
        return self.page.get_attribute("#view", "data-state")

    def text(self, selector: str) -> str:
        return self.page.inner_text(selector)

    def field(self, table: str, key: str) -> str:
        return self.text(f"#{table} tr[data-field='{key}'] > td")

    def rows(self, selector: str, attr: str) -> list[str]:
        return self.page.eval_on_selector_all(f"{selector} tbody tr", f"rs => rs.map(r => r.getAttribute('{attr}'))")

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path))
        check_screenshot(path)
        return path

    def close(self):
        assert not self.errors, self.errors  # no script error, no CSP violation on any view
        self.page.close()


def check_screenshot(path: Path) -> None:
    """A PNG of the viewport's size with real content: many colours, no colour covering it all."""
    with Image.open(path) as img:
        img.load()
        assert img.format == "PNG" and img.size == (VIEWPORT["width"], VIEWPORT["height"]), (img.format, img.size)
        colours = img.convert("RGB").getcolors(maxcolors=1 << 16)
    if colours is not None:  # None: more than 65536 colours, certainly not blank
        assert len(colours) > 40, f"{path.name}: only {len(colours)} colours"
        top = max(count for count, _ in colours)
        assert top < 0.97 * img.size[0] * img.size[1], f"{path.name}: one colour covers almost everything"


