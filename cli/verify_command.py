"""Check a pack's manifest against the schema and every file against its sha256; with
--trusted-key, also that one of those keys signed it. Exit 1 if not."""

from __future__ import annotations

import argparse

from edgepack.runtime import verify_pack


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pack", help="pack directory or .edgepack archive")
    parser.add_argument(
        "--trusted-key",
        action="append",
        dest="trusted_keys",
        metavar="PUB",
        help="Ed25519 public key (PEM) the pack must be signed with (repeatable: any of them)",
    )


def main(args: argparse.Namespace) -> int:
    manifest = verify_pack(args.pack, trusted_keys=args.trusted_keys)
    count = len(manifest.models) + len(manifest.files)
    signed = ", signed by a trusted key" if args.trusted_keys else ""
    print(
        f"OK: {args.pack}: manifest schema {manifest.schema_version}, {count} file(s) verified"
        f"{signed}"
    )
    return 0
