"""Bundle a pack for a device: its runtime's wheels for the board's Python and platform, an
offline install.sh and a bench.sh, all under SHA256SUMS (`edgepack bundle --verify` checks them)."""

from __future__ import annotations

import argparse
import sys

from edgepack.runtime import InputError

from .arguments import add_output, add_profile


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pack", nargs="?", metavar="PACK", help="pack directory or archive")
    add_profile(parser, "device profile: its OS image's Python, glibc, arch")
    parser.add_argument("--python", help="the device's Python as X.Y (default: the profile's)")
    add_output(parser, "bundle folder to write (OUTPUT.tar beside it)")
    parser.add_argument(
        "-c",
        "--constraint",
        help="pip constraints file for the wheel versions (e.g. constraints.txt)",
    )
    parser.add_argument("--edgepack-wheel", help="use this edgepack wheel instead of building one")
    parser.add_argument(
        "--pip-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="more pip download options, e.g. --pip-arg=--no-index --pip-arg=--find-links=DIR",
    )
    parser.add_argument("--verify", metavar="BUNDLE", help="re-check a bundle's SHA256SUMS")


def main(args: argparse.Namespace) -> int:
    from edgepack.deploy.bundle import build_bundle, verify_bundle

    if args.verify:
        if args.pack:
            raise InputError("give either PACK (to build a bundle) or --verify BUNDLE, not both")
        info = verify_bundle(args.verify)
        target = info["target"]
        print(
            f"{args.verify}: ok, {info['files_checked']} files match SHA256SUMS (bundle "
            f"{info['id']}: pack {info['pack']['name']}, Python {target['python']}, "
            f"{target['machine']}, glibc {target['glibc']})"
        )
        return 0
    if not args.pack or not args.output:
        raise InputError("edgepack bundle needs PACK and -o OUTPUT (or --verify BUNDLE)")
    info = build_bundle(
        args.pack,
        args.output,
        profile=args.profile,
        python=args.python,
        constraints=args.constraint,
        pip_args=args.pip_arg,
        edgepack_wheel=args.edgepack_wheel,
        progress=lambda line: print(line, file=sys.stderr),
    )
    versions = ", ".join(f"{w['name']} {w['version']}" for w in info["wheels"])
    target = info["target"]
    print(
        f"wrote {args.output} and {args.output}.tar (bundle {info['id']}, "
        f"{info['wheel_bytes'] / 1e6:.1f} MB of wheels) for {target['profile']}: Python "
        f"{target['python']}, {target['machine']}, glibc {target['glibc']}\n  wheels: {versions}"
    )
    return 0
