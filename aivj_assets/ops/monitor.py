"""System readings (NVML for GPUs, psutil for RAM/CPU/disk) and the verdicts on them.

No Dagster here. ``SystemMonitor.read()`` never raises for a missing GPU or driver: it
reports "no NVIDIA GPU" and the other readings. Tests inject readings through
``SystemMonitor(settings, source=...)``.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from aivj_assets.settings import Settings

log = logging.getLogger("aivj.monitor")


@dataclass(frozen=True)
class GpuReading:
    index: int
    name: str
    memory_used: int  # bytes
    memory_total: int  # bytes
    temperature: float  # degrees C
    utilization: float  # percent

    @property
    def memory_fraction(self) -> float:
        return self.memory_used / self.memory_total if self.memory_total else 0.0


@dataclass(frozen=True)
class Readings:
    ram_percent: float
    cpu_percent: float
    disk_free_gb: dict[str, float]  # volume label (data, models, checkpoints) -> free GB
    gpus: list[GpuReading] = field(default_factory=list)
    gpu_note: str = ""  # why there are no GPU readings, e.g. "no NVIDIA GPU (...)"

    def as_dict(self) -> dict[str, Any]:
        """Plain values, for metadata, cursors and messages."""
        return asdict(self)

    def summary(self) -> str:
        """One short line per resource, for /status and alerts."""
        lines = [f"RAM {self.ram_percent:.0f}%  CPU {self.cpu_percent:.0f}%"]
        lines.append("disk free: " + ", ".join(f"{k} {v:.1f} GB" for k, v in self.disk_free_gb.items()))
        for g in self.gpus:
            lines.append(
                f"GPU{g.index} {g.name}: {g.temperature:.0f}°C, {g.utilization:.0f}% busy, "
                f"memory {g.memory_used / 2**30:.1f}/{g.memory_total / 2**30:.1f} GiB"
            )
        if not self.gpus:
            lines.append(self.gpu_note or "no NVIDIA GPU")
        return "\n".join(lines)


_nvml_lock = threading.Lock()
_nvml_ready: bool | None = None
_nvml_note = ""
_nvml_checked_at = 0.0
NVML_RETRY_SECONDS = 60.0  # a failed nvmlInit is tried again after this (a driver that was busy)


def _import_nvml() -> Any:
    # Imported here, inside read_gpus' guard: a missing or broken NVML package means "no GPU".
    import pynvml  # nvidia-ml-py

    return pynvml


def read_gpus(nvml_loader: Callable[[], Any] = _import_nvml) -> tuple[list[GpuReading], str]:
    """Per-GPU readings through NVML, or ``([], "no NVIDIA GPU (reason)")``."""
    global _nvml_ready, _nvml_note, _nvml_checked_at
    try:
        nvml = nvml_loader()
    except Exception as exc:  # package missing or broken: keep working without GPUs
        return [], f"no NVIDIA GPU (NVML not available: {exc.__class__.__name__})"
    with _nvml_lock:
        stale = _nvml_ready is False and time.monotonic() - _nvml_checked_at > NVML_RETRY_SECONDS
        if nvml_loader is not _import_nvml or _nvml_ready is None or stale:
            try:
                nvml.nvmlInit()
                ready, note = True, ""
            except Exception as exc:  # no driver, no device
                ready, note = False, f"no NVIDIA GPU ({exc})"
            if nvml_loader is _import_nvml:  # remember for the real library only
                _nvml_ready, _nvml_note, _nvml_checked_at = ready, note, time.monotonic()
        else:
            ready, note = _nvml_ready, _nvml_note
    if not ready:
        return [], note
    try:
        count = nvml.nvmlDeviceGetCount()
    except Exception as exc:
        return [], f"no NVIDIA GPU readings ({exc})"
    gpus, missing = [], []

    def field(i: int, what: str, read: Callable[[], Any], default: Any) -> Any:
        # One query a device does not support (utilisation under MIG, say) must not throw
        # away the others: the temperature and memory readings are what pauses training.
        try:
            return read()
        except Exception:
            missing.append(f"GPU{i} {what}")
            return default

    for i in range(count):
        try:
            h = nvml.nvmlDeviceGetHandleByIndex(i)
        except Exception:
            missing.append(f"GPU{i}")
            continue
        mem = field(i, "memory", lambda h=h: nvml.nvmlDeviceGetMemoryInfo(h), None)
        name = field(i, "name", lambda h=h: nvml.nvmlDeviceGetName(h), "GPU")
        gpus.append(GpuReading(
            index=i,
            name=name.decode() if isinstance(name, bytes) else str(name),
            memory_used=int(mem.used) if mem is not None else 0,
            memory_total=int(mem.total) if mem is not None else 0,
            temperature=float(field(i, "temperature",
                                    lambda h=h: nvml.nvmlDeviceGetTemperature(h, nvml.NVML_TEMPERATURE_GPU), float("nan"))),
            utilization=float(field(i, "utilization", lambda h=h: nvml.nvmlDeviceGetUtilizationRates(h).gpu, float("nan"))),
        ))
    note = f"not reported: {', '.join(missing)}" if missing else ""
    return gpus, note if gpus else (note or "no NVIDIA GPU (driver reports 0 devices)")


def _free_gb(path: Path) -> float | None:
    """Free space on ``path``'s volume; None when it cannot be read (an unplugged drive)."""
    # The folder may not exist yet: measure the nearest existing parent (same volume).
    p = path
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return shutil.disk_usage(p).free / 1e9
    except OSError:
        return None


def read_system(settings: Settings, cpu_interval: float = 0.5) -> Readings:
    """Real readings: psutil for RAM, CPU (averaged over ``cpu_interval``) and disk, NVML for GPUs."""
    gpus, note = read_gpus()
    volumes = {"data": settings.data_dir, "models": settings.models_dir, "checkpoints": settings.checkpoints_dir}
    return Readings(
        ram_percent=float(psutil.virtual_memory().percent),
        cpu_percent=float(psutil.cpu_percent(interval=cpu_interval)),
        disk_free_gb={name: round(free, 2) for name, path in volumes.items() if (free := _free_gb(path)) is not None},
        gpus=gpus,
        gpu_note=note,
    )


class SystemMonitor:
    """Reads the machine; ``source`` replaces the real read (tests inject readings)."""

    def __init__(self, settings: Settings, source: Callable[[], Readings] | None = None) -> None:
        self.settings = settings
        self._source = source

    def read(self) -> Readings:
        """Current readings; never raises for a missing GPU."""
        if self._source is not None:
            return self._source()
        return read_system(self.settings)

    def read_gpus_only(self) -> Readings:
        """GPU readings without the CPU sampling delay (the training loop asks every few seconds)."""
        if self._source is not None:
            return self._source()
        gpus, note = read_gpus()
        return Readings(ram_percent=0.0, cpu_percent=0.0, disk_free_gb={}, gpus=gpus, gpu_note=note)


def gpu_pressure(settings: Settings, readings: Readings, was_hot: bool) -> str | None:
    """Why training should pause for the GPU, or None; hysteresis: once hot, it stays hot
    until every GPU is under ``gpu_temp_cool`` and 5 points under the memory limit."""
    temp_limit = settings.gpu_temp_cool if was_hot else settings.gpu_temp_hot
    mem_limit = settings.gpu_mem_max_fraction - (0.05 if was_hot else 0.0)
    for g in readings.gpus:
        if g.temperature >= temp_limit if was_hot else g.temperature > temp_limit:
            return f"GPU{g.index} at {g.temperature:.0f}°C (hot over {settings.gpu_temp_hot:.0f}, cool under {settings.gpu_temp_cool:.0f})"
        if g.memory_fraction >= mem_limit if was_hot else g.memory_fraction > mem_limit:
            return f"GPU{g.index} memory {g.memory_fraction:.0%} full (limit {settings.gpu_mem_max_fraction:.0%})"
    return None


@dataclass
class WatchOutcome:
    """What one resource_watch tick decided."""

    state: dict[str, Any]
    messages: list[tuple[str, str]]  # (event, text): "resource_alert" or "resource_clear"
    low_disk_started: bool  # a low-disk episode began now: run registry retention


CLEAR_MARGIN = 5.0  # percentage points under the RAM or CPU limit that end an episode
DISK_CLEAR_MARGIN_GB = 1.0  # free space over the disk limit that ends a low-disk episode


def watch_resources(settings: Settings, readings: Readings, state: dict[str, Any], now: float) -> WatchOutcome:
    """Advance the alert episodes kept in ``state`` (a sensor cursor): one message when an
    episode starts and one when it clears, never one per tick. ``now`` is a Unix time."""
    prev = {"ram": False, "cpu": False, "cpu_high_since": None, "disk": {}, **state}
    new: dict[str, Any] = {"ram": prev["ram"], "cpu": prev["cpu"], "cpu_high_since": None, "disk": {}}
    messages: list[tuple[str, str]] = []

    # Hysteresis: an episode ends only CLEAR_MARGIN points under its limit, so a reading that
    # hovers around the limit makes one alert, not one per tick (which would also use up the
    # notifier's hourly cap and crowd out a run-failure alert).
    ram_limit = settings.ram_max_percent - (CLEAR_MARGIN if prev["ram"] else 0.0)
    ram_high = readings.ram_percent > ram_limit
    if ram_high != prev["ram"]:
        messages.append(
            ("resource_alert", f"RAM over {settings.ram_max_percent:.0f}%: {readings.ram_percent:.0f}% used")
            if ram_high else
            ("resource_clear", f"RAM back under {ram_limit:.0f}%: {readings.ram_percent:.0f}% used")
        )
    new["ram"] = ram_high

    cpu_high_now = readings.cpu_percent > settings.cpu_max_percent
    cpu_still_high = readings.cpu_percent > settings.cpu_max_percent - CLEAR_MARGIN
    since = prev["cpu_high_since"] if cpu_high_now else None
    if cpu_high_now and since is None:
        since = now
    new["cpu_high_since"] = since
    cpu_alarm = cpu_high_now and now - since >= settings.cpu_sustain_seconds
    # Once alarmed, the episode lasts until the CPU is CLEAR_MARGIN points under the limit.
    cpu_episode = cpu_alarm or (prev["cpu"] and cpu_still_high)
    if cpu_episode != prev["cpu"]:
        if cpu_episode:
            minutes = settings.cpu_sustain_seconds / 60
            messages.append(("resource_alert", f"CPU over {settings.cpu_max_percent:.0f}% for {minutes:.0f} min: {readings.cpu_percent:.0f}% now"))
        else:
            messages.append(("resource_clear", f"CPU back under {settings.cpu_max_percent - CLEAR_MARGIN:.0f}%: {readings.cpu_percent:.0f}% now"))
    new["cpu"] = cpu_episode

    low_disk_started = False
    for volume, free in readings.disk_free_gb.items():
        was_low = bool(prev["disk"].get(volume, False))
        low = free < settings.disk_min_free_gb + (DISK_CLEAR_MARGIN_GB if was_low else 0.0)
        if low and not was_low:
            low_disk_started = True
            messages.append(("resource_alert", f"disk for {volume}: {free:.1f} GB free, under {settings.disk_min_free_gb:.0f} GB (old model versions will be pruned)"))
        elif was_low and not low:
            messages.append(("resource_clear", f"disk for {volume}: {free:.1f} GB free again"))
        new["disk"][volume] = low
    return WatchOutcome(new, messages, low_disk_started)
