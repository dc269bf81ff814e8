"""Headless Chromium for the browser tests: Debian's chromium and chromedriver, nothing downloaded.

The flags keep Chromium off the closed network (NOTES.md: without the background-networking ones it
keeps trying to reach Google's hosts) and give every driver a fresh profile.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
PAGE_LOAD_TIMEOUT = 60  # seconds a driver waits for a page's load event
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1280,900",
)


def headless_chromium(profile: Path, capabilities: dict[str, Any] | None = None):
    """A selenium driver for a fresh headless Chromium whose profile is PROFILE; CAPABILITIES are set as given."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for name, value in (capabilities or {}).items():
        options.set_capability(name, value)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT)
    return driver
