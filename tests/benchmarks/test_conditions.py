"""Reading benchmark conditions: on this machine (types and keys) and on fake /sys trees whose
contents, and so the expected readings and warnings, are known."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgepack.benchmarks.conditions import Conditions, read_conditions

KEYS = {
    "cpus",
    "cpu_count",
    "governors",
    "cur_freq_mhz_min",
    "cur_freq_mhz_max",
    "max_freq_mhz",
    "scaling_max_freq_mhz",
    "temperature_c",
    "thermal_zones_c",
    "throttled",
    "throttled_flags",
    "load_avg",
    "busy_processes",
}


def _write(root: Path, relative: str, text: str) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def _fake_pi(root: Path, governor: str, cur_khz: int, temp_mc: int, throttled: str) -> None:
    for cpu in (0, 1):
        base = f"sys/devices/system/cpu/cpu{cpu}/cpufreq/"
        _write(root, base + "scaling_governor", f"{governor}\n")
        _write(root, base + "scaling_cur_freq", f"{cur_khz}\n")
        _write(root, base + "cpuinfo_max_freq", "1800000\n")
        _write(root, base + "scaling_max_freq", "1800000\n")
    _write(root, "sys/class/thermal/thermal_zone0/temp", f"{temp_mc}\n")
    _write(root, "sys/class/thermal/thermal_zone0/type", "cpu-thermal\n")
    _write(root, "sys/devices/platform/soc/soc:firmware/get_throttled", f"{throttled}\n")


def test_this_machine_gives_every_key_with_sane_types():
    readings, warnings = read_conditions(sample_s=0.05)
    assert set(readings) == KEYS
    assert readings["cpus"] and all(isinstance(c, int) for c in readings["cpus"])
    assert readings["cpu_count"] >= len(readings["cpus"])
    for key in ("cur_freq_mhz_min", "cur_freq_mhz_max", "max_freq_mhz", "temperature_c"):
        assert readings[key] is None or isinstance(readings[key], float)
    assert readings["governors"] is None or all(isinstance(g, str) for g in readings["governors"])
    assert readings["load_avg"] is None or (
        len(readings["load_avg"]) == 3 and min(readings["load_avg"]) >= 0
    )
    assert isinstance(readings["busy_processes"], list)
    assert all(isinstance(w, str) and w for w in warnings)
    json.dumps(readings)  # the harness writes it into its JSON output


def test_result_unpacks_and_has_names():
    result = read_conditions(sample_s=0)
    assert isinstance(result, Conditions)
    readings, warnings = result
    assert readings is result.readings and warnings is result.warnings
    assert readings["busy_processes"] is None  # not sampled


def test_an_empty_tree_gives_none_and_does_not_crash(tmp_path):
    readings, warnings = read_conditions(root=tmp_path, cpus=[0, 1], sample_s=0.01)
    for key in ("governors", "cur_freq_mhz_min", "max_freq_mhz", "temperature_c", "throttled"):
        assert readings[key] is None
    assert readings["thermal_zones_c"] == {} and readings["throttled_flags"] == []
    assert readings["busy_processes"] == []
    assert not [w for w in warnings if "governor" in w or "thermal" in w or "firmware" in w]


def test_a_badly_set_up_pi_gets_every_warning(tmp_path):
    _fake_pi(tmp_path, governor="ondemand", cur_khz=600000, temp_mc=82500, throttled="0x50005")
    _write(tmp_path, "sys/devices/system/cpu/cpu1/cpufreq/scaling_max_freq", "1500000\n")
    readings, warnings = read_conditions(root=tmp_path, cpus=[0, 1], sample_s=0)
    assert readings["governors"] == ["ondemand"]
    assert readings["cur_freq_mhz_min"] == 600.0
    assert readings["max_freq_mhz"] == 1800.0
    assert readings["scaling_max_freq_mhz"] == 1500.0
    assert readings["temperature_c"] == 82.5
    assert readings["thermal_zones_c"] == {"cpu-thermal": 82.5}
    assert readings["throttled"] == "0x50005"
    assert readings["throttled_flags"] == [
        "under-voltage detected",
        "currently throttled",
        "under-voltage has occurred",
        "throttling has occurred",
    ]
    text = "\n".join(warnings)
    assert "governor is ondemand, not 'performance'" in text
    assert "capped at 1500 of 1800 MHz" in text
    assert "82 °C" in text
    assert "under-voltage detected" in text


def test_a_well_set_up_pi_gets_no_hardware_warnings(tmp_path):
    _fake_pi(tmp_path, governor="performance", cur_khz=1800000, temp_mc=55000, throttled="0x0")
    readings, warnings = read_conditions(root=tmp_path, cpus=[0, 1], sample_s=0)
    assert readings["governors"] == ["performance"]
    assert readings["throttled"] == "0x0" and readings["throttled_flags"] == []
    assert not [w for w in warnings if "load average" not in w]


def test_a_slow_clock_under_the_performance_governor_is_reported(tmp_path):
    _fake_pi(tmp_path, governor="performance", cur_khz=1000000, temp_mc=70000, throttled="0x0")
    _, warnings = read_conditions(root=tmp_path, cpus=[0, 1], sample_s=0)
    assert any("1000 MHz, below its 1800 MHz maximum" in w for w in warnings)


def test_a_busy_process_is_named(tmp_path):
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        readings, warnings = read_conditions(sample_s=0.5)
    finally:
        busy.kill()
        busy.wait()
    pids = {p["pid"] for p in readings["busy_processes"]}
    assert busy.pid in pids
    assert os.getpid() not in pids
    assert any(f"pid {busy.pid}" in w for w in warnings)


@pytest.mark.skipif(not hasattr(os, "getloadavg"), reason="no load average on this platform")
def test_high_load_is_reported(monkeypatch):
    monkeypatch.setattr(os, "getloadavg", lambda: (64.0, 32.0, 16.0))
    readings, warnings = read_conditions(sample_s=0)
    assert readings["load_avg"] == [64.0, 32.0, 16.0]
    assert any("load average is 64.00" in w for w in warnings)
