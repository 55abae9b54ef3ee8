"""System monitor: thresholds and hysteresis on injected readings, a real psutil read, no NVML."""

from __future__ import annotations

from aivj_assets.ops.monitor import (
    GpuReading,
    Readings,
    SystemMonitor,
    gpu_pressure,
    read_gpus,
    read_system,
    watch_resources,
)

GiB = 2**30


def _gpu(temp: float, used_gib: float = 2.0) -> GpuReading:
    return GpuReading(index=0, name="Test GPU", memory_used=int(used_gib * GiB), memory_total=24 * GiB,
                      temperature=temp, utilization=97.0)


def _readings(ram: float = 40.0, cpu: float = 20.0, disk: float = 100.0, gpus=()) -> Readings:
    return Readings(ram_percent=ram, cpu_percent=cpu, disk_free_gb={"data": disk, "models": 200.0},
                    gpus=list(gpus))


def test_gpu_temperature_hysteresis(aivj_env) -> None:
    s = aivj_env.replace(gpu_temp_hot=83.0, gpu_temp_cool=75.0)
    assert gpu_pressure(s, _readings(gpus=[_gpu(83.0)]), was_hot=False) is None  # at the limit: fine
    assert "84°C" in gpu_pressure(s, _readings(gpus=[_gpu(84.0)]), was_hot=False)
    # Once hot, 80°C is still too hot: training waits until under the cool threshold.
    assert gpu_pressure(s, _readings(gpus=[_gpu(80.0)]), was_hot=True) is not None
    assert gpu_pressure(s, _readings(gpus=[_gpu(75.0)]), was_hot=True) is not None
    assert gpu_pressure(s, _readings(gpus=[_gpu(74.0)]), was_hot=True) is None


def test_gpu_memory_nearly_full_pauses_with_hysteresis(aivj_env) -> None:
    s = aivj_env.replace(gpu_mem_max_fraction=0.95)
    assert "memory 96% full" in gpu_pressure(s, _readings(gpus=[_gpu(60, used_gib=23.1)]), was_hot=False)
    assert gpu_pressure(s, _readings(gpus=[_gpu(60, used_gib=22.0)]), was_hot=True) is not None  # 92%
    assert gpu_pressure(s, _readings(gpus=[_gpu(60, used_gib=21.0)]), was_hot=True) is None  # 87.5%


def test_ram_alert_once_per_episode_and_once_when_clear(aivj_env) -> None:
    state: dict = {}
    sent = []
    # Hovering around the limit (84-86%) is one episode: it ends only 5 points under it.
    for t, ram in enumerate([50, 90, 91, 84, 86, 84, 86, 81, 79, 70, 88]):
        out = watch_resources(aivj_env, _readings(ram=ram), state, now=float(t * 60))
        state = out.state
        sent += out.messages
    assert sent == [
        ("resource_alert", "RAM over 85%: 90% used"),
        ("resource_clear", "RAM back under 80%: 79% used"),
        ("resource_alert", "RAM over 85%: 88% used"),
    ]


def test_cpu_alerts_only_after_five_minutes_over_the_limit(aivj_env) -> None:
    state: dict = {}
    sent = []
    # Over 90% from t=0; a dip at t=120 restarts the clock; sustained from t=180 to t=480.
    # Once alarmed, a dip to 88% does not end the episode; 40% does.
    for t, cpu in [(0, 95), (60, 96), (120, 50), (180, 95), (300, 97), (420, 99), (480, 93), (540, 88), (570, 92),
                   (600, 40)]:
        out = watch_resources(aivj_env, _readings(cpu=cpu), state, now=float(t))
        state = out.state
        sent += [(t, *m) for m in out.messages]
    assert sent == [
        (480, "resource_alert", "CPU over 90% for 5 min: 93% now"),
        (600, "resource_clear", "CPU back under 85%: 40% now"),
    ]


def test_low_disk_alerts_once_and_asks_for_retention(aivj_env) -> None:
    first = watch_resources(aivj_env, _readings(disk=3.2), {}, now=0.0)
    assert first.low_disk_started
    assert first.messages == [("resource_alert", "disk for data: 3.2 GB free, under 5 GB (old model versions will be pruned)")]
    second = watch_resources(aivj_env, _readings(disk=3.0), first.state, now=60.0)
    assert second.messages == [] and not second.low_disk_started
    hovering = watch_resources(aivj_env, _readings(disk=5.5), second.state, now=90.0)  # under 5 + 1 GB
    assert hovering.messages == [] and hovering.state == second.state
    third = watch_resources(aivj_env, _readings(disk=9.0), hovering.state, now=120.0)
    assert third.messages == [("resource_clear", "disk for data: 9.0 GB free again")]


def test_real_psutil_read(aivj_env) -> None:
    r = read_system(aivj_env, cpu_interval=0.1)
    assert 0.0 < r.ram_percent <= 100.0
    assert 0.0 <= r.cpu_percent <= 100.0
    assert set(r.disk_free_gb) == {"data", "models", "checkpoints"}  # models/ does not exist yet: its volume
    assert all(v > 0 for v in r.disk_free_gb.values())
    assert "RAM" in r.summary() and "disk free: data" in r.summary()


def test_real_nvml_reports_gpus_or_says_there_is_none() -> None:
    gpus, note = read_gpus()
    if gpus:  # a machine with an NVIDIA driver
        assert note == "" and all(g.memory_total > 0 for g in gpus)
    else:
        assert note.startswith("no NVIDIA GPU")


def test_missing_nvml_package_is_handled(aivj_env) -> None:
    def no_package():
        raise ImportError("No module named 'pynvml'")

    gpus, note = read_gpus(no_package)
    assert gpus == [] and note == "no NVIDIA GPU (NVML not available: ImportError)"


def test_nvml_without_driver_is_handled() -> None:
    import pynvml

    class NoDriver:
        """The real pynvml error type, raised the way nvmlInit raises it without a driver."""

        def nvmlInit(self) -> None:
            raise pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)

    gpus, note = read_gpus(NoDriver)
    assert gpus == [] and note.startswith("no NVIDIA GPU (") and "Not Found" in note


def test_injected_readings_replace_the_machine(aivj_env) -> None:
    fixed = _readings(ram=99.0)
    assert SystemMonitor(aivj_env, source=lambda: fixed).read() is fixed


def test_one_query_a_gpu_does_not_support_keeps_the_others() -> None:
    import pynvml

    class Mig:
        """Two GPUs; utilisation is not supported (as under MIG), the rest reads."""

        NVML_TEMPERATURE_GPU = 0

        def nvmlInit(self) -> None:
            pass

        def nvmlDeviceGetCount(self) -> int:
            return 2

        def nvmlDeviceGetHandleByIndex(self, i: int) -> int:
            return i

        def nvmlDeviceGetMemoryInfo(self, h: int):
            return type("Memory", (), {"used": 2 * GiB, "total": 24 * GiB})()

        def nvmlDeviceGetName(self, h: int) -> bytes:
            return b"Test GPU"

        def nvmlDeviceGetTemperature(self, h: int, sensor: int) -> int:
            return 90 if h == 1 else 60

        def nvmlDeviceGetUtilizationRates(self, h: int):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)

    gpus, note = read_gpus(Mig)
    assert [(g.index, g.temperature, g.memory_used) for g in gpus] == [(0, 60.0, 2 * GiB), (1, 90.0, 2 * GiB)]
    assert note == "not reported: GPU0 utilization, GPU1 utilization"
    # So the heat protection still works.
    assert "GPU1 at 90°C" in gpu_pressure_for(gpus)


def gpu_pressure_for(gpus) -> str:
    from aivj_assets.settings import load_settings

    return gpu_pressure(load_settings(env={}, env_file=None), _readings(gpus=gpus), was_hot=False) or ""


def test_a_volume_that_cannot_be_read_is_left_out_not_fatal(aivj_env, monkeypatch) -> None:
    import shutil

    real = shutil.disk_usage

    def disk_usage(path):  # the data folder's drive was unplugged
        if str(path).startswith(str(aivj_env.data_dir)):
            raise FileNotFoundError(2, "The device is not ready", str(path))
        return real(path)

    monkeypatch.setattr(shutil, "disk_usage", disk_usage)
    r = read_system(aivj_env, cpu_interval=0.0)
    assert "data" not in r.disk_free_gb and r.disk_free_gb  # the other volumes still read
