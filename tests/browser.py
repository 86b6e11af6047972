"""Debian chromium driven by Playwright, the one way tests and benchmarks open a browser.

Playwright never downloads a browser here: it launches /usr/bin/chromium (apt-get install
chromium; `make test` does it when run as root). Tests that need it skip with the reason when
it is missing.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

CHROMIUM = "/usr/bin/chromium"
# headless as root, and no background traffic: this machine reaches only package registries
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

needs_chromium = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"{CHROMIUM} not found (apt-get install chromium)"
)


@contextmanager
def launched() -> Iterator[Any]:
    """A headless chromium browser, closed on exit."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser
        finally:
            browser.close()
