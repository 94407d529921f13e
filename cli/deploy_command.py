"""Deploy a bundle over SSH to one device or a fleet (parallel, bounded), into versioned
releases with an atomic `current` link; --rollback switches back. Uses the system's ssh, so
~/.ssh/config, the agent and known_hosts apply; host keys are checked."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

from edgepack.runtime import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", nargs="?", metavar="BUNDLE", help="bundle folder or .tar")
    parser.add_argument(
        "--to",
        action="append",
        default=[],
        metavar="URL",
        help="ssh://[user@]host[:port][/path], repeat for several devices (path: ~/edgepack)",
    )
    parser.add_argument("--inventory", metavar="FILE", help="TOML file of [[hosts]] to = URL")
    parser.add_argument(
        "--rollback", action="store_true", help="switch back to the previous release"
    )
    add_ssh_arguments(parser)
    parser.add_argument("--jobs", type=int, help="deploys at once (default 4, or the inventory's)")
    parser.add_argument("--bench", action="store_true", help="benchmark on each device after")
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")


def add_ssh_arguments(parser: argparse.ArgumentParser) -> None:
    """The ssh options deploy and bench --remote share."""
    parser.add_argument(
        "--accept-new-host-key",
        action="store_true",
        help="trust a device's host key on first use (a changed key is still refused)",
    )
    parser.add_argument(
        "--ssh-config", metavar="FILE", help="ssh config file (default ~/.ssh/config)"
    )


def ssh_options(args: argparse.Namespace):
    from edgepack.deploy.ssh import SshOptions

    return SshOptions(
        config=Path(args.ssh_config) if args.ssh_config else None,
        accept_new_host_key=args.accept_new_host_key,
    )


def main(args: argparse.Namespace) -> int:
    from edgepack.deploy.bundle import open_bundle, read_bundle
    from edgepack.deploy.errors import DeployError
    from edgepack.deploy.fleet import DEFAULT_JOBS, format_table, read_inventory, run_fleet
    from edgepack.deploy.release import deploy_one, rollback_one
    from edgepack.deploy.remote_bench import bench_remote, p50_ms
    from edgepack.deploy.ssh import SshTarget
    from edgepack.deploy.sums import verify_sums

    targets = [SshTarget.parse(url) for url in args.to]
    jobs = args.jobs
    if args.inventory:
        listed, inventory_jobs = read_inventory(args.inventory)
        targets += listed
        jobs = jobs or inventory_jobs
    if not targets:
        raise InputError("give at least one --to ssh://... or --inventory FILE")
    if jobs is not None and jobs < 1:
        raise InputError(f"--jobs must be 1 or more, got {jobs}")
    options = ssh_options(args)
    if args.rollback and (args.bundle or args.bench):
        raise InputError("--rollback takes no BUNDLE and no --bench")
    if not args.rollback and not args.bundle:
        raise InputError("edgepack deploy needs a BUNDLE (edgepack bundle makes one)")

    with tempfile.TemporaryDirectory(prefix="edgepack-deploy-") as scratch:
        if not args.rollback:
            folder = open_bundle(args.bundle, Path(scratch))
            verify_sums(folder)  # never ship a damaged bundle to a fleet
            bundle = read_bundle(folder)

        def work(target):
            if args.rollback:
                return rollback_one(target, options)
            result = deploy_one(folder, bundle, target, options)
            if result.ok and args.bench:
                result.step = "bench"
                try:
                    pack = folder / "pack" / bundle["pack"]["file"]
                    result.p50_ms = p50_ms(bench_remote(pack, target, options)[0])
                except DeployError as exc:
                    result.ok, result.error = False, exc.message
            return result

        results = run_fleet(targets, work, jobs=jobs or DEFAULT_JOBS, on_done=_progress)
    if args.json:
        print(json.dumps({"hosts": [r.to_dict() for r in results]}, indent=1))
    else:
        print(format_table(results), end="")
    return 0 if all(r.ok for r in results) else 1


def _progress(result) -> None:
    """One line per host as it finishes (the table comes when all have)."""
    print(f"{result.host}: {result.step}: {result.error or 'ok'}", file=sys.stderr)
