"""SMTP through an HTTP proxy: a ``CONNECT host:port`` tunnel, then smtplib on that socket.

smtplib knows no proxies, and a home network that needs one for the Bot API (from mainland
China, say) often needs it for a foreign mail server too. The tunnel carries the SMTP bytes
unchanged, so STARTTLS and SSL still check the mail server's own certificate.
"""

from __future__ import annotations

import base64
import smtplib
import socket
from typing import Any

from aivj_assets.settings import Proxy

MAX_REPLY_BYTES = 16 * 1024  # a proxy's reply head larger than this is not a proxy's reply


class ProxyError(OSError):
    """The proxy could not be reached or refused the tunnel; the message never holds its login."""


def _read_reply_head(sock: socket.socket) -> bytes:
    # Byte by byte: the mail server's greeting follows the reply at once, and must stay unread
    # for smtplib.
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            break
        head += byte
        if len(head) > MAX_REPLY_BYTES:
            break
    return head


def open_tunnel(proxy: Proxy, host: str, port: int, timeout: float | None) -> socket.socket:
    """A socket to ``host:port`` through ``proxy``'s ``CONNECT``; ProxyError when it is refused."""
    try:
        sock = socket.create_connection((proxy.host, proxy.port), timeout)
    except OSError as exc:
        raise ProxyError(f"proxy {proxy.shown()} not reachable: {exc.__class__.__name__}: {exc.strerror or exc}") from None
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if proxy.username or proxy.password:
        login = f"{proxy.username}:{proxy.password.reveal()}".encode()
        lines.append("Proxy-Authorization: Basic " + base64.b64encode(login).decode("ascii"))
    try:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head = _read_reply_head(sock)
    except OSError as exc:
        sock.close()
        raise ProxyError(f"proxy {proxy.shown()} failed during CONNECT {target}: {exc.__class__.__name__}") from None
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1", "replace").strip()
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or parts[1] != "200":
        sock.close()
        answer = status_line[:120] or "no answer"
        hint = " (the proxy wants a login: http://user:password@host:port)" if parts[1:2] == ["407"] else ""
        raise ProxyError(f"proxy {proxy.shown()} refused CONNECT {target}: {answer}{hint}")
    return sock


class _TunnelSocket(smtplib.SMTP):
    """Opens its connection through ``self.proxy`` (set before connecting)."""

    proxy: Proxy

    def _get_socket(self, host: str, port: int, timeout: float | None) -> socket.socket:
        return open_tunnel(self.proxy, host, port, timeout)


class ProxiedSMTP(_TunnelSocket):
    """smtplib.SMTP (plain, upgraded by STARTTLS) through an HTTP proxy."""

    def __init__(self, host: str, port: int, *, proxy: Proxy, **kwargs: Any) -> None:
        self.proxy = proxy
        super().__init__(host, port, **kwargs)


class ProxiedSMTPSSL(smtplib.SMTP_SSL, _TunnelSocket):
    """smtplib.SMTP_SSL through an HTTP proxy: SMTP_SSL wraps the tunnel's socket in TLS."""

    def __init__(self, host: str, port: int, *, proxy: Proxy, **kwargs: Any) -> None:
        self.proxy = proxy
        super().__init__(host, port, **kwargs)
