"""The two scripts a bundle carries to the device, filled in for its target: install.sh (check
the sums, then a venv and an offline pip install) and bench.sh (run the harness, write JSON).
Their templates are install.sh.in and bench.sh.in beside this module: plain POSIX sh, which Pi
OS and JetPack have, since the device has nothing else before the venv exists.

Both print `edgepack-step: NAME` as they go and `edgepack-error: STEP: MESSAGE` on failure, which
the deploy reads to say which step failed on which host.
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def _fill(template: str, **values: str) -> str:
    text = (HERE / template).read_text()
    for key, value in values.items():
        text = text.replace(f"@{key.upper()}@", _sh(value))
    return text


def install_script(*, python: str, machine: str, glibc: str, pack: str) -> str:
    return _fill("install.sh.in", python=python, machine=machine, glibc=glibc, pack=pack)


def bench_script(*, pack: str) -> str:
    return _fill("bench.sh.in", pack=pack)


def _sh(value: str) -> str:
    """A value as one shell word (pack names are checked to be plain at bundle time anyway)."""
    return "'" + value.replace("'", "'\\''") + "'"
