"""When the UI tests find chromium, install it, skip or fail (tests/browser.py)."""

import pytest

from tests.browser import chromium_or_reason, need_chromium


def installs_nothing() -> str:
    raise AssertionError("chromium is there: nothing to install")


def test_chromium_already_there_is_used_as_it_is(tmp_path):
    chromium = tmp_path / "chromium"
    chromium.touch()

    assert chromium_or_reason(chromium, is_root=True, install=installs_nothing) == (chromium, None)


def test_root_installs_a_missing_chromium(tmp_path):
    chromium = tmp_path / "chromium"

    found, reason = chromium_or_reason(
        chromium, is_root=True, install=lambda: chromium.touch() or ""
    )

    assert (found, reason) == (chromium, None)


def test_without_root_a_missing_chromium_is_a_reason_not_an_install(tmp_path):
    found, reason = chromium_or_reason(
        tmp_path / "chromium", is_root=False, install=installs_nothing
    )

    assert found is None
    assert "only root can install it: apt-get install -y chromium" in reason


def test_an_install_that_fails_says_what_apt_get_said(tmp_path):
    found, reason = chromium_or_reason(
        tmp_path / "chromium", is_root=True, install=lambda: "E: Unable to locate package chromium"
    )

    assert found is None
    assert "did not install it: E: Unable to locate package chromium" in reason


def test_a_missing_chromium_skips_the_test(tmp_path, monkeypatch):
    monkeypatch.delenv("CI", raising=False)

    with pytest.raises(pytest.skip.Exception, match="only root can install it"):
        need_chromium(tmp_path / "chromium", is_root=False, install=installs_nothing)


def test_a_missing_chromium_fails_the_test_under_ci(tmp_path, monkeypatch):
    monkeypatch.setenv("CI", "true")

    with pytest.raises(pytest.fail.Exception, match="CI=true requires it"):
        need_chromium(tmp_path / "chromium", is_root=False, install=installs_nothing)
