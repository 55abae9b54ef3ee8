"""Real loopback servers for the notification tests: a Bot API subset, an SMTP server, an HTTP proxy."""

from __future__ import annotations

import base64
import json
import select
import socket
import socketserver
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BotApi:
    """An HTTP server on 127.0.0.1 that speaks ``sendMessage`` and ``getUpdates`` like the Bot API."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.sent: list[dict[str, Any]] = []
        self.updates: list[dict[str, Any]] = []
        self.offsets: list[int | None] = []
        self.fail_with: int | None = None  # answer every call with this HTTP status
        self.fail_next = 0  # answer this many calls with HTTP 502, then work again
        self.rate_limit_next = 0  # answer this many calls with HTTP 429 and retry_after, then work again
        self.retry_after = 1
        self.calls: list[tuple[float, str]] = []  # (time.monotonic(), method) of every call
        self.chats = {str(OWNER)}  # the chats getChat finds (the bot was started there)
        self.bot_username = "aivj_test_bot"
        self._next_update = 1000
        self._lock = threading.Lock()
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                payload = json.loads(self.rfile.read(length) or b"{}")
                status, body = api.handle(self.path, payload)
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def handle(self, path: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        prefix, _, method = path.rpartition("/")
        with self._lock:
            self.calls.append((time.monotonic(), method))
            status = self.fail_with
            if status is None and self.fail_next > 0:
                self.fail_next, status = self.fail_next - 1, 502
            limited = status is None and self.rate_limit_next > 0
            if limited:
                self.rate_limit_next -= 1
        if limited:  # as Telegram answers a flood
            return 429, {"ok": False, "error_code": 429, "description": f"Too Many Requests: retry after {self.retry_after}",
                         "parameters": {"retry_after": self.retry_after}}
        if status is not None:
            return status, {"ok": False, "error_code": status, "description": "Bad Gateway"}
        if prefix != f"/bot{self.token}":
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        if method in ("getMe", "getChat"):
            return self._about(method, payload)
        with self._lock:
            if method == "sendMessage":
                self.sent.append(payload)
                return 200, {"ok": True, "result": {"message_id": len(self.sent), "text": payload.get("text")}}
            if method == "getUpdates":
                offset = payload.get("offset")
                self.offsets.append(offset)
                if offset is not None:  # like Telegram: an offset confirms every earlier update
                    self.updates = [u for u in self.updates if u["update_id"] >= offset]
                return 200, {"ok": True, "result": list(self.updates[: payload.get("limit", 100)])}
        return 404, {"ok": False, "error_code": 404, "description": "Not Found"}

    def _about(self, method: str, payload: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if method == "getMe":
            return 200, {"ok": True, "result": {"id": int(self.token.split(":")[0]), "is_bot": True,
                                                "first_name": "AIVJ", "username": self.bot_username}}
        chat = str(payload.get("chat_id"))
        if chat not in self.chats:  # Telegram's answer for a chat the bot was never started in
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
        return 200, {"ok": True, "result": {"id": int(chat), "type": "private", "username": "owner"}}

    def user_says(self, text: str, *, user_id: int, chat_id: int, username: str = "owner") -> None:
        """Queue an incoming message, as if typed in a chat."""
        with self._lock:
            self._next_update += 1
            self.updates.append({
                "update_id": self._next_update,
                "message": {
                    "message_id": self._next_update, "date": 0, "text": text,
                    "from": {"id": user_id, "is_bot": False, "first_name": username, "username": username},
                    "chat": {"id": chat_id, "type": "private"},
                },
            })

    def texts(self) -> list[str]:
        with self._lock:
            return [m["text"] for m in self.sent]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


OWNER = 4242  # the owner's user id; in a private chat it is also the chat id
TOKEN = "123456:SECRET-token-abcdef"
SMTP_PASSWORD = "hunter2-smtp-pass"


def telegram_env(monkeypatch: Any, api: BotApi) -> Any:
    """Point the environment's Telegram settings at ``api``; returns the loaded Settings."""
    from aivj_assets.settings import load_settings

    monkeypatch.setenv("TELEGRAM_TOKEN", api.token)
    monkeypatch.setenv("TELEGRAM_CHAT_ID", str(OWNER))
    monkeypatch.setenv("AIVJ_TELEGRAM_API", api.url)
    monkeypatch.setenv("AIVJ_NOTIFY_MIN_INTERVAL_SECONDS", "0")
    return load_settings()


def smtp_env(monkeypatch: Any, sink: SmtpSink, password: str) -> Any:
    """Point the environment's email settings at ``sink`` (every run and sensor reads them); the Settings."""
    from aivj_assets.settings import load_settings

    for key, value in {"AIVJ_SMTP_HOST": "127.0.0.1", "AIVJ_SMTP_PORT": str(sink.port), "AIVJ_SMTP_USER": sink.user,
                       "AIVJ_SMTP_PASSWORD": password, "AIVJ_SMTP_FROM": sink.user, "AIVJ_SMTP_TO": "owner@example.org",
                       "AIVJ_NOTIFY_MIN_INTERVAL_SECONDS": "0"}.items():
        monkeypatch.setenv(key, value)
    return load_settings()


class SmtpSink:
    """aiosmtpd on 127.0.0.1 with STARTTLS (a self-signed certificate) and a login check."""

    def __init__(self, workdir: Path, user: str, password: str, *, implicit_tls: bool = False) -> None:
        import ssl

        from aiosmtpd.controller import Controller
        from aiosmtpd.smtp import AuthResult

        self.messages: list[Any] = []
        self.logins: list[str] = []
        self.user = user
        self.cert = workdir / "cert.pem"
        key = workdir / "key.pem"
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(self.cert)],
            check=True, capture_output=True,
        )
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(self.cert, key)
        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                from email import message_from_bytes, policy

                sink.messages.append(message_from_bytes(envelope.content, policy=policy.default))
                return "250 OK"

        def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
            ok = auth_data.login.decode() == user and auth_data.password.decode() == password
            if ok:
                sink.logins.append(user)
            return AuthResult(success=ok, handled=False)  # let the server answer 535

        self.port = free_port()
        # implicit_tls: TLS from the first byte (port 465, AIVJ_SMTP_SSL) instead of STARTTLS. aiosmtpd
        # counts only STARTTLS as TLS for AUTH, so there AUTH must be allowed "without" it.
        tls_options: dict[str, Any] = ({"ssl_context": tls, "auth_require_tls": False} if implicit_tls
                                       else {"tls_context": tls, "require_starttls": True})
        self.controller = Controller(
            Handler(), hostname="127.0.0.1", port=self.port, authenticator=authenticator, auth_required=True,
            **tls_options,
        )
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()


class HttpProxy:
    """A threaded HTTP proxy on 127.0.0.1, as a home network's proxy tool is one: ``CONNECT`` tunnels
    (HTTPS, SMTP) and plain forwarding of ``http://`` requests. It records what passed through it
    (``passed``: ``("CONNECT", "host:port")`` or ``(method, url)``) and, given a login, answers 407
    to a request without it (``refused``)."""

    def __init__(self, login: tuple[str, str] | None = None) -> None:
        self.passed: list[tuple[str, str]] = []
        self.refused: list[tuple[str, str]] = []
        self.login = login
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            rbufsize = 0  # unbuffered: the tunnel's first bytes must stay in the socket for the relay

            def handle(self) -> None:
                try:
                    proxy._serve(self.connection, self.rfile)
                except OSError:
                    pass  # a client that went away

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        """The proxy's URL, with its login when it wants one."""
        login = f"{self.login[0]}:{self.login[1]}@" if self.login else ""
        return f"http://{login}127.0.0.1:{self.port}"

    def _authorized(self, headers: dict[str, str]) -> bool:
        if self.login is None:
            return True
        expected = base64.b64encode(f"{self.login[0]}:{self.login[1]}".encode()).decode()
        return headers.get("proxy-authorization", "") == f"Basic {expected}"

    def _serve(self, conn: socket.socket, rfile: Any) -> None:
        method, target, _ = rfile.readline().decode("latin-1").split(" ", 2)
        lines = []
        while (line := rfile.readline().decode("latin-1").rstrip("\r\n")):
            lines.append(line)
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines)}
        if not self._authorized(headers):
            self.refused.append((method, target))
            conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"t\"\r\n"
                         b"Content-Length: 0\r\nConnection: close\r\n\r\n")
            return
        self.passed.append((method, target))
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
            with socket.create_connection((host.strip("[]"), int(port)), timeout=10) as upstream:
                conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                _relay(conn, upstream)
            return
        url = urlsplit(target)
        body = rfile.read(int(headers.get("content-length") or 0)) if headers.get("content-length") else b""
        kept = [h for h in lines if not h.lower().startswith(("proxy-", "connection:", "keep-alive:"))]
        request = [f"{method} {url.path}{'?' + url.query if url.query else ''} HTTP/1.1", *kept, "Connection: close"]
        with socket.create_connection((url.hostname, url.port or 80), timeout=10) as upstream:
            upstream.sendall(("\r\n".join(request) + "\r\n\r\n").encode("latin-1") + body)
            while chunk := upstream.recv(65536):
                conn.sendall(chunk)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until one side closes."""
    for sock in (a, b):
        sock.settimeout(None)
    while True:
        readable, _, _ = select.select([a, b], [], [], 10)
        if not readable:
            return
        for sock in readable:
            chunk = sock.recv(65536)
            if not chunk:
                return
            (b if sock is a else a).sendall(chunk)
