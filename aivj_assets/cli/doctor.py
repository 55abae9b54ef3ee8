"""``aivj doctor``: one screen of ok / warn / fail lines about this installation, each failure
with its fix; the exit status is 1 when anything failed.

Each check is a small function of the settings returning a :class:`Check`. Checks that need
torch or Dagster import them themselves, so a broken torch fails its own line, not the doctor.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from aivj_assets.data.census import Census, data_census, elite_census, folder_problem, stored_rows
from aivj_assets.ops import probes, telegram
from aivj_assets.ops.probes import FAIL, OK, WARN, Check
from aivj_assets.settings import PROJECT_ROOT, Settings, env_file_path, load_settings
from aivj_assets.settings.env_file import decode_env_bytes
from aivj_assets.settings.window import current_or_next_window, utc_now


def settings_check(settings: Settings) -> Check:
    """Where the settings came from; a .env that Dagster cannot read as the platform does warns."""
    path = env_file_path()
    if not path.is_file():
        return Check(OK, "settings", f"no .env at {path}: defaults and the environment")
    _, encoding = decode_env_bytes(path, path.read_bytes())
    if encoding not in ("utf-8", "utf-8-sig"):
        return Check(WARN, "settings", f"{path} is {encoding.upper()}: aivj reads it, Dagster's reader does not",
                     "save .env as UTF-8 (in PowerShell: Set-Content -Encoding utf8, or Notepad's Save as UTF-8)")
    dagsters = PROJECT_ROOT / ".env"  # every `dagster` command of `aivj up` reads the .env of its folder
    if dagsters.is_file() and dagsters.resolve() != path.resolve():
        return Check(WARN, "settings", f"read from {path}, but Dagster's processes also read {dagsters}",
                     f"keep one .env: remove {dagsters} or make AIVJ_ENV_FILE point at it")
    return Check(OK, "settings", f"read from {path} and the environment")


def _folder_check(label: str, path: Path, census: Callable[[], Census], fix: str) -> Check:
    problem = folder_problem(path)
    if problem:
        return Check(FAIL, label, f"{path}: {problem}", fix)
    found = census()
    if found.unreadable:
        return Check(WARN, label, f"{path}: {found.describe()}; unreadable: {', '.join(found.unreadable[:3])}",
                     "replace or remove the damaged files (ingest reports each file's problem)")
    if not found.files:
        return Check(WARN, label, f"{path}: no data files (.jsonl, .parquet) yet", fix)
    return Check(OK, label, f"{path}: {found.describe()}")


def data_check(settings: Settings) -> Check:
    """The data folder: readable, its files and rows, and what the store has ingested."""
    check = _folder_check("data folder", settings.data_dir, lambda: data_census(settings),
                          "set AIVJ_DATA_DIR to the folder your refined .jsonl / .parquet files land in, "
                          "readable by this user")
    if check.status == FAIL:
        return check
    partitions, rows = stored_rows(settings)
    return Check(check.status, check.label, f"{check.detail}; ingested: {partitions} files, {rows:,} rows", check.fix)


def elite_check(settings: Settings) -> Check:
    """The elite golden-data folder: readable, its files and rows."""
    return _folder_check("elite folder", settings.elite_path, lambda: elite_census(settings),
                         "put the elite golden data (.jsonl / .parquet) in AIVJ_FINAL_ELITE inside the data folder, "
                         "or set AIVJ_ELITE_DIR to its folder")


def _write_problem(folder: Path) -> str | None:
    """Why a file cannot be created in ``folder`` (or, while it does not exist, its nearest
    existing parent, where it would be made), or None. Creates and removes one temp file."""
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        fd, probe = tempfile.mkstemp(prefix=".aivj-doctor-", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        return f"not writable ({exc.strerror or exc.__class__.__name__})"
    return None


def home_check(settings: Settings) -> Check:
    """AIVJ_HOME (models, checkpoints, store): writable, and its free disk."""
    home = settings.home
    problem = _write_problem(home)
    if problem:
        return Check(FAIL, "AIVJ_HOME", f"{home}: {problem}", "set AIVJ_HOME to a folder this user can write: "
                                                               "it holds models, checkpoints and the store")
    existing = home if home.exists() else next(p for p in home.parents if p.exists())
    free = shutil.disk_usage(existing).free / 1e9
    detail = f"{home}: writable{'' if home.exists() else ' (will be created)'}, {free:.1f} GB free"
    if free < settings.disk_min_free_gb:
        return Check(WARN, "AIVJ_HOME", detail, f"free disk space: under {settings.disk_min_free_gb:.0f} GB "
                                                "(AIVJ_DISK_MIN_FREE_GB) only the 3 newest model versions are kept")
    return Check(OK, "AIVJ_HOME", detail)


def instance_check(settings: Settings) -> Check:
    """The Dagster instance in DAGSTER_HOME: its dagster.yaml, and whether its storage opens."""
    home = settings.dagster_home
    if not (home / "dagster.yaml").is_file():
        return Check(WARN, "Dagster", f"no instance yet at {home}", "`aivj up` (or `aivj demo`) creates it")
    from aivj_assets.orchestration.instance import init_storage  # Dagster: only for this check

    try:
        init_storage(home)
    except Exception as exc:  # any storage error: the line says which
        return Check(FAIL, "Dagster", f"{home}: the storage does not open: {exc.__class__.__name__}: {exc}",
                     "stop other Dagster processes of this project, check dagster.yaml there; `aivj reset --yes` "
                     "starts a fresh instance (data files are kept)")
    return Check(OK, "Dagster", f"instance at {home}: storage opens")


def torch_check(settings: Settings) -> Check:
    """torch's version and build, and whether training gets CUDA."""
    try:
        import torch  # only for this check: it takes seconds to load
    except Exception as exc:
        return Check(FAIL, "torch", f"not importable: {exc.__class__.__name__}: {exc}",
                     "reinstall torch in this virtual environment (pytorch.org lists the command for your GPU)")
    build = f"CUDA {torch.version.cuda} build" if torch.version.cuda else "CPU-only build"
    head = f"torch {torch.__version__} ({build})"
    if torch.cuda.is_available():
        return Check(OK, "torch", f"{head}: training on {torch.cuda.get_device_name(0)}")
    if settings.device == "cpu":
        return Check(OK, "torch", f"{head}: training on the CPU (AIVJ_DEVICE=cpu)")
    fix = ("install the CUDA build: pip install torch --index-url https://download.pytorch.org/whl/cu124"
           if not torch.version.cuda else "the CUDA build sees no GPU: install or update the NVIDIA driver")
    if settings.device == "cuda":
        return Check(FAIL, "torch", f"{head}: no CUDA device, but AIVJ_DEVICE=cuda", fix + ", or set AIVJ_DEVICE=cpu")
    return Check(WARN, "torch", f"{head}: no CUDA device, training runs on the CPU", fix)


def export_check(settings: Settings) -> Check:
    """AIVJ_EXPORT_PATH, where the app loads the champion: its folder writable."""
    target = settings.export_path
    if target is None:
        return Check(OK, "export path", "not set (the champion is not copied for the app)")
    if target.is_dir():
        return Check(FAIL, "export path", f"{target} is a folder", "AIVJ_EXPORT_PATH names the weights file the app "
                                                                    "loads, e.g. D:\\aidata\\coupling_net_best.pth")
    problem = _write_problem(target.parent)
    if problem:
        return Check(FAIL, "export path", f"{target}: its folder {target.parent}: {problem}",
                     "create that folder writable by this user, or point AIVJ_EXPORT_PATH elsewhere")
    created = "" if target.parent.exists() else " (will be created)"
    return Check(OK, "export path", f"{target}: folder writable{created}")


def _span(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes // 60} h {minutes % 60} min"


def window_check(settings: Settings, now: datetime | None = None) -> Check:
    """The nightly window in the owner's time zone: open now, or when it next opens (local time)."""
    now = now or utc_now()
    window = current_or_next_window(settings, now)
    tz = ZoneInfo(settings.timezone)
    head = f"{settings.window} {settings.timezone} (now {now.astimezone(tz):%H:%M %Z})"
    if window.contains(now):
        detail = f"{head}: open, closes {window.end:%a %Y-%m-%d %H:%M %Z} (in {_span(window.end - now)})"
    else:
        detail = f"{head}: next opens {window.start:%a %Y-%m-%d %H:%M %Z} (in {_span(window.start - now)})"
    here = now.astimezone().utcoffset()
    if here != now.astimezone(tz).utcoffset():
        detail += f"; this PC's clock runs at UTC{now.astimezone():%z}, the window follows {settings.timezone}"
    return Check(OK, "window", detail)


def _checks(settings: Settings, send_test: bool) -> list[Callable[[], Check | list[Check]]]:
    return [lambda: settings_check(settings), lambda: data_check(settings), lambda: elite_check(settings),
            lambda: home_check(settings), lambda: instance_check(settings), lambda: torch_check(settings),
            lambda: probes.gpu_check(settings), lambda: probes.telegram_checks(settings),
            lambda: probes.email_check(settings, send_test), lambda: export_check(settings),
            lambda: window_check(settings)]


def run_checks(settings: Settings, send_test: bool = False) -> list[Check]:
    """Every check's lines; one that breaks becomes a fail line instead of stopping the others."""
    lines: list[Check] = []
    for check in _checks(settings, send_test):
        try:
            found = check()
        except Exception as exc:
            found = Check(FAIL, "doctor", f"a check broke: {exc.__class__.__name__}: {exc}", "report this as a bug")
        lines += found if isinstance(found, list) else [found]
    return lines


def render(lines: list[Check], scrub: Callable[[str], str] = lambda s: s) -> str:
    """The screen: one line per check, its fix under each warning and failure, then the totals."""
    out = []
    for line in lines:
        out.append(f"{line.status:<5} {line.label:<14} {scrub(line.detail)}")
        if line.fix and line.status != OK:
            out.append(f"{'':<20}fix: {scrub(line.fix)}")
    counts = {s: sum(line.status == s for line in lines) for s in (OK, WARN, FAIL)}
    out.append(f"{counts[OK]} ok, {counts[WARN]} warn, {counts[FAIL]} fail")
    return "\n".join(out)


def settings_failure(error: ValueError) -> Check:
    """The line for settings that do not load: the error names the variable (or the .env line)."""
    named = re.match(r"settings? (\w+)", str(error))
    what = named.group(1) if named else "that line"
    return Check(FAIL, "settings", str(error), f"correct {what} in {env_file_path()} or in the environment; "
                                               "the other checks run once the settings load")


def run_doctor(send_test: bool = False) -> int:
    """Print the doctor's screen; 1 if any check failed, else 0."""
    try:
        settings = load_settings()
    except ValueError as exc:  # settings that do not load are the doctor's first finding
        print(render([settings_failure(exc)]))
        return 1
    lines = run_checks(settings, send_test)
    print(render(lines, lambda text: telegram.scrub(text, settings)))
    return 1 if any(line.status == FAIL for line in lines) else 0
