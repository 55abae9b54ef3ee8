"""Every path, threshold and window of the platform in one typed place.

Each field can be set by an environment variable ``AIVJ_<NAME>`` (upper case), or by
the owner's own names where DESIGN fixes them (``TELEGRAM_TOKEN``, ``TELEGRAM_CHAT_ID``), or
by the usual names of proxies (``HTTPS_PROXY``, ``NO_PROXY``). A ``.env`` file at the project root (or at
``AIVJ_ENV_FILE``) is read first, by python-dotenv as Dagster reads it (``env_file.py``); real
environment variables win over it. This module imports no Dagster.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field, fields
from datetime import time as dtime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from aivj_assets.settings.env_file import read_env_file
from aivj_assets.settings.proxy import DIRECT, Proxy, choose_proxy, login_texts, parse_proxy
from aivj_assets.settings.secret import Secret

PROJECT_ROOT = Path(__file__).resolve().parents[2]


# Variables that no setting reads, and what says it instead: an owner's .env that still sets one
# is refused, so the value is not silently ignored.
REPLACED = {
    "AIVJ_VAL_FRACTION": "rows are split three ways; set AIVJ_SELECTION_FRACTION (picks the best epoch) and "
                         "AIVJ_GATE_FRACTION (judges candidates) instead",
}

# Fields whose variable is not AIVJ_<NAME>: the owner's existing names.
_ENV_NAMES = {
    "telegram_token": "TELEGRAM_TOKEN",
    "telegram_chat_id": "TELEGRAM_CHAT_ID",
    "dagster_home": "DAGSTER_HOME",
    "https_proxy": "HTTPS_PROXY",
    "no_proxy": "NO_PROXY",
}
# Lower-case names read too (first, as urllib and requests do): the proxy variables' usual spelling.
_ALSO_NAMES = {"https_proxy": "https_proxy", "no_proxy": "no_proxy"}


@dataclass(frozen=True)
class Settings:
    """The platform's configuration; build it with :func:`load_settings`."""

    # --- places -------------------------------------------------------------------
    data_dir: Path = PROJECT_ROOT / "data"
    elite_dir: Path | None = None  # default: <data_dir>/AIVJ_FINAL_ELITE
    home: Path = PROJECT_ROOT  # holds models/, checkpoints/, store/, training_report.json
    dagster_home: Path = PROJECT_ROOT / ".dagster_home"
    # Where the app loads the champion (e.g. D:\aidata\coupling_net_best.pth): every promotion and
    # rollback writes it there, atomically, in the imported model's format. Empty: no export.
    export_path: Path | None = None

    # --- data contract --------------------------------------------------------------
    audio_field: str = "audio"
    preset_field: str = "preset"
    label_field: str = "label"
    pair_id_field: str = "pair_id"
    weight_field: str = "weight"
    # Every row lands, by its content hash, in one of three parts: training, selection (picks
    # the best epoch, drives the in-training rules) and gate (read only to judge candidate
    # against champion). The demo's 104,040 pairs give about 10,400 gate rows.
    selection_fraction: float = 0.05
    gate_fraction: float = 0.10
    elite_judge_fraction: float = 0.5  # share of elite rows held out for judging
    settle_seconds: float = 3.0  # a file must stay unchanged this long before ingest
    sensor_interval_seconds: int = 30
    sensor_max_files_per_tick: int = 200
    sensor_max_bytes_per_tick: int = 512 * 1024 * 1024
    bad_row_share_max: float = 0.05  # warning check on raw_pairs
    label_balance_min: float = 0.1  # minority-label share under this warns
    drift_psi_max: float = 0.25  # population stability index over this warns

    # --- training -----------------------------------------------------------------
    model_factory: str = ""  # "package.module:function" to replace CouplingNet
    hidden_dim: int = 512
    embed_dim: int = 256
    warmup_epochs: int = 2
    full_epochs: int = 8
    incremental_epochs: int = 3
    replay_ratio: float = 1.0  # old rows replayed per new row in incremental training
    seed: int = 0
    batch_size: int = 512
    learning_rate: float = 1e-3
    weight_decay: float = 1e-2
    device: str = "auto"  # auto | cpu | cuda
    bf16: bool = False
    checkpoint_every: int = 500
    checkpoint_keep: int = 5
    control_poll_seconds: float = 2.0  # how often the loop asks whether to go on

    # --- gates and policies -------------------------------------------------------
    elite_min_accuracy: float = 0.95
    val_min_accuracy: float = 0.90
    # How a candidate beats the champion: "paired" (exact one-sided McNemar on the gate rows at
    # promote_alpha, and not significantly worse on the elite judging rows) or "elite_ratio" (the
    # seed's rule: elite > champion x beat_elite_factor and validation > champion's).
    beat_rule: str = "paired"
    promote_alpha: float = 0.05
    # Points of accuracy a candidate must beat the champion by (significantly): a smaller true
    # gain is not worth changing the app's model (benchmarks/gates.py measures why).
    promote_min_gain: float = 0.1
    beat_elite_factor: float = 1.01
    max_ece: float = 0.05  # expected calibration error (15 bins) over this warns
    slice_min_rows: int = 500  # a source file with this many gate rows is judged on its own
    slice_max_drop: float = 2.0  # points of accuracy a file may lose against the champion
    drift_drop: float = 3.0  # points below the trailing mean of recent files' champion accuracy
    drift_window: int = 10  # how many recent files make that trailing mean
    val_loss_rise_epochs: int = 3
    loss_change_max: float = 0.5
    nan_max_recoveries: int = 3
    worsen_epochs: int = 2
    val_drop_alert: float = 0.10
    min_improvement: float = 0.005
    full_every_days: int = 7
    keep_versions: int = 5
    keep_versions_low_disk: int = 3
    run_retries: int = 3

    # --- window -------------------------------------------------------------------
    timezone: str = "Asia/Shanghai"
    window: str = "02:00-06:00"

    # --- resources ----------------------------------------------------------------
    ram_max_percent: float = 85.0
    cpu_max_percent: float = 90.0
    cpu_sustain_seconds: int = 300
    disk_min_free_gb: float = 5.0
    gpu_temp_hot: float = 83.0
    gpu_temp_cool: float = 75.0
    gpu_mem_max_fraction: float = 0.95

    # --- notifications ------------------------------------------------------------
    telegram_token: Secret = Secret("")
    telegram_chat_id: str = ""
    telegram_api: str = "https://api.telegram.org"
    telegram_allowed_users: str = ""  # comma-separated user ids; default: the chat's owner
    smtp_host: str = ""
    smtp_port: int = 587
    smtp_user: str = ""
    smtp_password: Secret = Secret("")
    smtp_from: str = ""
    smtp_to: str = ""
    smtp_starttls: bool = True
    smtp_ssl: bool = False
    notify_min_interval_seconds: float = 2.0
    # An HTTP proxy (http://[user:password@]host:port) for the Bot API, and for SMTP (through a
    # CONNECT tunnel). Empty: HTTPS_PROXY, from the environment or .env, unless NO_PROXY names the
    # host; "direct": no proxy whatever HTTPS_PROXY says. SOCKS proxies are refused.
    telegram_proxy: Secret = Secret("")
    smtp_proxy: Secret = Secret("")
    https_proxy: Secret = Secret("")
    no_proxy: str = ""

    extra: dict[str, str] = field(default_factory=dict, repr=False)

    # --- derived places -----------------------------------------------------------
    @property
    def elite_path(self) -> Path:
        """The elite golden-data folder."""
        return self.elite_dir if self.elite_dir is not None else self.data_dir / "AIVJ_FINAL_ELITE"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def checkpoints_dir(self) -> Path:
        return self.home / "checkpoints"

    @property
    def store_dir(self) -> Path:
        return self.home / "store"

    @property
    def report_path(self) -> Path:
        return self.home / "training_report.json"

    @property
    def state_dir(self) -> Path:
        """Small durable state files (pause flag, notifier dedup)."""
        return self.home / "state"

    @property
    def window_bounds(self) -> tuple[dtime, dtime]:
        """The nightly window's start and end as local times in ``timezone``."""
        start, end = (part.strip() for part in self.window.split("-", 1))
        return dtime.fromisoformat(start), dtime.fromisoformat(end)

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (used for per-run overrides and tests)."""
        return dataclasses.replace(self, **changes)

    def proxy_for(self, channel: str) -> Proxy | None:
        """The HTTP proxy of ``channel`` ("telegram" or "smtp"), None for a direct connection;
        ValueError (naming the variable, never the login) for one that cannot be used."""
        own = {"telegram": "telegram_proxy", "smtp": "smtp_proxy"}[channel]
        host = (urlsplit(self.telegram_api).hostname or "") if channel == "telegram" else self.smtp_host
        return choose_proxy(host, (env_name(own), getattr(self, own).reveal()),
                            (env_name("https_proxy"), self.https_proxy.reveal()), self.no_proxy)

    def secret_values(self) -> list[str]:
        """The text of every secret, and of a proxy URL's login: what error messages are scrubbed of."""
        texts = [self.telegram_token.reveal(), self.smtp_password.reveal()]
        for proxy in (self.telegram_proxy, self.smtp_proxy, self.https_proxy):
            texts += login_texts(proxy.reveal())
        # Longest first: a password inside a URL must not be starred before the URL is.
        return sorted({t for t in texts if t}, key=len, reverse=True)

    def public_dict(self) -> dict[str, Any]:
        """Every setting as plain values, secrets masked: safe for metadata and logs."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                value = "********" if value else ""
            elif isinstance(value, Path):
                value = str(value)
            out[f.name] = value
        return out


def env_name(field_name: str) -> str:
    """The environment variable that sets ``field_name``."""
    return _ENV_NAMES.get(field_name, "AIVJ_" + field_name.upper())


def _to_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true/false")


def _to_path(raw: str) -> Path:
    if any(ord(c) < 32 for c in raw):
        # What python-dotenv makes of "D:\aidata\new": \a and \n become a bell and a line break.
        raise ValueError("the path holds a control character: in .env, double quotes turn \\a, \\n, \\t... "
                         "into control characters; write a Windows path unquoted or in single quotes")
    return Path(raw).expanduser()


_CONVERTERS: dict[Any, Any] = {bool: _to_bool, int: int, float: float, Path: _to_path, Secret: Secret}


def _parse(name: str, annotation: Any, raw: str) -> Any:
    hint = annotation
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        if raw.strip() == "":
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    try:
        return _CONVERTERS.get(hint, str)(raw)
    except ValueError as exc:
        shown = "(hidden)" if hint is Secret else repr(raw)
        raise ValueError(f"setting {env_name(name)}={shown}: {exc}") from None


def env_file_path(environ: dict[str, str] | None = None) -> Path:
    """The ``.env`` file settings are read from: ``AIVJ_ENV_FILE``, else the project root's."""
    environ = dict(os.environ) if environ is None else environ
    return Path(environ.get("AIVJ_ENV_FILE", PROJECT_ROOT / ".env"))


def _raw_values(environ: dict[str, str], from_file: dict[str, str]) -> dict[str, str]:
    """{field: its text}: the environment wins over ``.env``; within one, a lower-case proxy
    variable over its upper-case spelling."""
    out: dict[str, str] = {}
    for f in fields(Settings):
        names = [n for n in (_ALSO_NAMES.get(f.name), env_name(f.name)) if n]
        for source in (environ, from_file):
            found = next((source[n] for n in names if n in source), None)
            if found is not None:
                out[f.name] = found
                break
    out.pop("extra", None)
    return out


def load_settings(env: dict[str, str] | None = None, env_file: Path | None = None, **overrides: Any) -> Settings:
    """Settings from defaults, then ``.env``, then the environment, then ``overrides``."""
    environ = dict(os.environ) if env is None else dict(env)
    from_file = read_env_file(env_file if env_file is not None else env_file_path(environ))
    for name, instead in REPLACED.items():
        if name in from_file or name in environ:
            raise ValueError(f"setting {name} is not read any more: {instead}")
    hints = typing.get_type_hints(Settings)
    values: dict[str, Any] = {name: _parse(name, hints[name], raw) for name, raw in _raw_values(environ, from_file).items()}
    values.update(overrides)
    settings = Settings(**values)
    # Relative paths are taken from the project root, so the CLI and the daemon agree.
    for key in ("data_dir", "home", "dagster_home", "elite_dir", "export_path"):
        value = getattr(settings, key)
        if isinstance(value, Path) and not value.is_absolute():
            settings = settings.replace(**{key: (PROJECT_ROOT / value).resolve()})
    _check_window(settings)
    _check_judging(settings)
    _check_proxies(settings)
    return settings


def _check_proxies(settings: Settings) -> None:
    """Refuse a channel's own proxy setting that cannot be used (a SOCKS proxy, no host). A bad
    HTTPS_PROXY is refused only by the channels that would use it: it may be set machine-wide
    for other programs, and must not stop `aivj pause`."""
    for name in ("telegram_proxy", "smtp_proxy"):
        raw = getattr(settings, name).reveal()
        if raw.strip() and raw.strip().lower() != DIRECT:
            parse_proxy(raw, env_name(name))


def _check_judging(settings: Settings) -> None:
    """Refuse split sizes that leave a part empty and a significance level no test can use."""
    s = settings
    if not 0 < s.promote_alpha <= 1:
        raise ValueError(f"setting AIVJ_PROMOTE_ALPHA={s.promote_alpha}: must be in (0, 1] (e.g. 0.05)")
    for name in ("selection_fraction", "gate_fraction"):
        if not 0 < getattr(s, name) < 1:
            raise ValueError(f"setting {env_name(name)}={getattr(s, name)}: must be between 0 and 1, "
                             "exclusive (an empty part cannot do its job)")
    if s.selection_fraction + s.gate_fraction >= 1:
        raise ValueError(f"settings AIVJ_SELECTION_FRACTION={s.selection_fraction} and AIVJ_GATE_FRACTION="
                         f"{s.gate_fraction} leave no training rows: their sum must be under 1")
    if not 0 < s.elite_judge_fraction < 1:
        raise ValueError(f"setting AIVJ_ELITE_JUDGE_FRACTION={s.elite_judge_fraction}: must be between 0 and 1, "
                         "exclusive (the elite set needs a warm-up part and a judging part)")
    if not 0 <= s.promote_min_gain < 100:
        raise ValueError(f"setting AIVJ_PROMOTE_MIN_GAIN={s.promote_min_gain}: points of accuracy, 0 or more "
                         "(0 asks only for a significant gain)")
    if s.beat_rule not in BEAT_RULES:
        raise ValueError(f"setting AIVJ_BEAT_RULE={s.beat_rule!r}: expected one of {', '.join(BEAT_RULES)}")


BEAT_RULES = ("paired", "elite_ratio")


def _check_window(settings: Settings) -> None:
    """Refuse a window or time zone the schedule could not use, naming the variable (else the
    code location fails to load, and with it every sensor and the schedule)."""
    try:
        settings.window_bounds  # noqa: B018  (parses the window)
    except ValueError:
        raise ValueError(f"setting AIVJ_WINDOW={settings.window!r}: expected HH:MM-HH:MM, e.g. 02:00-06:00") from None
    try:
        ZoneInfo(settings.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"setting AIVJ_TIMEZONE={settings.timezone!r}: not a known time zone "
                         "(an IANA name such as Asia/Shanghai or Europe/Berlin)") from None


ARCHITECTURE = ("hidden_dim", "embed_dim", "model_factory")  # the settings that shape the weights


def architecture_change(settings: Settings, meta: dict[str, Any] | None) -> dict[str, tuple[Any, Any]]:
    """{setting: (the version's value, the settings' value)} for each architecture setting that
    differs between a version's recorded settings (``meta["settings"]``) and ``settings``."""
    recorded = (meta or {}).get("settings") or {}
    return {k: (recorded[k], getattr(settings, k)) for k in ARCHITECTURE
            if k in recorded and (recorded[k] or None) != (getattr(settings, k) or None)}


def version_settings(settings: Settings, meta: dict[str, Any] | None) -> Settings:
    """``settings`` with the architecture a registered version was trained with, so its weights
    load whatever the settings say now (an older champion judged against a new candidate)."""
    change = architecture_change(settings, meta)
    return settings.replace(**{k: old for k, (old, _) in change.items()}) if change else settings


def describe_change(change: dict[str, tuple[Any, Any]]) -> str:
    return ", ".join(f"{k} {old} -> {new}" for k, (old, new) in change.items())
