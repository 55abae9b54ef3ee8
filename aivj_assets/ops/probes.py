"""Live checks of the owner's channels and GPU for ``aivj doctor``: each says ok, warn or fail,
and a failure says how to fix it. Nothing here shows a secret: errors come scrubbed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aivj_assets.ops import email as email_channel
from aivj_assets.ops import telegram
from aivj_assets.ops.monitor import GpuReading, read_gpus
from aivj_assets.settings import Settings

OK, WARN, FAIL = "ok", "warn", "fail"


@dataclass(frozen=True)
class Check:
    """One line of ``aivj doctor``: its status, what was checked, what was found, and the fix."""

    status: str
    label: str
    detail: str
    fix: str = ""


def route(settings: Settings, channel: str) -> str:
    """How ``channel`` leaves this PC: "direct" or "via <proxy without its login>"."""
    proxy = settings.proxy_for(channel)
    return "direct" if proxy is None else f"via proxy {proxy.shown()}"


_PROXY_HINT = ("where api.telegram.org is blocked (mainland China) set AIVJ_TELEGRAM_PROXY (or HTTPS_PROXY) "
               "in .env to your HTTP proxy, e.g. http://127.0.0.1:7890")


def _telegram_fix(exc: telegram.TelegramError, way: str) -> str:
    if exc.status in (401, 404):  # Telegram answers 404 to a token of the wrong shape
        return "the token is wrong or revoked: copy it again from @BotFather into TELEGRAM_TOKEN"
    if exc.status == 407:
        return "the proxy wants a login: http://user:password@host:port"
    if exc.status == 429:
        return "Telegram asks to slow down: run `aivj doctor` again in a minute"
    if exc.status is None and way != "direct":
        return (f"the Bot API was not reached {way}: is the proxy tool running, and does it allow "
                "CONNECT to api.telegram.org:443? AIVJ_TELEGRAM_PROXY sets another (or direct)")
    if exc.status is None:
        return f"the Bot API was not reached (direct): check the network; {_PROXY_HINT}"
    return "see the Bot API's answer above"


def telegram_checks(settings: Settings) -> list[Check]:
    """The bot (``getMe``: token and the way there) and the owner's chat (``getChat``)."""
    token, chat = settings.telegram_token.reveal(), settings.telegram_chat_id
    if not token and not chat:
        return [Check(WARN, "Telegram", "not configured: no alerts reach you, no bot commands",
                      "set TELEGRAM_TOKEN (from @BotFather) and TELEGRAM_CHAT_ID in .env")]
    if not token:
        return [Check(FAIL, "Telegram", "TELEGRAM_CHAT_ID is set but TELEGRAM_TOKEN is not",
                      "set TELEGRAM_TOKEN to the token @BotFather gave your bot")]
    try:
        way = route(settings, "telegram")
        me = telegram.get_me(settings)
    except ValueError as exc:
        return [Check(FAIL, "Telegram bot", str(exc), "set an HTTP proxy, or AIVJ_TELEGRAM_PROXY=direct")]
    except telegram.TelegramError as exc:
        return [Check(FAIL, "Telegram bot", str(exc), _telegram_fix(exc, way))]
    checks = [Check(OK, "Telegram bot", f"@{me.get('username', '?')} answers ({way})")]
    if not chat:
        return [*checks, Check(FAIL, "Telegram chat", "TELEGRAM_CHAT_ID is not set",
                               "send /start to your bot, then set TELEGRAM_CHAT_ID to your user id (@userinfobot tells it)")]
    try:
        found = telegram.get_chat(settings)
    except telegram.TelegramError as exc:
        fix = ("open your bot in Telegram and send it /start, then check TELEGRAM_CHAT_ID is your numeric user id "
               "(@userinfobot tells it)") if exc.status == 400 else _telegram_fix(exc, way)
        return [*checks, Check(FAIL, "Telegram chat", f"chat {chat}: {exc}", fix)]
    name = found.get("username") or found.get("title") or found.get("first_name") or ""
    kind = ", ".join(str(x) for x in (found.get("type", "?"), name) if x)
    return [*checks, Check(OK, "Telegram chat", f"chat {chat} reachable ({kind})")]


_EMAIL_FIXES = {
    "login": "check AIVJ_SMTP_USER and AIVJ_SMTP_PASSWORD; Gmail, Outlook, QQ and 163 mail want an app password "
             "(authorisation code), not the account's own password",
    "tls": "port 465 wants AIVJ_SMTP_SSL=true, port 587 AIVJ_SMTP_STARTTLS=true; a certificate error means "
           "AIVJ_SMTP_HOST is not the name on the server's certificate",
    "proxy": "check AIVJ_SMTP_PROXY (else HTTPS_PROXY is used): an HTTP proxy that allows CONNECT to the mail port; "
             "AIVJ_SMTP_PROXY=direct if the mail server is reachable without it",
    "connect": "check AIVJ_SMTP_HOST and AIVJ_SMTP_PORT, and that this PC may reach them (else set AIVJ_SMTP_PROXY "
               "to an HTTP proxy)",
    "smtp": "the server refused: see its answer above",
}


def email_check(settings: Settings, send_test: bool = False) -> Check:
    """Log in to the SMTP server (and with ``send_test`` send one test message)."""
    if not email_channel.configured(settings):
        if settings.smtp_host or settings.smtp_to or settings.smtp_user:
            return Check(FAIL, "email", "partly configured", "set AIVJ_SMTP_HOST, AIVJ_SMTP_TO and AIVJ_SMTP_FROM "
                                                            "(or AIVJ_SMTP_USER), or none of them")
        return Check(OK, "email", "not configured (optional: detailed reports by email)")
    security = "SSL" if settings.smtp_ssl else "STARTTLS" if settings.smtp_starttls else "no TLS"
    try:
        way = route(settings, "smtp")
        if send_test:
            email_channel.send_report(settings, email_channel.doctor_message(settings))
        else:
            email_channel.check_login(settings)
    except ValueError as exc:
        return Check(FAIL, "email", str(exc), _EMAIL_FIXES["proxy"])
    except email_channel.EmailError as exc:
        return Check(FAIL, "email", str(exc), _EMAIL_FIXES.get(exc.kind, _EMAIL_FIXES["smtp"]))
    login = f"login as {settings.smtp_user} accepted" if settings.smtp_user else "no login set"
    sent = f"; test message sent to {settings.smtp_to}" if send_test else ""
    status = OK if settings.smtp_ssl or settings.smtp_starttls else WARN
    fix = "" if status == OK else "set AIVJ_SMTP_STARTTLS=true (port 587) or AIVJ_SMTP_SSL=true (port 465)"
    return Check(status, "email", f"{settings.smtp_host}:{settings.smtp_port} {security}, {login} ({way}){sent}", fix)


def _gpu_line(g: GpuReading) -> str:
    return f"GPU{g.index} {g.name}: {g.memory_used / 2**30:.1f}/{g.memory_total / 2**30:.1f} GiB used, {g.temperature:.0f}°C"


def gpu_check(settings: Settings, read: Callable[[], tuple[list[GpuReading], str]] = read_gpus) -> Check:
    """The GPUs as NVML (what the resource watch reads) reports them: name, memory, temperature."""
    gpus, note = read()
    if not gpus:
        if settings.device == "cuda":
            return Check(FAIL, "GPU", note, "install the NVIDIA driver (nvidia-smi must list the GPU), or set AIVJ_DEVICE=cpu")
        if settings.device == "cpu":
            return Check(OK, "GPU", f"not used (AIVJ_DEVICE=cpu); {note}")
        return Check(WARN, "GPU", note, "training runs on the CPU, slowly: with an NVIDIA GPU, install its driver "
                                        "(nvidia-smi must list it)")
    detail = "; ".join(_gpu_line(g) for g in gpus) + (f" ({note})" if note else "")
    if any(g.temperature >= settings.gpu_temp_hot for g in gpus):
        return Check(WARN, "GPU", detail, f"at {settings.gpu_temp_hot:.0f}°C (AIVJ_GPU_TEMP_HOT) training pauses until "
                                          f"{settings.gpu_temp_cool:.0f}°C: improve the cooling")
    return Check(OK, "GPU", detail)
