"""Deploying to several devices at once: targets from --to URLs or an inventory file, a bounded
pool of parallel deploys, and the per-host table that ends the run.

An inventory is TOML:

    jobs = 4                                  # deploys at once (optional)
    [[hosts]]
    to = "ssh://pi@garage-pi/home/pi/edgepack"
    [[hosts]]
    to = "ssh://ubuntu@jetson.local:2222/opt/edgepack"
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

from .errors import DeployError
from .release import HostResult
from .ssh import SshTarget

DEFAULT_JOBS = 4
INVENTORY_KEYS = {"jobs", "hosts"}
HOST_KEYS = {"to"}


def read_inventory(path: str | os.PathLike[str]) -> tuple[list[SshTarget], int | None]:
    """(targets, jobs or None) from an inventory file; errors name the file and the entry."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text())
    except FileNotFoundError:
        raise DeployError(str(file), "inventory", "file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise DeployError(str(file), "inventory", f"not valid TOML: {exc}") from None
    unknown = sorted(set(data) - INVENTORY_KEYS)
    if unknown:
        raise DeployError(
            str(file), "inventory", f"unknown key(s) {', '.join(unknown)} (known: jobs, hosts)"
        )
    hosts = data.get("hosts")
    if not isinstance(hosts, list) or not hosts or not all(isinstance(h, dict) for h in hosts):
        raise DeployError(
            str(file), "inventory", 'expected [[hosts]] tables, each with to = "ssh://..."'
        )
    targets = []
    for index, host in enumerate(hosts):
        extra = sorted(set(host) - HOST_KEYS)
        if extra or not isinstance(host.get("to"), str):
            raise DeployError(
                str(file), "inventory",
                f'hosts[{index}] needs exactly to = "ssh://..." (got {", ".join(sorted(host))})',
            )  # fmt: skip
        targets.append(SshTarget.parse(host["to"]))
    jobs = data.get("jobs")
    if jobs is not None and (not isinstance(jobs, int) or isinstance(jobs, bool) or jobs < 1):
        raise DeployError(str(file), "inventory", f"jobs must be a positive integer, got {jobs!r}")
    return targets, jobs


def run_fleet(
    targets: Sequence[SshTarget],
    work: Callable[[SshTarget], HostResult],
    *,
    jobs: int = DEFAULT_JOBS,
    on_done: Callable[[HostResult], None] | None = None,
) -> list[HostResult]:
    """Run work(target) on every target, at most `jobs` at once; one host failing does not stop
    the others. Results come back in the order of `targets`."""
    if len({t.display + t.path for t in targets}) != len(targets):
        raise DeployError("fleet", "targets", "the same host and path is given twice")

    def guarded(target: SshTarget) -> HostResult:
        try:
            result = work(target)
        except DeployError as exc:  # a step outside the host's own (e.g. the bench's parse)
            result = HostResult(host=target.display, step=exc.step, error=exc.message)
        if on_done:
            on_done(result)
        return result

    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(targets)))) as pool:
        return list(pool.map(guarded, targets))


def format_table(results: Sequence[HostResult]) -> str:
    """host | step reached | time | measured p50 | result (the error, or what changed)."""
    rows = [("host", "step reached", "time", "p50", "result")]
    for r in results:
        if r.error:
            outcome = f"error: {r.error}"
        elif not r.changed:
            outcome = f"ok: {r.release} already current (no change)"
        else:
            outcome = f"ok: {r.release} current"
        p50 = f"{r.p50_ms:.3g} ms" if r.p50_ms is not None else "-"
        rows.append((r.host, r.step, f"{r.seconds:.1f} s", p50, outcome))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row[:4], widths, strict=True)) + "  " + row[4]
             for row in rows]  # fmt: skip
    return "\n".join(lines) + "\n"
