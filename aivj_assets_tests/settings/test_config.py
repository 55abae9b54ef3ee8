"""Settings: defaults, .env, environment precedence, secrets masked."""

from __future__ import annotations

import json
import logging
import pickle
from datetime import time
from pathlib import Path

import pytest

from aivj_assets.settings import PROJECT_ROOT, Secret, load_settings, read_env_file


def test_defaults_follow_design(tmp_path: Path) -> None:
    s = load_settings(env={}, env_file=tmp_path / "none")
    assert s.data_dir == PROJECT_ROOT / "data"
    assert s.elite_path == PROJECT_ROOT / "data" / "AIVJ_FINAL_ELITE"
    assert s.timezone == "Asia/Shanghai"
    assert s.window_bounds == (time(2, 0), time(6, 0))
    assert s.checkpoint_every == 500
    assert (s.elite_min_accuracy, s.val_min_accuracy, s.beat_elite_factor) == (0.95, 0.90, 1.01)


def test_env_file_then_environment_then_override(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("# comment\nAIVJ_SEED=7\nexport AIVJ_BF16=yes\nAIVJ_WINDOW='01:00-05:30'\n")
    s = load_settings(env={"AIVJ_SEED": "9"}, env_file=env_file)
    assert s.seed == 9  # the environment wins over .env
    assert s.bf16 is True
    assert s.window_bounds == (time(1, 0), time(5, 30))
    assert load_settings(env={}, env_file=env_file, seed=3).seed == 3


def test_relative_paths_resolve_from_project_root(tmp_path: Path) -> None:
    s = load_settings(env={"AIVJ_DATA_DIR": "somewhere"}, env_file=tmp_path / "none")
    assert s.data_dir == PROJECT_ROOT / "somewhere"


def test_bad_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="AIVJ_CHECKPOINT_EVERY"):
        load_settings(env={"AIVJ_CHECKPOINT_EVERY": "often"}, env_file=tmp_path / "none")


def test_secrets_never_show(tmp_path: Path, caplog) -> None:
    s = load_settings(
        env={"TELEGRAM_TOKEN": "123:SECRETTOKEN", "AIVJ_SMTP_PASSWORD": "hunter2",
             "HTTPS_PROXY": "http://me:proxySECRET@127.0.0.1:7890"}, env_file=tmp_path / "none"
    )
    token, password = s.telegram_token, s.smtp_password
    assert isinstance(token, Secret) and not isinstance(token, str)
    assert token.reveal() == "123:SECRETTOKEN" and password.reveal() == "hunter2"
    shown = [repr(s), str(s), str(token), repr(token), f"{token}", f"{token!r}", f"{token:>30}", "%s" % password,  # noqa: UP031
             "%r" % (password,), "{}".format(token), str(s.public_dict()), json.dumps(s.public_dict()),  # noqa: UP031, UP032
             str(s.proxy_for("telegram")), json.dumps(token, default=str)]
    logging.getLogger("aivj.test").warning("token %s password %r", token, password)
    for text in [*shown, caplog.text]:
        assert "SECRET" not in text and "hunter2" not in text, text
    assert "********" in str(token) and str(Secret("")) == ""
    for value in (token, {"token": token}, [password]):
        with pytest.raises(TypeError, match="not JSON serializable"):
            json.dumps(value)


def test_a_secret_compares_and_hashes_by_its_value() -> None:
    assert Secret("a") == Secret("a") and Secret("a") != Secret("b") and hash(Secret("a")) == hash(Secret("a"))
    assert Secret("a") != "a"  # a secret is never taken for plain text, even in a comparison
    assert bool(Secret("x")) and not Secret("")
    assert Secret(Secret("x")).reveal() == "x"
    assert pickle.loads(pickle.dumps(Secret("x"))) == Secret("x")  # a run worker in another process can send
    with pytest.raises(TypeError):
        Secret(123)  # type: ignore[arg-type]
    s = load_settings(env={"TELEGRAM_TOKEN": "t"}, env_file=None)
    assert s == load_settings(env={"TELEGRAM_TOKEN": "t"}, env_file=None) != s.replace(telegram_token=Secret("u"))


def test_a_malformed_env_line_is_named_by_its_number_not_its_content(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    for text, lineno in (("AIVJ_SEED=1\nTELEGRAM_TOKEN 123456:SECRETTOKEN\n", 2),  # a space instead of '='
                         ("AIVJ_SEED=1\n\n123456:SECRETTOKEN\n", 3),  # a token pasted alone: no '='
                         ('AIVJ_SMTP_FROM="SECRET bot" <bot@example.com>\n', 1),  # text after the closing quote
                         ("AIVJ_SMTP_PASSWORD='SECRET's'\n", 1),  # a quote inside single quotes
                         ('AIVJ_SEED=1\nAIVJ_SMTP_PASSWORD="SECRET\nAIVJ_SMTP_USER=me\n', 2)):  # never closed
        env_file.write_text(text)
        with pytest.raises(ValueError) as caught:
            load_settings(env={}, env_file=env_file)
        assert f"{env_file}:{lineno}: " in str(caught.value)
        assert "SECRET" not in str(caught.value) and "python-dotenv" in str(caught.value)


def test_env_file_as_the_readme_shows_it_and_as_windows_saves_it(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    text = ("AIVJ_DATA_DIR=D:\\aidata\\new\n"  # unquoted: backslashes as written
            "AIVJ_ELITE_DIR='D:\\aidata\\AIVJ_FINAL_ELITE'\n"  # single quotes: as written
            "AIVJ_EXPORT_PATH=\"D:\\\\aidata\\\\coupling_net_best.pth\"\n"  # double quotes: \\ is one backslash
            "TELEGRAM_CHAT_ID=123456789            # your chat with the bot\n"
            "export AIVJ_SMTP_STARTTLS=true\n"
            "AIVJ_SMTP_PASSWORD='p#ss word'  # quoted: kept whole\n"
            "AIVJ_SMTP_USER=me#1@example.com\n"  # '#' inside an unquoted value is not a comment
            "AIVJ_SMTP_FROM=\"AIVJ bot <bot@example.com>\"\n"
            "AIVJ_SMTP_TO='line one\nline two'\n")  # a quoted value may span lines
    expected = {"AIVJ_DATA_DIR": "D:\\aidata\\new", "AIVJ_ELITE_DIR": "D:\\aidata\\AIVJ_FINAL_ELITE",
                "AIVJ_EXPORT_PATH": "D:\\aidata\\coupling_net_best.pth", "TELEGRAM_CHAT_ID": "123456789",
                "AIVJ_SMTP_STARTTLS": "true", "AIVJ_SMTP_PASSWORD": "p#ss word", "AIVJ_SMTP_USER": "me#1@example.com",
                "AIVJ_SMTP_FROM": "AIVJ bot <bot@example.com>", "AIVJ_SMTP_TO": "line one\nline two"}
    # Notepad's BOM, PowerShell 5.1's `echo ... > .env` (UTF-16), Windows line ends.
    for encoding, newline in (("utf-8", "\n"), ("utf-8-sig", "\n"), ("utf-16", "\n"), ("utf-8", "\r\n")):
        env_file.write_bytes(text.replace("\n", newline).encode(encoding))
        values = read_env_file(env_file)
        assert values == {k: v.replace("\n", newline) for k, v in expected.items()}, (encoding, newline)
    env_file.write_bytes(b"AIVJ_SEED=\xff\xfe7\n"[:-1] + b"\x80\n")
    with pytest.raises(ValueError, match=f"{env_file}: not UTF-8 text"):
        read_env_file(env_file)


WINDOWS_ENV = r"""# .env as an owner on Windows writes it
AIVJ_DATA_DIR=D:\aidata\new
AIVJ_ELITE_DIR='D:\aidata\new\elite'
AIVJ_EXPORT_PATH="D:\\aidata\\new\\coupling_net_best.pth"
AIVJ_HOME=${AIVJ_BASE}\aivj
AIVJ_BASE=E:\work
TELEGRAM_CHAT_ID=4242   # a comment
export AIVJ_SMTP_FROM="AIVJ bot <bot@example.com>"
AIVJ_SMTP_PASSWORD='p#ss "word" \n'
AIVJ_SMTP_USER="tab\there"
Q="D:\aidata\new"
"""


def test_settings_read_env_as_dagster_does(tmp_path: Path) -> None:
    """Every `dagster` command puts .env into its processes' environment, which wins over the file:
    our reading and Dagster's must give the same values, or the daemon and the CLI disagree."""
    from dagster._core.secrets.env_file import get_env_var_dict  # what `dagster dev` and the daemon call

    (tmp_path / ".env").write_text(WINDOWS_ENV, encoding="utf-8")
    dagsters = get_env_var_dict(str(tmp_path))
    ours = read_env_file(tmp_path / ".env")
    assert ours == dagsters
    assert ours["AIVJ_DATA_DIR"] == "D:\\aidata\\new" and ours["AIVJ_ELITE_DIR"] == "D:\\aidata\\new\\elite"
    assert ours["AIVJ_EXPORT_PATH"] == "D:\\aidata\\new\\coupling_net_best.pth"
    assert ours["Q"] == "D:\x07idata\new"  # double quotes expand \a and \n, for both readers alike
    from_file = load_settings(env={}, env_file=tmp_path / ".env")
    under_dagster = load_settings(env=dagsters, env_file=tmp_path / ".env")  # the daemon's view
    assert from_file == under_dagster
    assert str(from_file.data_dir).endswith("D:\\aidata\\new") and from_file.smtp_password.reveal() == 'p#ss "word" \\n'


def test_a_double_quoted_windows_path_is_refused_with_how_to_write_it(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text('AIVJ_DATA_DIR="D:\\aidata\\new"\n', encoding="utf-8")
    for env in ({}, read_env_file(env_file)):  # read from the file, or put in the environment by Dagster
        with pytest.raises(ValueError, match="AIVJ_DATA_DIR=.*control character.*unquoted or in single quotes"):
            load_settings(env=env, env_file=env_file)


def test_env_example_lists_every_setting() -> None:
    """.env.example is generated from Settings; a new field without a regenerate fails here."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("gen_env_example", PROJECT_ROOT / "scripts" / "gen_env_example.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (PROJECT_ROOT / ".env.example").read_text(encoding="utf-8") == module.render()


def test_a_versions_architecture_is_read_from_its_recorded_settings(tmp_path: Path) -> None:
    from aivj_assets.settings import architecture_change, describe_change, version_settings

    s = load_settings(env={"AIVJ_HIDDEN_DIM": "64"}, env_file=tmp_path / "none")
    meta = {"settings": {**s.public_dict(), "hidden_dim": 512, "model_factory": ""}}
    assert architecture_change(s, meta) == {"hidden_dim": (512, 64)}  # "" and None: no factory both
    assert describe_change(architecture_change(s, meta)) == "hidden_dim 512 -> 64"
    assert version_settings(s, meta).hidden_dim == 512 and version_settings(s, meta).seed == s.seed
    assert architecture_change(s, {}) == {} and version_settings(s, {"metrics": {}}) is s  # not recorded: as now


def test_a_replaced_variable_is_refused_with_what_replaces_it(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("AIVJ_VAL_FRACTION=0.1\n")
    with pytest.raises(ValueError, match="AIVJ_VAL_FRACTION is not read any more: .*AIVJ_GATE_FRACTION"):
        load_settings(env={}, env_file=env_file)


def test_each_channel_gets_its_proxy_from_settings_then_https_proxy_unless_no_proxy(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("https_proxy=http://me:p%40ss@10.0.0.1:7890\nNO_PROXY=smtp.qq.com,localhost\n")
    s = load_settings(env={"AIVJ_SMTP_HOST": "smtp.gmail.com"}, env_file=env_file)
    tg = s.proxy_for("telegram")  # api.telegram.org, through the proxy written only in .env
    assert (tg.host, tg.port, tg.username, tg.password.reveal(), tg.variable) == ("10.0.0.1", 7890, "me", "p@ss", "HTTPS_PROXY")
    assert tg.url.reveal() == "http://me:p%40ss@10.0.0.1:7890"
    assert tg.shown() == "http://***@10.0.0.1:7890 (from HTTPS_PROXY)"
    assert s.proxy_for("smtp").host == "10.0.0.1"
    assert s.replace(smtp_host="smtp.qq.com").proxy_for("smtp") is None  # NO_PROXY names it: direct
    assert {"http://me:p%40ss@10.0.0.1:7890", "p%40ss", "p@ss"} <= set(s.secret_values())

    # The environment wins over .env; a channel's own setting over HTTPS_PROXY; "direct" over both.
    s = load_settings(env={"HTTPS_PROXY": "http://10.0.0.2:3128", "AIVJ_TELEGRAM_PROXY": "127.0.0.1:10809",
                           "AIVJ_SMTP_PROXY": "direct", "AIVJ_SMTP_HOST": "smtp.gmail.com"}, env_file=env_file)
    assert (s.proxy_for("telegram").host, s.proxy_for("telegram").port) == ("127.0.0.1", 10809)
    assert s.proxy_for("smtp") is None
    assert load_settings(env={"HTTPS_PROXY": "http://10.0.0.2:3128", "AIVJ_SMTP_HOST": "smtp.gmail.com"},
                         env_file=env_file).proxy_for("smtp").host == "10.0.0.2"
    assert load_settings(env={}, env_file=tmp_path / "none").proxy_for("telegram") is None


def test_a_socks_proxy_is_refused_naming_the_variable_not_the_password(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="AIVJ_TELEGRAM_PROXY: a socks5 proxy is not supported") as caught:
        load_settings(env={"AIVJ_TELEGRAM_PROXY": "socks5://me:pwSECRET@127.0.0.1:1080"}, env_file=tmp_path / "none")
    assert "pwSECRET" not in str(caught.value)
    # Set machine-wide for other programs, HTTPS_PROXY stops only the channels that would use it.
    s = load_settings(env={"HTTPS_PROXY": "socks5h://me:pwSECRET@127.0.0.1:1080"}, env_file=tmp_path / "none")
    with pytest.raises(ValueError, match="HTTPS_PROXY: a socks5h proxy is not supported") as caught:
        s.proxy_for("telegram")
    assert "pwSECRET" not in str(caught.value) and "pwSECRET" in s.secret_values()
