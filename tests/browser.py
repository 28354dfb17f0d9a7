"""A real browser for the UI tests: Debian's chromium, driven by Playwright for Python.

Playwright's own browsers are never downloaded (no `playwright install`): the tests drive
/usr/bin/chromium, which root installs with apt-get when it is missing. Where neither can be
had the test is skipped with the reason, or fails under CI=true (tests/servers.py).
"""

import os
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.servers import unavailable

CHROMIUM = Path("/usr/bin/chromium")
INSTALL_CHROMIUM = ["apt-get", "install", "-y", "chromium"]


def apt_get_install_chromium() -> str:
    """Install Debian's chromium; apt-get's last words, for the reason when it did not."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def apt_get(command: list[str]) -> subprocess.CompletedProcess:
        return subprocess.run(
            command, capture_output=True, text=True, env=env, timeout=900, check=False
        )

    done = apt_get(INSTALL_CHROMIUM)
    if done.returncode:  # a fresh machine may not have the package lists yet
        apt_get(["apt-get", "update"])
        done = apt_get(INSTALL_CHROMIUM)
    return (done.stdout + done.stderr)[-500:]


def chromium_or_reason(
    path: Path = CHROMIUM,
    *,
    is_root: bool | None = None,
    install: Callable[[], str] = apt_get_install_chromium,
) -> tuple[Path | None, str | None]:
    """``path`` if chromium is there or root could install it, else None and why not."""
    if path.exists():
        return path, None
    if is_root is None:
        is_root = os.geteuid() == 0
    if not is_root:
        return None, f"{path} is missing and only root can install it: apt-get install -y chromium"
    said = install()
    if path.exists():
        return path, None
    return None, f"{path} is missing and `apt-get install -y chromium` did not install it: {said}"


def need_chromium(path: Path = CHROMIUM, **how) -> Path:
    """chromium's path; the test is skipped (failed under CI=true) without it."""
    found, reason = chromium_or_reason(path, **how)
    if found is None:
        unavailable(reason)
    return found


@contextmanager
def chromium_browser(path: Path = CHROMIUM) -> Iterator:
    """A headless chromium under Playwright's control, closed on exit."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed: pip install -e '.[test]'")
    executable = need_chromium(path)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(executable))
        try:
            yield browser
        finally:
            browser.close()
