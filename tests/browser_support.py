"""A real browser for the workbench tests: Debian's Chromium driven by chromedriver (selenium).
Headless, software WebGL (SwiftShader) for MapLibre, a fresh profile, and every host except
127.0.0.1 made unresolvable, so any CDN/font/tile fetch shows up as a console error.
Without the browser the tests skip with one line saying how to install it."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
HOW = "no browser: apt-get install chromium chromium-driver (and pip install -e '.[test]' for selenium)"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-default-apps", "--window-size=1500,900",
         "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1")


def require_browser() -> None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        pytest.skip(HOW)
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip(HOW)


@contextmanager
def chromium() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    require_browser()
    profile = tempfile.mkdtemp(prefix="kestrel-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def console_errors(driver: Any) -> list[str]:
    """Console errors and failed requests of the page shown now (a blocked non-loopback fetch lands
    here). A late report from an earlier test's page, whose workbench has since stopped, names that
    page's loopback port: it is not this page's error (the log is browser-wide and drains lazily)."""
    from urllib.parse import urlsplit

    here = urlsplit(driver.current_url)
    mine = f"{here.scheme}://{here.netloc}"

    def other_page(msg: str) -> bool:
        return msg.startswith("http://127.0.0.1:") and not msg.startswith(mine + "/")

    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and not other_page(e["message"])]


def wait(driver: Any, cond: Any, timeout: float = 60.0) -> Any:
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(cond)
