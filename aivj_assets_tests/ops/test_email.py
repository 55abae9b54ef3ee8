"""Email against the loopback SMTP server: through an HTTP proxy set only in .env, or directly; login checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from aivj_assets.ops import email as email_channel
from aivj_assets.settings import load_settings
from aivj_assets_tests.loopback import SMTP_PASSWORD, HttpProxy, SmtpSink, smtp_env


def _report(settings):
    return email_channel.build_report(settings, "promoted", "v3 is the champion", {"reasons": ["beats v2"]})


def _with_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str):
    env_file = tmp_path / "proxy.env"
    env_file.write_text(text, encoding="utf-8")
    monkeypatch.setenv("AIVJ_ENV_FILE", str(env_file))
    return load_settings()


def test_a_proxy_written_only_in_env_tunnels_the_smtp_session(aivj_env, smtp_sink: SmtpSink, http_proxy: HttpProxy,
                                                              tmp_path: Path, monkeypatch) -> None:
    smtp_env(monkeypatch, smtp_sink, SMTP_PASSWORD)
    settings = _with_env_file(tmp_path, monkeypatch, f"HTTPS_PROXY={http_proxy.url}\n")
    email_channel.send_report(settings, _report(settings))
    assert http_proxy.passed == [("CONNECT", f"127.0.0.1:{smtp_sink.port}")] and http_proxy.refused == []
    # STARTTLS inside the tunnel still checked the mail server's own certificate, and the login went through.
    assert [m["Subject"] for m in smtp_sink.messages] == ["[AIVJ] promoted: v3 is the champion"]
    assert smtp_sink.logins == [smtp_sink.user]


def test_without_a_proxy_setting_smtp_goes_directly(aivj_env, smtp_sink: SmtpSink, http_proxy: HttpProxy,
                                                    tmp_path: Path, monkeypatch) -> None:
    smtp_env(monkeypatch, smtp_sink, SMTP_PASSWORD)
    settings = _with_env_file(tmp_path, monkeypatch, "AIVJ_SEED=1\n")
    email_channel.send_report(settings, _report(settings))
    assert len(smtp_sink.messages) == 1 and http_proxy.passed == []
    monkeypatch.setenv("HTTPS_PROXY", http_proxy.url)
    monkeypatch.setenv("AIVJ_SMTP_PROXY", "direct")  # a mail server reached directly despite HTTPS_PROXY
    email_channel.send_report(load_settings(), _report(settings))
    assert len(smtp_sink.messages) == 2 and http_proxy.passed == []


# The loopback server is TLS from its first byte, which aiosmtpd's AUTH check does not count.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_smtp_over_ssl_goes_through_the_proxy_too(aivj_env, tmp_path: Path, http_proxy: HttpProxy, monkeypatch) -> None:
    sink = SmtpSink(tmp_path, "aivj@example.org", SMTP_PASSWORD, implicit_tls=True)
    try:
        monkeypatch.setenv("SSL_CERT_FILE", str(sink.cert))
        smtp_env(monkeypatch, sink, SMTP_PASSWORD)
        monkeypatch.setenv("AIVJ_SMTP_SSL", "true")
        monkeypatch.setenv("AIVJ_SMTP_PROXY", http_proxy.url)
        settings = load_settings()
        email_channel.send_report(settings, _report(settings))
        assert http_proxy.passed == [("CONNECT", f"127.0.0.1:{sink.port}")] and len(sink.messages) == 1
    finally:
        sink.close()


def test_a_refusing_or_unsupported_proxy_fails_without_showing_its_login(aivj_env, smtp_sink: SmtpSink,
                                                                       http_proxy: HttpProxy, monkeypatch) -> None:
    smtp_env(monkeypatch, smtp_sink, SMTP_PASSWORD)
    monkeypatch.setenv("AIVJ_SMTP_PROXY", f"http://proxyuser:wrong-SECRET@127.0.0.1:{http_proxy.port}")
    settings = load_settings()
    with pytest.raises(email_channel.EmailError, match="refused CONNECT .*407.*wants a login") as caught:
        email_channel.send_report(settings, _report(settings))
    assert caught.value.kind == "proxy" and "SECRET" not in str(caught.value) and smtp_sink.messages == []

    monkeypatch.delenv("AIVJ_SMTP_PROXY")
    monkeypatch.setenv("HTTPS_PROXY", "socks5://me:pw-SECRET@127.0.0.1:1080")
    with pytest.raises(email_channel.EmailError, match="HTTPS_PROXY: a socks5 proxy is not supported") as caught:
        email_channel.send_report(load_settings(), _report(settings))
    assert caught.value.kind == "proxy" and "SECRET" not in str(caught.value)


def test_check_login_logs_in_and_sends_nothing(aivj_env, smtp_sink: SmtpSink, monkeypatch) -> None:
    settings = smtp_env(monkeypatch, smtp_sink, SMTP_PASSWORD)
    email_channel.check_login(settings)
    assert smtp_sink.logins == [smtp_sink.user] and smtp_sink.messages == []
    wrong = smtp_env(monkeypatch, smtp_sink, "wrong-" + SMTP_PASSWORD)
    with pytest.raises(email_channel.EmailError, match="SMTPAuthenticationError") as caught:
        email_channel.check_login(wrong)
    assert caught.value.kind == "login" and SMTP_PASSWORD not in str(caught.value)
