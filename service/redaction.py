"""What the API may show of its configuration and of its dependencies' errors: URLs without
credentials or query strings, and messages without secrets or the server's paths. /readyz
answers without auth, and job links reach every token holder."""

import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from settings import Settings

HIDDEN = "***"
# scheme://user:password@ (or a lone token@) inside any text.
_USERINFO = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)[^\s/@'\"]*@")
# A URL's query string, which may carry tokens (?password=, ?token=).
_QUERY = re.compile(r"(?P<url>://[^\s?#'\"]*)\?[^\s#'\"]*")
# Names of settings that hold secrets, in query strings and libpq's key=value form.
_SECRET_KEY = r"[\w-]*(?:password|passwd|pwd|token|secret|key|auth|credential|signature)[\w-]*"
_SECRET_PAIR = re.compile(rf"(?i)\b(?P<key>{_SECRET_KEY})=[^\s&'\"]+")
# The path of a file URL (sqlite:////srv/gradq.db, file:///srv/mlruns).
_FILE_URL = re.compile(r"\b(?P<scheme>sqlite|file):/{2,}[^\s'\"]*")
# An absolute path that is not the path of a URL (those follow a host, a port or a slash).
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/@%-])/[\w.~+%@-]+(?:/[\w.~+%@-]*)*")


def public_url(url: str) -> str:
    """scheme://host[:port]/path of ``url``: no user, password, query string or fragment."""
    parts = urlsplit(url)
    if parts.scheme in ("sqlite", "file") or not parts.netloc:
        return f"{parts.scheme}://<path>" if parts.scheme else "<path>"
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, host, parts.path, "", ""))


def redact(text: str, settings: Settings) -> str:
    """``text`` with every secret of the settings' URLs and tokens, any other credentials in a
    URL, query strings and server paths replaced."""
    for secret in sorted(secrets_of(settings), key=len, reverse=True):
        text = text.replace(secret, HIDDEN)
    text = _FILE_URL.sub(r"\g<scheme>://<path>", text)
    text = _USERINFO.sub(rf"\g<scheme>{HIDDEN}@", text)
    text = _QUERY.sub(rf"\g<url>?{HIDDEN}", text)
    text = _SECRET_PAIR.sub(rf"\g<key>={HIDDEN}", text)
    return _ABSOLUTE_PATH.sub("<path>", text)


def secrets_of(settings: Settings) -> set[str]:
    """The API tokens, and the passwords and secret query values of the configured URLs."""
    secrets = {token.get_secret_value() for token in settings.api_tokens}
    urls = (
        settings.database_url,
        settings.broker_url,
        settings.mlflow_tracking_uri,
        settings.mlflow_ui_url,
    )
    for url in urls:
        parts = urlsplit(url)
        query = parse_qsl(parts.query)
        secrets.update(value for key, value in query if re.fullmatch(_SECRET_KEY, key, re.I))
        secrets.add(parts.password or "")
    return {secret for secret in secrets if len(secret) >= 3}
