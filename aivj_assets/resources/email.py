"""Detailed email reports (metrics table, reasons, log excerpt) through smtplib."""

from __future__ import annotations

import html
import smtplib
import ssl
from email.message import EmailMessage
from typing import Any

from aivj_assets.settings import Settings

TIMEOUT = 15.0
LOG_EXCERPT_LINES = 40


class EmailError(RuntimeError):
    """Sending the report failed; the message never contains the password."""


def configured(settings: Settings) -> bool:
    """Whether the email channel is set up (host, sender and recipient)."""
    return bool(settings.smtp_host and settings.smtp_to and (settings.smtp_from or settings.smtp_user))


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def metrics_rows(details: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(metric, value, champion's value) rows from ``details["metrics"]`` and ``details["champion"]``."""
    metrics = details.get("metrics") or {}
    champion = details.get("champion") or {}
    return [(k, _fmt(v), _fmt(champion[k]) if k in champion else "") for k, v in metrics.items()]


def build_report(settings: Settings, event: str, text: str, details: dict[str, Any]) -> EmailMessage:
    """The email for ``event``: text, metrics table, reasons, other facts, log excerpt."""
    msg = EmailMessage()
    first_line = text.splitlines()[0] if text else event
    msg["Subject"] = f"[AIVJ] {event}: {first_line}"[:200]
    msg["From"] = settings.smtp_from or settings.smtp_user
    msg["To"] = settings.smtp_to
    rows = metrics_rows(details)
    reasons = [str(r) for r in details.get("reasons") or []]
    facts = {k: v for k, v in details.items() if k not in ("metrics", "champion", "reasons", "log")}
    log_lines = str(details.get("log") or "").splitlines()[-LOG_EXCERPT_LINES:]

    plain = [text, ""]
    if rows:
        plain.append(f"{'metric':<24} {'candidate':>12} {'champion':>12}")
        plain += [f"{m:<24} {v:>12} {c:>12}" for m, v, c in rows]
        plain.append("")
    if reasons:
        plain += ["Reasons:"] + [f"- {r}" for r in reasons] + [""]
    plain += [f"{k}: {_fmt(v)}" for k, v in facts.items()]
    if log_lines:
        plain += ["", "Log excerpt:"] + log_lines
    msg.set_content("\n".join(plain))

    esc = html.escape
    parts = [f"<p>{esc(text)}</p>"]
    if rows:
        parts.append("<table border='1' cellpadding='4'><tr><th>metric</th><th>candidate</th><th>champion</th></tr>")
        parts += [f"<tr><td>{esc(m)}</td><td>{esc(v)}</td><td>{esc(c)}</td></tr>" for m, v, c in rows]
        parts.append("</table>")
    if reasons:
        parts.append("<p>Reasons:</p><ul>" + "".join(f"<li>{esc(r)}</li>" for r in reasons) + "</ul>")
    if facts:
        parts.append("<ul>" + "".join(f"<li>{esc(k)}: {esc(_fmt(v))}</li>" for k, v in facts.items()) + "</ul>")
    if log_lines:
        parts.append("<p>Log excerpt:</p><pre>" + esc("\n".join(log_lines)) + "</pre>")
    msg.add_alternative("<html><body>" + "".join(parts) + "</body></html>", subtype="html")
    return msg


def send_report(settings: Settings, message: EmailMessage) -> None:
    """Send through the configured server: SSL, or plain upgraded by STARTTLS; login if a user is set."""
    password = settings.smtp_password.reveal()
    try:
        if settings.smtp_ssl:
            server: smtplib.SMTP = smtplib.SMTP_SSL(settings.smtp_host, settings.smtp_port, timeout=TIMEOUT,
                                                    context=ssl.create_default_context())
        else:
            server = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=TIMEOUT)
        with server:
            if settings.smtp_starttls and not settings.smtp_ssl:
                server.starttls(context=ssl.create_default_context())
            if settings.smtp_user:
                server.login(settings.smtp_user, password)
            server.send_message(message)
    except (smtplib.SMTPException, OSError, ssl.SSLError) as exc:
        detail = str(exc).replace(password, "********") if password else str(exc)
        raise EmailError(f"email to {settings.smtp_to} via {settings.smtp_host}:{settings.smtp_port} failed: "
                         f"{exc.__class__.__name__}: {detail}") from None
