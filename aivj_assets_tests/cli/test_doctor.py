"""``aivj doctor`` against the loopback Bot API, the loopback SMTP server and a loopback proxy:
a healthy installation is all ok; each broken thing is a fail line with its fix and exit 1."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from aivj_assets.cli.doctor import run_checks, settings_check, window_check
from aivj_assets.cli.main import main
from aivj_assets.ops.monitor import read_gpus
from aivj_assets.ops.probes import Check, gpu_check
from aivj_assets.settings import load_settings
from aivj_assets_tests.loopback import SMTP_PASSWORD, TOKEN, BotApi, HttpProxy, SmtpSink, smtp_env

SECRETS = (TOKEN, TOKEN.split(":")[1], SMTP_PASSWORD, "proxy-pass-SECRET")


@pytest.fixture
def healthy(tg_settings, bot_api: BotApi, smtp_sink: SmtpSink, http_proxy: HttpProxy, tmp_path: Path, monkeypatch):
    """Everything set up: data and elite files, an instance, Telegram and email, through a proxy
    written only in .env, an export path; CPU training (this machine has no GPU)."""
    from aivj_assets.orchestration.instance import ensure_instance

    smtp_env(monkeypatch, smtp_sink, SMTP_PASSWORD)
    data = Path(os.environ["AIVJ_DATA_DIR"])
    (data / "night1").mkdir()
    (data / "night1" / "pairs.jsonl").write_text('{"a": 1}\n{"a": 2}\n{"a": 3}')  # 3 rows, the last unterminated
    pq.write_table(pa.table({"label": [0, 1]}), data / "pairs.parquet")
    (data / "AIVJ_FINAL_ELITE").mkdir()
    (data / "AIVJ_FINAL_ELITE" / "elite.jsonl").write_text('{"a": 1}\n')
    env_file = tmp_path / "healthy.env"
    env_file.write_text(f"HTTPS_PROXY={http_proxy.url}\nAIVJ_DEVICE=cpu\n"
                        f"AIVJ_EXPORT_PATH='{tmp_path / 'app' / 'coupling_net_best.pth'}'\n", encoding="utf-8")
    monkeypatch.setenv("AIVJ_ENV_FILE", str(env_file))
    ensure_instance(load_settings())
    return http_proxy


def _doctor(capsys, *args: str) -> tuple[int, str]:
    code = main(["doctor", *args])
    out = capsys.readouterr().out
    for secret in SECRETS:
        assert secret not in out
    return code, out


def _line(out: str, label: str) -> str:
    found = [line for line in out.splitlines() if re.match(rf"\w+ +{re.escape(label)}  ", line)]
    assert len(found) == 1, (label, out)
    return found[0]


def _fix_of(out: str, label: str) -> str:
    lines = out.splitlines()
    after = lines[lines.index(_line(out, label)) + 1].strip()
    assert after.startswith("fix: "), out
    return after


def test_a_healthy_installation_is_all_ok_and_exits_0(healthy: HttpProxy, smtp_sink: SmtpSink, capsys) -> None:
    code, out = _doctor(capsys)
    assert code == 0, out
    assert re.fullmatch(r"\d+ ok, \d+ warn, 0 fail", out.splitlines()[-1])
    for label in ("data folder", "elite folder", "AIVJ_HOME", "Dagster", "torch", "GPU", "Telegram bot",
                  "Telegram chat", "email", "export path", "window"):
        assert _line(out, label).startswith("ok "), out
    assert "2 data files" in _line(out, "data folder") and "5 rows" in _line(out, "data folder")
    assert "1 data files" in _line(out, "elite folder") and "1 rows" in _line(out, "elite folder")
    assert "@aivj_test_bot" in _line(out, "Telegram bot") and "chat 4242 reachable" in _line(out, "Telegram chat")
    proxy = f"via proxy http://***@127.0.0.1:{healthy.port} (from HTTPS_PROXY)"
    assert proxy in _line(out, "Telegram bot") and proxy in _line(out, "email")
    assert ("CONNECT", f"127.0.0.1:{smtp_sink.port}") in healthy.passed  # the SMTP login went through the proxy
    assert [m for m, _ in healthy.passed].count("POST") == 2  # getMe and getChat too
    assert "login as aivj@example.org accepted" in _line(out, "email") and smtp_sink.messages == []
    assert re.search(r"next opens|open, closes", _line(out, "window"))


def test_send_test_delivers_exactly_one_message(healthy: HttpProxy, smtp_sink: SmtpSink, capsys) -> None:
    code, out = _doctor(capsys, "--send-test")
    assert code == 0, out
    assert [m["Subject"] for m in smtp_sink.messages] == ["[AIVJ] doctor: test message"]
    assert "test message sent to owner@example.org" in _line(out, "email")


def _not_a_folder(tmp_path: Path) -> str:
    """A path under a regular file: no folder can be there (tests run as root, so permission
    bits would not stop a write)."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    return str(blocker / "inside")


def _ELITE(t: Path) -> dict[str, str]:  # noqa: N802  (the elite folder kept where it is)
    return {"AIVJ_ELITE_DIR": str(t / "data" / "AIVJ_FINAL_ELITE")}


BROKEN = {
    # name: (environment changes, a callable of (tmp_path, proxy port); the failing lines; words of the first's fix)
    "data folder missing": (lambda t, p: {"AIVJ_DATA_DIR": str(t / "nowhere"), **_ELITE(t)}, ["data folder"],
                            "AIVJ_DATA_DIR"),
    "data folder unreadable": (lambda t, p: {"AIVJ_DATA_DIR": str(t / "data" / "pairs.parquet"), **_ELITE(t)},
                               ["data folder"], "readable by this user"),
    "elite folder missing": (lambda t, p: {"AIVJ_ELITE_DIR": str(t / "no-elite")}, ["elite folder"], "AIVJ_ELITE_DIR"),
    "bad token": (lambda t, p: {"TELEGRAM_TOKEN": "999:WRONG-token"}, ["Telegram bot"], "@BotFather"),
    "chat not found": (lambda t, p: {"TELEGRAM_CHAT_ID": "999"}, ["Telegram chat"], "send it /start"),
    "smtp login refused": (lambda t, p: {"AIVJ_SMTP_PASSWORD": "wrong-" + SMTP_PASSWORD}, ["email"], "app password"),
    "proxy login refused": (lambda t, p: {"HTTPS_PROXY": f"http://proxyuser:wrong-proxy-pass-SECRET@127.0.0.1:{p}"},
                            ["Telegram bot", "email"], "the proxy wants a login"),
    "proxy not running": (lambda t, p: {"HTTPS_PROXY": "http://127.0.0.1:1"}, ["Telegram bot", "email"],
                          "is the proxy tool running"),
    "home not writable": (lambda t, p: {"AIVJ_HOME": _not_a_folder(t)}, ["AIVJ_HOME"], "AIVJ_HOME"),
    "export folder not writable": (lambda t, p: {"AIVJ_EXPORT_PATH": _not_a_folder(t) + "/best.pth"}, ["export path"],
                                   "AIVJ_EXPORT_PATH"),
    "unknown time zone": (lambda t, p: {"AIVJ_TIMEZONE": "Mars/Olympus_Mons"}, ["settings"], "AIVJ_TIMEZONE"),
}


@pytest.mark.parametrize("broken", list(BROKEN))
def test_each_broken_thing_fails_with_its_fix(broken: str, healthy: HttpProxy, tmp_path: Path, capsys,
                                              monkeypatch) -> None:
    changes, labels, fix_words = BROKEN[broken]
    for key, value in changes(tmp_path, healthy.port).items():
        monkeypatch.setenv(key, value)
    code, out = _doctor(capsys)
    assert code == 1, out
    for label in labels:
        assert _line(out, label).startswith("fail "), out
        assert _fix_of(out, label)
    assert fix_words in _fix_of(out, labels[0]), out
    assert out.count("fail ") == len(labels), out  # only the broken thing fails


def test_the_installed_command_runs_as_a_subprocess(healthy: HttpProxy, tmp_path: Path, monkeypatch) -> None:
    aivj = Path(sys.executable).parent / "aivj"
    monkeypatch.setenv("TELEGRAM_CHAT_ID", "999")  # one failure: the exit status must say so
    proc = subprocess.run([str(aivj), "doctor"], capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert _line(proc.stdout, "Telegram chat").startswith("fail ") and "send it /start" in proc.stdout
    assert _line(proc.stdout, "email").startswith("ok ")
    assert not any(secret in proc.stdout + proc.stderr for secret in SECRETS)


def test_the_window_line_gives_the_next_start_in_the_owners_time(aivj_env) -> None:
    settings = aivj_env.replace(window="02:00-06:00", timezone="Asia/Shanghai")
    evening = datetime(2025, 1, 7, 12, 0, tzinfo=timezone.utc)  # 20:00 in Shanghai
    assert "next opens Wed 2025-01-08 02:00 CST (in 6 h 0 min)" in window_check(settings, evening).detail
    night = datetime(2025, 1, 7, 19, 30, tzinfo=timezone.utc)  # 03:30 in Shanghai
    assert "open, closes Wed 2025-01-08 06:00 CST (in 2 h 30 min)" in window_check(settings, night).detail


def test_the_gpu_line_reads_nvml(aivj_env) -> None:
    class HotGpu:
        """An NVML library reporting one GPU at 90 °C."""

        NVML_TEMPERATURE_GPU = 0

        def nvmlInit(self) -> None:
            pass

        def nvmlDeviceGetCount(self) -> int:
            return 1

        def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
            return i

        def nvmlDeviceGetMemoryInfo(self, h: int):
            return type("Mem", (), {"used": 6 * 2**30, "total": 24 * 2**30})()

        def nvmlDeviceGetName(self, h: int) -> bytes:
            return b"NVIDIA GeForce RTX 4090"

        def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
            return 90

        def nvmlDeviceGetUtilizationRates(self, h: int):
            return type("Util", (), {"gpu": 99})()

    hot = gpu_check(aivj_env, read=lambda: read_gpus(HotGpu))
    assert hot.status == "warn" and "GPU0 NVIDIA GeForce RTX 4090: 6.0/24.0 GiB used, 90°C" in hot.detail
    assert "AIVJ_GPU_TEMP_HOT" in hot.fix
    assert gpu_check(aivj_env.replace(gpu_temp_hot=95.0), read=lambda: read_gpus(HotGpu)).status == "ok"
    none = gpu_check(aivj_env.replace(device="cuda"), read=lambda: ([], "no NVIDIA GPU (no driver)"))
    assert none == Check("fail", "GPU", "no NVIDIA GPU (no driver)", none.fix) and "AIVJ_DEVICE=cpu" in none.fix


def test_a_utf16_env_file_warns_that_dagster_cannot_read_it(aivj_env, tmp_path: Path, monkeypatch) -> None:
    env_file = tmp_path / "windows.env"
    env_file.write_bytes("AIVJ_SEED=3\n".encode("utf-16"))
    monkeypatch.setenv("AIVJ_ENV_FILE", str(env_file))
    check = settings_check(load_settings())
    assert check.status == "warn" and "UTF-16" in check.detail and "UTF-8" in check.fix


def test_a_check_that_breaks_becomes_a_fail_line(aivj_env, monkeypatch) -> None:
    from aivj_assets.cli import doctor

    def broken(settings):
        raise RuntimeError("disk vanished")

    monkeypatch.setattr(doctor, "home_check", broken)
    lines = run_checks(aivj_env.replace(device="cpu"))
    assert Check("fail", "doctor", "a check broke: RuntimeError: disk vanished", "report this as a bug") in lines
    assert any(line.label == "window" for line in lines)  # the checks after it still ran
