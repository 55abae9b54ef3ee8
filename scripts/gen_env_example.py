"""Regenerate .env.example from aivj_assets/settings/config.py, so the two never drift apart."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from aivj_assets.settings import PROJECT_ROOT, Settings, env_name

SECTIONS = {
    "data_dir": "Places",
    "audio_field": "Data contract and ingest",
    "model_factory": "Training",
    "elite_min_accuracy": "Quality gates and policies",
    "timezone": "Nightly window",
    "ram_max_percent": "Resource watch",
    "telegram_token": "Notifications (Telegram, email)",
}
SHOWN_DEFAULTS = {"data_dir": "./data", "home": ".", "dagster_home": "./.dagster_home"}


def render() -> str:
    """The text of .env.example: every setting, commented out, at its default."""
    lines = [
        "# Copy to .env and edit. Every setting of aivj_assets/settings/config.py, with its default.",
        "# Real environment variables win over this file. Read by python-dotenv, as every `dagster`",
        "# command reads it: write Windows paths unquoted or in 'single quotes' (inside double quotes",
        "# \\n, \\t and \\a become control characters). A comment may follow a value after a space",
        "# (KEY=value   # note); put a value holding #, spaces or ${ in single quotes (a password, say).",
    ]
    defaults = Settings()
    for f in fields(Settings):
        if f.name == "extra":
            continue
        if f.name in SECTIONS:
            lines += ["", f"# --- {SECTIONS[f.name]} ---"]
        value = SHOWN_DEFAULTS.get(f.name, getattr(defaults, f.name))
        if f.name == "elite_dir":
            lines.append(f"# {env_name(f.name)}=   (default: <data>/AIVJ_FINAL_ELITE)")
            continue
        if f.name == "export_path":
            lines.append(f"# {env_name(f.name)}=   (the file the app loads, e.g. D:\\aidata\\coupling_net_best.pth; "
                         f"empty: no export)")
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        lines.append(f"# {env_name(f.name)}={'' if value is None else value}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    Path(PROJECT_ROOT / ".env.example").write_text(render(), encoding="utf-8")
