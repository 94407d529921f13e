"""Sign a pack with an Ed25519 private key: devices given the public key then load it only if
its manifest (which holds every file's sha256) is exactly what was signed."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pack", help="pack directory or .edgepack archive")
    parser.add_argument(
        "--key",
        required=True,
        help="Ed25519 private key, PEM (openssl genpkey -algorithm ed25519 -out key.pem)",
    )


def main(args: argparse.Namespace) -> int:
    from edgepack.packing import sign_pack

    fingerprint = sign_pack(args.pack, args.key)
    print(f"signed {args.pack} with key {fingerprint}")
    return 0
