"""The machine conditions that make benchmark numbers unreliable (CPU governor and clocks,
temperature and throttling, other load), read from /proc and /sys, with a human warning for each.

>>> readings, warnings = read_conditions(sample_s=0)
>>> readings["temperature_c"] is None or readings["temperature_c"] > -50
True
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

GOOD_GOVERNOR = "performance"
LOAD_PER_CPU_LIMIT = 0.5
HOT_C = 80.0  # Raspberry Pi 4 and 5 firmware start throttling the ARM cores at 80-85 °C
BUSY_PROCESS_PERCENT = 10.0  # of one CPU
MAX_BUSY_LISTED = 5
# Bits of the Raspberry Pi firmware's throttled word, as documented for `vcgencmd get_throttled`
# (https://www.raspberrypi.com/documentation/computers/os.html#get_throttled).
THROTTLE_BITS = {
    0: "under-voltage detected",
    1: "ARM frequency capped",
    2: "currently throttled",
    3: "soft temperature limit active",
    16: "under-voltage has occurred",
    17: "ARM frequency capping has occurred",
    18: "throttling has occurred",
    19: "soft temperature limit has occurred",
}


class Conditions(NamedTuple):
    """`readings` (JSON-ready; None where the machine does not say) and human `warnings`."""

    readings: dict[str, Any]
    warnings: list[str]


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip()
    except OSError:
        return None


def _read_number(path: Path) -> float | None:
    text = _read(path)
    try:
        return float(text) if text else None
    except ValueError:
        return None


def _cpufreq(root: Path, cpus: list[int]) -> dict[str, Any]:
    governors, cur, hw_max, caps = set(), [], [], []
    for cpu in cpus:
        base = root / f"sys/devices/system/cpu/cpu{cpu}/cpufreq"
        governor = _read(base / "scaling_governor")
        if governor:
            governors.add(governor)
        for values, name in ((cur, "scaling_cur_freq"), (hw_max, "cpuinfo_max_freq")):
            khz = _read_number(base / name)
            if khz is not None:
                values.append(khz / 1000)
        cap = _read_number(base / "scaling_max_freq")
        if cap is not None:
            caps.append(cap / 1000)
    return {
        "governors": sorted(governors) or None,
        "cur_freq_mhz_min": min(cur) if cur else None,
        "cur_freq_mhz_max": max(cur) if cur else None,
        "max_freq_mhz": max(hw_max) if hw_max else None,
        "scaling_max_freq_mhz": min(caps) if caps else None,
    }


def _temperatures(root: Path) -> dict[str, float]:
    temps = {}
    for zone in sorted((root / "sys/class/thermal").glob("thermal_zone*")):
        millideg = _read_number(zone / "temp")
        if millideg is not None:
            temps[_read(zone / "type") or zone.name] = millideg / 1000
    return temps


def _throttled(root: Path) -> int | None:
    # The Pi kernel exposes the firmware word in sysfs (soc: on Pi 4, soc@107c000000: on Pi 5);
    # vcgencmd is the fallback on older images, and only meaningful on this machine's real root.
    for path in sorted(root.glob("sys/devices/platform/soc*/soc*:firmware/get_throttled")):
        text = _read(path)
        if text:
            try:
                return int(text, 16)
            except ValueError:
                pass
    vcgencmd = shutil.which("vcgencmd")
    if root != Path("/") or vcgencmd is None:
        return None
    try:
        out = subprocess.run(
            [vcgencmd, "get_throttled"], capture_output=True, text=True, timeout=2, check=True
        ).stdout
        return int(out.strip().partition("=")[2], 16)
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def _cpu_ticks(root: Path) -> dict[int, tuple[str, int]]:
    """pid -> (command name, user + system clock ticks so far) for every readable process."""
    ticks = {}
    for entry in (root / "proc").glob("[0-9]*"):
        stat = _read(entry / "stat")
        if not stat:
            continue
        # The name sits in parentheses and may itself hold spaces or parentheses.
        head, _, rest = stat.rpartition(")")
        fields = rest.split()
        try:
            ticks[int(entry.name)] = (head.partition("(")[2], int(fields[11]) + int(fields[12]))
        except (ValueError, IndexError):
            continue
    return ticks


def _busy_processes(root: Path, sample_s: float) -> list[dict[str, Any]]:
    before = _cpu_ticks(root)
    time.sleep(sample_s)
    after = _cpu_ticks(root)
    hz = os.sysconf("SC_CLK_TCK")
    busy = []
    for pid, (name, total) in after.items():
        if pid == os.getpid() or pid not in before:
            continue
        percent = 100 * (total - before[pid][1]) / (hz * sample_s)
        if percent >= BUSY_PROCESS_PERCENT:
            busy.append({"pid": pid, "name": name, "cpu_percent": round(percent, 1)})
    return sorted(busy, key=lambda p: -p["cpu_percent"])[:MAX_BUSY_LISTED]


def _load_avg() -> list[float] | None:
    try:
        return list(os.getloadavg())
    except OSError:
        return None


def _warnings(r: dict[str, Any]) -> list[str]:
    found = []
    governors = r["governors"]
    if governors and governors != [GOOD_GOVERNOR]:
        found.append(
            f"CPU frequency governor is {', '.join(governors)}, not '{GOOD_GOVERNOR}': the clock "
            "changes during the run. Set it with: echo performance | sudo tee "
            "/sys/devices/system/cpu/cpu*/cpufreq/scaling_governor"
        )
    hw_max, cap = r["max_freq_mhz"], r["scaling_max_freq_mhz"]
    if hw_max and cap and cap < hw_max:
        found.append(f"CPU frequency is capped at {cap:.0f} of {hw_max:.0f} MHz (scaling_max_freq)")
    cur_min = r["cur_freq_mhz_min"]
    if governors == [GOOD_GOVERNOR] and hw_max and cur_min and cur_min < 0.95 * hw_max:
        found.append(
            f"a CPU runs at {cur_min:.0f} MHz, below its {hw_max:.0f} MHz maximum, under the "
            "'performance' governor: thermal or power capping is likely"
        )
    temp = r["temperature_c"]
    if temp is not None and temp >= HOT_C:
        found.append(
            f"the hottest thermal zone reads {temp:.0f} °C (>= {HOT_C:.0f} °C): throttling is "
            "likely; add cooling or let the board cool down"
        )
    if r["throttled_flags"]:
        found.append(
            f"firmware reports {'; '.join(r['throttled_flags'])} (get_throttled={r['throttled']}): "
            "check the power supply and cooling"
        )
    load, cpu_count = r["load_avg"], r["cpu_count"]
    if load and cpu_count and load[0] / cpu_count > LOAD_PER_CPU_LIMIT:
        per_cpu = load[0] / cpu_count
        found.append(
            f"1-minute load average is {load[0]:.2f} on {cpu_count} CPUs ({per_cpu:.2f} per CPU, "
            f"above {LOAD_PER_CPU_LIMIT}): other work competes with the benchmark"
        )
    if r["busy_processes"]:
        listed = ", ".join(
            f"{p['name']} (pid {p['pid']}) {p['cpu_percent']:.0f}%" for p in r["busy_processes"]
        )
        found.append(f"other processes are using CPU: {listed}")
    return found


def read_conditions(
    *, root: Path = Path("/"), cpus: Iterable[int] | None = None, sample_s: float = 0.2
) -> Conditions:
    """Read the machine's state now. Never fails for a missing /proc or /sys entry: that reading
    is None. `sample_s` is how long to watch other processes' CPU use (0 skips it); `root` and
    `cpus` let tests point at a fake tree; by default the CPUs this process may run on."""
    if cpus is None:
        try:
            cpus = os.sched_getaffinity(0)
        except AttributeError:  # not Linux
            cpus = range(os.cpu_count() or 1)
    cpu_list = sorted(cpus)
    temps = _temperatures(root)
    throttled = _throttled(root)
    flags = [name for bit, name in THROTTLE_BITS.items() if throttled and throttled >> bit & 1]
    readings: dict[str, Any] = {
        "cpus": cpu_list,
        "cpu_count": os.cpu_count(),
        **_cpufreq(root, cpu_list),
        "temperature_c": max(temps.values()) if temps else None,
        "thermal_zones_c": temps,
        "throttled": hex(throttled) if throttled is not None else None,
        "throttled_flags": flags,
        "load_avg": _load_avg(),
        "busy_processes": _busy_processes(root, sample_s) if sample_s > 0 else None,
    }
    return Conditions(readings, _warnings(readings))
