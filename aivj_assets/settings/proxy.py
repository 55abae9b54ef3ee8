"""Which HTTP proxy a channel (the Bot API, SMTP) goes through, from settings and ``.env``.

requests and smtplib read proxies from the real environment only (and smtplib not at all),
so a proxy written in ``.env`` would reach nothing: the channels are handed the proxy chosen
here instead. Only HTTP proxies are supported (``http://[user:password@]host:port``); the Bot
API is reached through them by requests, SMTP through a ``CONNECT`` tunnel. A proxy URL may hold
a password: it is shown as ``http://***@host:port`` and never in full.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit
from urllib.request import proxy_bypass_environment

from aivj_assets.settings.secret import Secret

DIRECT = "direct"  # a channel setting with this value: no proxy, whatever HTTPS_PROXY says
SUPPORTED_SCHEMES = ("http",)


@dataclass(frozen=True)
class Proxy:
    """An HTTP proxy: where it is, its login, and the variable that chose it."""

    url: Secret  # the whole URL, login included, for requests
    host: str
    port: int
    username: str = field(repr=False)
    password: Secret
    variable: str  # e.g. AIVJ_TELEGRAM_PROXY or HTTPS_PROXY
    secrets: tuple[str, ...] = field(default=(), repr=False)  # texts to scrub from errors

    def shown(self) -> str:
        """The proxy without its login, and where it was set: safe for messages and logs."""
        login = "***@" if self.username or self.password else ""
        return f"http://{login}{self.host}:{self.port} (from {self.variable})"


def parse_proxy(raw: str, variable: str) -> Proxy:
    """The proxy ``raw`` (set by ``variable``); ValueError, without the login, if unusable."""
    text = raw.strip()
    if "://" not in text:
        text = "http://" + text  # host:port, as requests also takes it
    try:
        parts = urlsplit(text)
        port = parts.port or 80
        host = parts.hostname or ""
    except ValueError:
        raise ValueError(f"setting {variable}: not a proxy URL (http://host:port)") from None
    scheme = parts.scheme.lower()
    if scheme not in SUPPORTED_SCHEMES:
        raise ValueError(
            f"setting {variable}: a {scheme} proxy is not supported, only an HTTP proxy (http://host:port); "
            "Clash, v2rayN and most proxy tools also offer one (their HTTP or mixed port, often 7890 or 10809)")
    if not host:
        raise ValueError(f"setting {variable}: no host in the proxy URL (expected http://host:port)")
    username, password = unquote(parts.username or ""), unquote(parts.password or "")
    return Proxy(Secret(text), host, port, username, Secret(password), variable, login_texts(raw))


def login_texts(raw: str) -> tuple[str, ...]:
    """The texts of a proxy URL that an error message must not show: the URL, its login and its
    password (as written and decoded), whatever its scheme."""
    text = raw.strip()
    try:
        netloc = urlsplit(text if "://" in text else "http://" + text).netloc
    except ValueError:
        netloc = ""
    login = netloc.rpartition("@")[0]
    password = login.partition(":")[2]
    return tuple(s for s in (text, login, password, unquote(password)) if s)


def choose_proxy(host: str, own: tuple[str, str], https_proxy: tuple[str, str], no_proxy: str) -> Proxy | None:
    """The proxy for ``host``: the channel's own setting ``own`` (variable, value) unless empty,
    else ``https_proxy`` (variable, value) unless ``no_proxy`` names ``host``; None: direct."""
    variable, value = own
    if value.strip().lower() == DIRECT:
        return None
    if value.strip():
        return parse_proxy(value, variable)
    variable, value = https_proxy
    if not value.strip() or not host:
        return None
    if no_proxy.strip() and proxy_bypass_environment(host, {"no": no_proxy}):
        return None
    return parse_proxy(value, variable)
