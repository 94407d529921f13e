"""The platform a bundle is built for: Python version, CPU architecture and glibc, and what
follows from them (the wheel tags pip may pick, the environment markers evaluate against)."""

from __future__ import annotations

import platform
import sys
from dataclasses import dataclass
from typing import Any

from edgepack.device_profiles import DeviceProfile, load_profile

from .errors import BundleError

# uname -m spellings -> the one manylinux tags use.
MACHINES = {"aarch64": "aarch64", "arm64": "aarch64", "x86_64": "x86_64", "amd64": "x86_64"}
OLDEST_MANYLINUX_GLIBC = 17  # manylinux_2_17 == manylinux2014, the oldest tag current wheels use


@dataclass(frozen=True)
class Target:
    """python 'X.Y', machine as uname -m says it, glibc 'X.Y' of the device's OS image."""

    python: str
    machine: str
    glibc: str
    profile: str | None = None

    def __post_init__(self) -> None:
        parts = self.python.split(".")
        if len(parts) != 2 or not all(p.isdigit() for p in parts) or parts[0] != "3":
            raise BundleError(f"Python version must look like 3.11, got {self.python!r}")
        if int(parts[1]) < 10:
            raise BundleError(
                f"edgepack needs Python 3.10 or newer on the device, and the target has "
                f"{self.python}; install a newer Python there and pass --python"
            )
        if self.machine not in MACHINES:
            raise BundleError(
                f"architecture {self.machine!r} is not one bundles support "
                f"(expected one of {', '.join(sorted(MACHINES))})"
            )
        object.__setattr__(self, "machine", MACHINES[self.machine])
        if not _glibc_ok(self.glibc):
            raise BundleError(f"glibc version must look like 2.36, got {self.glibc!r}")

    @property
    def version_tuple(self) -> tuple[int, int]:
        major, minor = self.python.split(".")
        return int(major), int(minor)

    @property
    def abi(self) -> str:
        return "cp{}{}".format(*self.version_tuple)

    def platform_tags(self) -> list[str]:
        """Every manylinux tag the device's glibc accepts, newest first, and manylinux2014.

        pip does not widen a newer glibc tag down to older ones when --platform is given, so
        each must be listed: with only 2_17 and 2_28, ai-edge-litert 2.3.0 (tagged 2_27 alone)
        was silently skipped for 1.4.0.
        """
        newest = int(self.glibc.split(".")[1])
        tags = [
            f"manylinux_2_{minor}_{self.machine}"
            for minor in range(newest, OLDEST_MANYLINUX_GLIBC - 1, -1)
        ]
        return [*tags, f"manylinux2014_{self.machine}"]

    def marker_environment(self) -> dict[str, str]:
        """PEP 508 marker values on the device (CPython on Linux), for packaging.markers."""
        return {
            "implementation_name": "cpython",
            "implementation_version": f"{self.python}.0",
            "os_name": "posix",
            "platform_machine": self.machine,
            "platform_release": "",
            "platform_system": "Linux",
            "platform_version": "",
            "python_full_version": f"{self.python}.0",
            "platform_python_implementation": "CPython",
            "python_version": self.python,
            "sys_platform": "linux",
        }

    def describe(self) -> str:
        return f"Python {self.python}, {self.machine}, glibc {self.glibc}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile,
            "python": self.python,
            "machine": self.machine,
            "glibc": self.glibc,
            "platform_tags": self.platform_tags(),
        }


def _glibc_ok(text: str) -> bool:
    parts = text.split(".")
    return len(parts) == 2 and all(p.isdigit() for p in parts) and parts[0] == "2"


def target_for_profile(profile: DeviceProfile | str, python: str | None = None) -> Target:
    """The profile's board as its OS image ships it; python overrides the image's Python."""
    chosen = load_profile(profile) if isinstance(profile, str) else profile
    missing = [
        name
        for name, value in (("os.machine", chosen.os.machine), ("os.glibc", chosen.os.glibc))
        if not value
    ]
    if missing:
        raise BundleError(
            f"profile {chosen.name!r} does not say {' and '.join(missing)} of its OS image; "
            'add them to its [os] table (e.g. machine = "aarch64", glibc = "2.36")'
        )
    return Target(
        python=python or chosen.os.python,
        machine=chosen.os.machine,
        glibc=chosen.os.glibc,
        profile=chosen.name,
    )


def host_target(python: str | None = None) -> Target:
    """This machine: for bundles that a test or a twin of the workstation installs."""
    glibc = platform.libc_ver()[1]
    if not glibc:
        raise BundleError("this machine has no glibc (musl or not Linux): give --profile")
    return Target(
        python=python or f"{sys.version_info.major}.{sys.version_info.minor}",
        machine=platform.machine(),
        glibc=".".join(glibc.split(".")[:2]),
        profile="host",
    )
