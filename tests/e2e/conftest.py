"""A real browser (Debian's Chromium, driven by Playwright for Python) against a real server."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="session")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is in the dev extra")
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.skip("Debian's chromium is not installed (.ci/run installs it: apt-get install -y chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium"), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def open_page(browser):
    """Open a page: ``open_page(**context_options) -> (page, problems)``, where ``problems``
    collects the page's console errors and uncaught script errors (a test asserts it is empty)."""

    def _open(**options):
        context = browser.new_context(viewport={"width": 1360, "height": 900}, **options)
        page = context.new_page()
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        return page, problems

    return _open


@pytest.fixture
def sign_in():
    """Sign in through the login form: ``sign_in(page, base_url, username, password)``."""

    def _sign_in(page, base, user, password):
        page.goto(base + "/")
        assert "/login" in page.url
        page.fill("input[name=username]", user)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")

    return _sign_in
