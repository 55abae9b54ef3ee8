"""Real loopback servers for the notification tests: a Bot API subset and an SMTP server."""

from __future__ import annotations

import json
import socket
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


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
            status = self.fail_with
            if status is None and self.fail_next > 0:
                self.fail_next, status = self.fail_next - 1, 502
        if status is not None:
            return status, {"ok": False, "error_code": status, "description": "Bad Gateway"}
        if prefix != f"/bot{self.token}":
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
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


TOKEN = "123456:SECRET-token-abcdef"
SMTP_PASSWORD = "hunter2-smtp-pass"
OWNER = 4242  # the owner's user id; in a private chat it is also the chat id


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

    def __init__(self, workdir: Path, user: str, password: str) -> None:
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
        self.controller = Controller(
            Handler(), hostname="127.0.0.1", port=self.port, tls_context=tls, require_starttls=True,
            authenticator=authenticator, auth_required=True,
        )
        self.controller.start()

    def close(self) -> None:
        self.controller.stop()
