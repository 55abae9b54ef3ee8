"""Detailed email reports (the gate table, reasons, log excerpt) through smtplib.

The session goes through the proxy the settings choose for SMTP (``AIVJ_SMTP_PROXY``, else
``HTTPS_PROXY`` unless ``NO_PROXY`` names the host) by a ``CONNECT`` tunnel (``tunnel.py``).
"""

from __future__ import annotations

import html
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any

from aivj_assets.ops.tunnel import ProxiedSMTP, ProxiedSMTPSSL, ProxyError
from aivj_assets.settings import Settings

TIMEOUT = 15.0
LOG_EXCERPT_LINES = 40  # the tail of the run's log a report quotes


class EmailError(RuntimeError):
    """Sending the report failed; the message never contains the password. ``kind`` says what
    failed: ``login``, ``tls``, ``proxy``, ``connect`` (the server not reached) or ``smtp``."""

    def __init__(self, message: str, kind: str = "smtp") -> None:
        super().__init__(message)
        self.kind = kind


def configured(settings: Settings) -> bool:
    """Whether the email channel is set up (host, sender and recipient)."""
    return bool(settings.smtp_host and settings.smtp_to and (settings.smtp_from or settings.smtp_user))


def cell(value: Any) -> str:
    """A value as the report shows it: 4 decimals, small p-values in scientific notation."""
    if value is None:
        return ""
    if isinstance(value, float):  # a p-value of 1e-9 is not "0.0000"
        return f"{value:.4f}" if value == 0 or abs(value) >= 1e-3 else f"{value:.2g}"
    return str(value)


GATE_COLUMNS = ("gate", "candidate", "champion", "95% interval", "measured", "bound", "verdict")


def _interval(value: Any) -> str:
    return f"[{value[0]:.4f}, {value[1]:.4f}]" if isinstance(value, list | tuple) and len(value) == 2 else ""


def table_rows(details: dict[str, Any]) -> list[tuple[str, ...]]:
    """The table's rows from ``details["gates"]``: each gate's candidate and champion figures, the
    interval of its estimate, what it compared (``value``) with its bound, and the verdict."""
    return [(str(g.get("gate", "")), cell(g.get("candidate")), cell(g.get("champion")),
             _interval(g.get("interval")), cell(g.get("value")), cell(g.get("bound")), str(g.get("verdict", "")))
            for g in details.get("gates") or []]


def build_report(settings: Settings, event: str, text: str, details: dict[str, Any]) -> EmailMessage:
    """The email for ``event``: text, the gate table, reasons, other facts, log excerpt."""
    msg = EmailMessage()
    first_line = text.splitlines()[0] if text else event
    msg["Subject"] = f"[AIVJ] {event}: {first_line}"[:200]
    msg["From"] = settings.smtp_from or settings.smtp_user
    msg["To"] = settings.smtp_to
    rows = table_rows(details)
    reasons = [str(r) for r in details.get("reasons") or []]
    facts = {k: v for k, v in details.items() if k not in ("gates", "reasons", "log")}
    log_lines = str(details.get("log") or "").splitlines()[-LOG_EXCERPT_LINES:]

    plain = [text, ""]
    if rows:
        widths = [max(len(r[i]) for r in [GATE_COLUMNS, *rows]) for i in range(len(GATE_COLUMNS))]
        plain += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [GATE_COLUMNS, *rows]]
        plain.append("")
    if reasons:
        plain += ["Reasons:"] + [f"- {r}" for r in reasons] + [""]
    plain += [f"{k}: {cell(v)}" for k, v in facts.items()]
    if log_lines:
        plain += ["", "Log excerpt:"] + log_lines
    msg.set_content("\n".join(plain))

    esc = html.escape
    parts = [f"<p>{esc(text)}</p>"]
    if rows:
        parts.append("<table border='1' cellpadding='4'><tr>" + "".join(f"<th>{esc(c)}</th>" for c in GATE_COLUMNS)
                     + "</tr>")
        parts += ["<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows]
        parts.append("</table>")
    if reasons:
        parts.append("<p>Reasons:</p><ul>" + "".join(f"<li>{esc(r)}</li>" for r in reasons) + "</ul>")
    if facts:
        parts.append("<ul>" + "".join(f"<li>{esc(k)}: {esc(cell(v))}</li>" for k, v in facts.items()) + "</ul>")
    if log_lines:
        parts.append("<p>Log excerpt:</p><pre>" + esc("\n".join(log_lines)) + "</pre>")
    msg.add_alternative("<html><body>" + "".join(parts) + "</body></html>", subtype="html")
    return msg


def _server(settings: Settings) -> smtplib.SMTP:
    """A connection to the configured server: SSL or plain, through the SMTP proxy if one is set."""
    try:
        proxy = settings.proxy_for("smtp")
    except ValueError as exc:
        raise ProxyError(str(exc)) from None
    host, port = settings.smtp_host, settings.smtp_port
    if settings.smtp_ssl:
        context = ssl.create_default_context()
        if proxy is not None:
            return ProxiedSMTPSSL(host, port, proxy=proxy, timeout=TIMEOUT, context=context)
        return smtplib.SMTP_SSL(host, port, timeout=TIMEOUT, context=context)
    if proxy is not None:
        return ProxiedSMTP(host, port, proxy=proxy, timeout=TIMEOUT)
    return smtplib.SMTP(host, port, timeout=TIMEOUT)


def _failure_kind(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPAuthenticationError):
        return "login"
    if isinstance(exc, ProxyError):
        return "proxy"
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return "tls"
    if isinstance(exc, smtplib.SMTPException):
        return "smtp"
    return "connect"


def _session(settings: Settings, message: EmailMessage | None) -> None:
    """Connect, secure the line, log in if a user is set, and send ``message`` if one is given."""
    with _server(settings) as server:
        if settings.smtp_starttls and not settings.smtp_ssl:
            server.starttls(context=ssl.create_default_context())
        if settings.smtp_user:
            server.login(settings.smtp_user, settings.smtp_password.reveal())
        if message is not None:
            server.send_message(message)


def _run(settings: Settings, message: EmailMessage | None) -> None:
    try:
        _session(settings, message)
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        detail = f"{exc.__class__.__name__}: {exc}"
        for secret in settings.secret_values():
            detail = detail.replace(secret, "********")
        raise EmailError(f"email to {settings.smtp_to} via {settings.smtp_host}:{settings.smtp_port} failed: {detail}",
                         kind=_failure_kind(exc)) from None


def send_report(settings: Settings, message: EmailMessage) -> None:
    """Send through the configured server: SSL, or plain upgraded by STARTTLS; login if a user is set."""
    _run(settings, message)


def check_login(settings: Settings) -> None:
    """Connect, secure the line and log in, sending nothing (``aivj doctor``); raises EmailError."""
    _run(settings, None)


def doctor_message(settings: Settings) -> EmailMessage:
    """The one message ``aivj doctor --send-test`` sends."""
    msg = EmailMessage()
    msg["Subject"] = "[AIVJ] doctor: test message"
    msg["From"] = settings.smtp_from or settings.smtp_user
    msg["To"] = settings.smtp_to
    msg.set_content("This test message was sent by `aivj doctor --send-test`: AIVJ's email reports reach you.")
    return msg
