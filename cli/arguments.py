"""Arguments that several commands take (--profile, --budget, -o/--output), defined once so they
are spelled, typed and repeated the same way everywhere (each command gives its own help), and
the one parser of NAME=VALUE arguments (--rename, --feed, --dim, --npy)."""

from __future__ import annotations

import argparse

from edgepack.runtime import InputError


def add_profile(
    parser: argparse.ArgumentParser, help: str, *, repeat: bool = False, required: bool = False
) -> None:
    """--profile NAME: a device profile name or .toml path. repeat: each use adds one, and
    args.profile is a list (None when not given)."""
    action = "append" if repeat else "store"
    parser.add_argument("--profile", action=action, required=required, help=help)


def add_budget(parser: argparse.ArgumentParser, help: str, default: float | None = None) -> None:
    """--budget POINTS: how many accuracy points below the source a result may lose."""
    parser.add_argument("--budget", type=float, default=default, help=help)


def add_output(
    parser: argparse.ArgumentParser,
    help: str,
    *,
    required: bool = False,
    default: str | None = None,
) -> None:
    """-o/--output PATH: where the command writes what it makes."""
    parser.add_argument("-o", "--output", required=required, default=default, help=help)


def name_value(item: str, flag: str, form: str, *, last: bool = False) -> tuple[str, str]:
    """(name, value) of a NAME=VALUE argument, both non-empty, else an InputError naming the
    flag and its form ("--rename takes TENSOR=NAME, got 'x'"). last: split at the last '='
    (for names that may hold one), else at the first (for values that may)."""
    name, sep, value = item.rpartition("=") if last else item.partition("=")
    if not sep or not name or not value:
        raise InputError(f"{flag} takes {form}, got {item!r}")
    return name, value
