"""Check a pack's manifest against the schema and every file against its sha256; exit 1 if not."""

from __future__ import annotations

import argparse

from edgepack.runtime import verify_pack


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pack", help="pack directory or .edgepack archive")


def main(args: argparse.Namespace) -> int:
    manifest = verify_pack(args.pack)
    count = len(manifest.models) + len(manifest.files)
    print(f"OK: {args.pack}: manifest schema {manifest.schema_version}, {count} file(s) verified")
    return 0
