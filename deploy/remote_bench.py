"""`edgepack bench PACK --remote ssh://...`: run the benchmark on the device where the pack's
bundle is current, pull its JSON back, and label the results "measured on <device>". Where the
bundle's profile has a latency estimate for the pack, the device's p50 goes into the
estimator's error record, as a run on the device itself would."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgepack.benchmarks.harness import BenchResult
from edgepack.device_profiles import load_profile
from edgepack.runtime import EdgepackError, read_manifest

from .bundle import pack_facts
from .errors import DeployError
from .ssh import SshOptions, SshTarget, run_remote

BENCH_TIMEOUT_S = 3600
INSTALLED = r"""
cat "$1/current/bundle.json" 2>/dev/null && exit 0
echo "no bundle is current at $1 (edgepack deploy installs one)" >&2
exit 3
"""
RUN = r"""
root=$1; shift
out="$root/current/bench-$(date -u +%Y%m%dT%H%M%SZ)-$$.json"
sh "$root/current/bench.sh" "$out" "$@" >&2 || exit $?
cat "$out"
"""


def bench_remote(
    pack: str | os.PathLike[str],
    target: SshTarget,
    options: SshOptions,
    *,
    bench_args: Sequence[str] = (),
    profile: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[BenchResult]:
    """Benchmark `pack` on the device; bench_args are `edgepack bench` options for the device
    run (e.g. --threads 4 --min-duration 10). profile (default: the bundle's) names the device's
    profile for the error record. The JSON also stays on the device, in the release folder."""
    host = target.display
    local = pack_facts(Path(pack))
    done = run_remote(target, options, "bench", INSTALLED, target.path)
    if done.returncode != 0:
        raise DeployError(host, "bench", done.stderr.strip() or "cannot read the current bundle")
    try:
        bundle = json.loads(done.stdout)
    except json.JSONDecodeError:
        raise DeployError(host, "bench", "the current release's bundle.json is not JSON") from None
    remote_pack = bundle.get("pack", {})
    if remote_pack.get("sha256") != local["sha256"]:
        raise DeployError(
            host, "bench",
            f"the current release there holds pack {remote_pack.get('name')!r} "
            f"({str(remote_pack.get('sha256'))[:12]}), not {Path(pack).name} "
            f"({local['sha256'][:12]}); bundle and deploy this pack first",
        )  # fmt: skip
    if progress:
        progress(f"bench: running on {host} (the device's own timings)")
    done = run_remote(
        target, options, "bench", RUN, target.path, *bench_args, timeout_s=BENCH_TIMEOUT_S
    )
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
        raise DeployError(host, "bench", (errors or [f"bench.sh exit {done.returncode}"])[-1])
    try:
        data = json.loads(done.stdout)
        device = data["device"]
        results = [BenchResult.from_dict(r) for r in data["bench"]["results"]]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DeployError(host, "bench", f"the device's bench JSON is not usable: {exc}") from None
    name = profile or bundle.get("target", {}).get("profile")
    for result in results:
        result.label = f"measured on {device['soc']} ({host})"
        result.pack = os.fspath(pack)
        _record(result, Path(pack), name, device)
    return results


def p50_ms(result: BenchResult) -> float:
    return result.latency["percentiles_s"]["p50"] * 1e3


def _record(result: BenchResult, pack: Path, profile: str | None, device: dict[str, Any]) -> None:
    """Put the device's p50 into the estimator's error record for the profile (single-stream
    only: that is what the estimate is of). Why there is none goes into the warnings."""
    if result.scenario != "single-stream" or not profile:
        return
    try:
        from edgepack.benchmarks.estimate import estimate_manifest, record_measurement

        estimate = estimate_manifest(
            read_manifest(pack),
            load_profile(profile),
            backend=result.backend,
            threads=result.threads,
        )
        if estimate.get("kind") != "estimated":
            reason = estimate.get("error") or "the estimator gave none"
            result.warnings.append(f"no estimate for {profile} to correct: {reason}")
            return
        result.estimate = record_measurement(
            estimate, p50_ms(result), measured_on=device["cpu"]["core"]
        )
    except (EdgepackError, ImportError, KeyError) as exc:
        result.warnings.append(f"no estimate for {profile} to correct: {exc}")
