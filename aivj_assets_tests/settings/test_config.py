"""Settings: defaults, .env, environment precedence, secrets masked."""

from __future__ import annotations

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


def test_secrets_never_show(tmp_path: Path) -> None:
    s = load_settings(
        env={"TELEGRAM_TOKEN": "123:SECRETTOKEN", "AIVJ_SMTP_PASSWORD": "hunter2"}, env_file=tmp_path / "none"
    )
    assert isinstance(s.telegram_token, Secret)
    assert s.telegram_token.reveal() == "123:SECRETTOKEN"
    for text in (repr(s), str(s), f"{s.telegram_token}", str(s.public_dict()), "%s" % s.smtp_password):  # noqa: UP031
        assert "SECRETTOKEN" not in text and "hunter2" not in text



def test_a_malformed_env_line_is_named_by_its_number_not_its_content(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    # A space instead of '=', and a quoted password broken over two lines.
    for text, lineno in (("AIVJ_SEED=1\nTELEGRAM_TOKEN 123456:SECRETTOKEN\n", 2),
                         ("AIVJ_SMTP_PASSWORD='hun\nter2'\n", 1)):
        env_file.write_text(text)
        with pytest.raises(ValueError) as caught:
            load_settings(env={}, env_file=env_file)
        assert f"{env_file}:{lineno}: " in str(caught.value)
        assert "SECRET" not in str(caught.value) and "hun" not in str(caught.value) and "ter2" not in str(caught.value)


def test_env_file_as_the_readme_shows_it_and_as_windows_saves_it(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    text = ("AIVJ_DATA_DIR=D:\\aidata\n"
            "TELEGRAM_CHAT_ID=123456789            # your chat with the bot\n"
            "AIVJ_SMTP_STARTTLS=true               # or AIVJ_SMTP_SSL=true for port 465\n"
            "AIVJ_SMTP_PASSWORD='p#ss word'  # quoted: kept whole\n"
            "AIVJ_SMTP_USER=me#1@example.com\n"  # '#' inside an unquoted value is not a comment
            "AIVJ_SMTP_FROM=\"AIVJ bot\" <bot@example.com>\n"  # text after the quotes: as written
            "AIVJ_SMTP_TO='it's'\n")  # quoted as a whole
    expected = {"AIVJ_DATA_DIR": "D:\\aidata", "TELEGRAM_CHAT_ID": "123456789", "AIVJ_SMTP_STARTTLS": "true",
                "AIVJ_SMTP_PASSWORD": "p#ss word", "AIVJ_SMTP_USER": "me#1@example.com",
                "AIVJ_SMTP_FROM": '"AIVJ bot" <bot@example.com>', "AIVJ_SMTP_TO": "it's"}
    for encoding in ("utf-8", "utf-8-sig", "utf-16"):  # Notepad's BOM; PowerShell 5.1's `echo ... > .env`
        env_file.write_bytes(text.encode(encoding))
        assert read_env_file(env_file) == expected, encoding
    env_file.write_bytes(b"AIVJ_SEED=\xff\xfe7\n"[:-1] + b"\x80\n")
    with pytest.raises(ValueError, match=f"{env_file}: not UTF-8 text"):
        read_env_file(env_file)


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
