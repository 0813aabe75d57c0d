"""A real browser (Debian's chromium, driven by Playwright) against the app on a real port, with a real
Dramatiq worker. Screenshots of the main pages go to var/screenshots/."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests

CHROMIUM = Path("/usr/bin/chromium")
SCREENSHOTS = Path(__file__).parents[2] / "var" / "screenshots"
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")  # closed after the module: Playwright's loop must not outlive it
def browser():
    if not CHROMIUM.exists():
        pytest.skip("Debian's chromium is not installed (make install-test installs it)")
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server, viewport={"width": 1360, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    context.set_default_timeout(20_000)
    tab = context.new_page()
    errors = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("console", lambda msg: errors.append(msg.text) if "Content Security Policy" in msg.text else None)
    yield tab
    context.close()
    assert not errors, f"JavaScript errors or Content-Security-Policy violations: {errors}"


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")  # the sticky header would be drawn mid-page otherwise
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def sign_up(page, username: str) -> None:
    page.goto("/register")
    page.fill("#username", username)
    page.fill("#password", PASSWORD)
    page.fill("#confirm", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url("**/")


def showcase(live_server: str, key: str, version_id: int, seed: int, parameters: str | None = None) -> None:
    from tests.factories import png_bytes
    body = png_bytes(parameters, width=320, height=400, seed=seed)
    response = requests.post(f"{live_server}/api/v1/images", headers={"Authorization": f"Bearer {key}"},
                             files={"file": ("s.png", body, "image/png")},
                             data={"modelVersionId": str(version_id)})
    assert response.status_code == 202, response.text
