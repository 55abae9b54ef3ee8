"""notify(): Telegram and email against real loopback servers; never raises, never leaks."""

from __future__ import annotations

import logging
import time

import pytest

from aivj_assets.ops import notifier
from aivj_assets.ops.notifier import notify
from aivj_assets.settings import Secret
from aivj_assets_tests.loopback import OWNER, SMTP_PASSWORD, TOKEN, BotApi, SmtpSink, free_port


def test_alert_arrives_in_the_owners_chat(tg_settings, bot_api: BotApi) -> None:
    notify(tg_settings, "resource_alert", "RAM over 85%: 91% used")
    assert bot_api.sent == [
        {"chat_id": str(OWNER), "text": "[AIVJ] RAM over 85%: 91% used", "disable_web_page_preview": True}
    ]


def test_duplicates_are_sent_once_and_new_text_goes_out(tg_settings, bot_api: BotApi) -> None:
    for _ in range(3):
        notify(tg_settings, "paused", "Training paused (by telegram:owner)")
    notify(tg_settings, "resumed", "Training resumed from its checkpoint.")
    assert bot_api.texts() == ["[AIVJ] Training paused (by telegram:owner)", "[AIVJ] Training resumed from its checkpoint."]


def test_hourly_cap_holds_back_and_says_so_later(tg_settings, bot_api: BotApi, monkeypatch) -> None:
    monkeypatch.setattr(notifier, "HOURLY_CAP", 2)
    for i in range(4):
        notify(tg_settings, "new_data", f"new file {i}")
    assert bot_api.texts() == ["[AIVJ] new file 0", "[AIVJ] new file 1"]
    # Once the hour has passed the next message tells how many were held back.
    state_path = tg_settings.state_dir / "notify.json"
    import json

    state = json.loads(state_path.read_text())
    state["sent"] = [t - 3600 for t in state["sent"]]
    state_path.write_text(json.dumps(state))
    notify(tg_settings, "new_data", "new file 4")
    assert bot_api.texts()[-1] == "[AIVJ] new file 4\n(2 earlier messages were held back by the rate limit)"


def test_a_send_that_fails_once_is_tried_again(tg_settings, bot_api: BotApi, monkeypatch) -> None:
    from aivj_assets.ops import notifier

    monkeypatch.setattr(notifier, "RETRY_DELAYS", (0.01, 0.01))
    bot_api.fail_next = 2  # two quick 502s: the third try gets through
    notify(tg_settings, "run_failed", "Run full_training failed for good")
    assert bot_api.texts() == ["[AIVJ] Run full_training failed for good"]


def test_a_slow_failure_is_not_tried_again(tg_settings, monkeypatch) -> None:
    from aivj_assets.ops import notifier

    monkeypatch.setattr(notifier, "FAST_FAILURE_SECONDS", 0.05)
    calls = []

    def times_out() -> None:  # like a read timeout: the message may have arrived
        calls.append(1)
        time.sleep(0.1)
        raise TimeoutError("read timed out")

    assert notifier._deliver(tg_settings, "run_failed", "Telegram", times_out) is False
    assert calls == [1]


def test_failing_telegram_never_raises_nor_leaks_the_token(tg_settings, bot_api: BotApi, caplog, monkeypatch) -> None:
    from aivj_assets.ops import notifier

    monkeypatch.setattr(notifier, "RETRY_DELAYS", (0.01, 0.01))
    caplog.set_level(logging.DEBUG)
    bot_api.fail_with = 502
    notify(tg_settings, "training_failed", "run abc failed")
    dead = tg_settings.replace(telegram_api=f"http://127.0.0.1:{free_port()}")
    notify(dead, "training_failed", "run def failed")
    assert "Telegram notification training_failed failed" in caplog.text
    assert "HTTP 502" in caplog.text and "Connection" in caplog.text
    assert TOKEN not in caplog.text and "SECRET-token" not in caplog.text
    assert '"POST /bot********/sendMessage HTTP/1.1" 502' in caplog.text  # urllib3's debug line, masked


def test_no_channel_configured_is_silent(aivj_env, bot_api: BotApi) -> None:
    notify(aivj_env, "promoted", "v1 is champion", {"metrics": {"val_accuracy": 0.95}})
    assert bot_api.sent == []
    assert not (aivj_env.state_dir / "notify.json").exists()


def _smtp_settings(aivj_env, sink: SmtpSink, **kw):
    return aivj_env.replace(
        smtp_host="127.0.0.1", smtp_port=sink.port, smtp_user="aivj@example.org",
        smtp_password=Secret(SMTP_PASSWORD), smtp_from="aivj@example.org", smtp_to="owner@example.org",
        smtp_starttls=True, notify_min_interval_seconds=0.0, **kw,
    )


def test_promotion_report_arrives_by_email_with_its_gate_table(aivj_env, smtp_sink: SmtpSink) -> None:
    settings = _smtp_settings(aivj_env, smtp_sink)
    details = {
        "gates": [
            {"gate": "val_accuracy", "candidate": 0.9312, "champion": 0.9101, "interval": [0.9262, 0.9359],
             "value": 0.9312, "bound": 0.9, "verdict": "pass"},
            {"gate": "beats_champion", "candidate": 0.9312, "champion": 0.9101, "interval": [0.0150, 0.0272],
             "value": 1.2e-9, "bound": 0.05, "verdict": "pass"},
            {"gate": "calibration", "candidate": 0.071, "champion": None, "interval": None, "value": 0.071,
             "bound": 0.05, "verdict": "warn"},
        ],
        "version": "v1764300000_ab12",
        "log": "\n".join(f"epoch {i} loss {1 / (i + 1):.3f}" for i in range(60)),
    }
    notify(settings, "promoted", "v1764300000_ab12 is the new champion", details)
    assert smtp_sink.logins == ["aivj@example.org"]  # logged in, after STARTTLS (the server requires it)
    [msg] = smtp_sink.messages
    assert msg["Subject"] == "[AIVJ] promoted: v1764300000_ab12 is the new champion"
    assert msg["To"] == "owner@example.org"
    plain = msg.get_body(("plain",)).get_content()
    html = msg.get_body(("html",)).get_content()
    assert "gate            candidate  champion  95% interval      measured  bound   verdict" in plain
    assert "val_accuracy    0.9312     0.9101    [0.9262, 0.9359]  0.9312    0.9000  pass" in plain
    assert "calibration     0.0710                                 0.0710    0.0500  warn" in plain
    assert ("<tr><td>beats_champion</td><td>0.9312</td><td>0.9101</td><td>[0.0150, 0.0272]</td><td>1.2e-09</td>"
            "<td>0.0500</td><td>pass</td></tr>") in html
    assert "epoch 59 loss 0.017" in plain and "epoch 0 loss" not in plain  # only the log's tail
    assert SMTP_PASSWORD not in plain


def test_short_messages_without_details_do_not_email(aivj_env, smtp_sink: SmtpSink) -> None:
    notify(_smtp_settings(aivj_env, smtp_sink), "paused", "Training paused")
    assert smtp_sink.messages == []


def test_wrong_smtp_password_is_logged_without_the_password(aivj_env, smtp_sink: SmtpSink, caplog) -> None:
    settings = _smtp_settings(aivj_env, smtp_sink).replace(smtp_password=Secret("wrong-" + SMTP_PASSWORD))
    notify(settings, "promoted", "v2 is champion", {"metrics": {"val_accuracy": 0.9}})
    assert smtp_sink.messages == []
    assert "email notification promoted failed" in caplog.text
    assert SMTP_PASSWORD not in caplog.text


@pytest.mark.parametrize("bad", ["not json", "[1, 2]"])
def test_damaged_state_file_does_not_stop_messages(tg_settings, bot_api: BotApi, bad: str) -> None:
    tg_settings.state_dir.mkdir(parents=True, exist_ok=True)
    (tg_settings.state_dir / "notify.json").write_text(bad)
    notify(tg_settings, "new_data", "new file x")
    assert bot_api.texts() == ["[AIVJ] new file x"]


def test_processes_sending_at_once_share_one_memory(tg_settings, bot_api: BotApi) -> None:
    """A message another process is admitting is not sent again: the memory is read under a lock."""
    import multiprocessing
    import time

    from aivj_assets.data.atomic import file_lock

    child = multiprocessing.get_context("fork").Process(target=notify, args=(tg_settings, "new_data", "file x"))
    with file_lock(notifier._lock_path(tg_settings)):  # as another process admitting the same message
        child.start()
        child.join(1.0)
        assert child.is_alive()  # it waits for the lock instead of reading a memory about to change
        assert notifier._admit_locked(tg_settings, "new_data", "file x", time.time()) == (True, 0)
    child.join(10)
    assert child.exitcode == 0 and bot_api.sent == []  # the other one sends it, this one does not
