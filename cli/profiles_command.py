"""List device profiles (`edgepack profiles`) or show one with the source of every figure
(`edgepack profiles show NAME`); add your own as NAME.toml in $EDGEPACK_PROFILES_DIR."""

from __future__ import annotations

import argparse
import json
from typing import Any

from edgepack.device_profiles import (
    FIGURE_FIELDS,
    DeviceProfile,
    ProfileError,
    list_profiles,
    load_profile,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON")
    sub = parser.add_subparsers(dest="action", metavar="ACTION")
    sub.add_parser("list", help="list the profiles (the default)")
    show = sub.add_parser("show", help="show one profile with its sources")
    show.add_argument("name", help="profile name (or a .toml path)")
    # SUPPRESS: `profiles --json show X` must keep the --json given before the action.
    show.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")


def main(args: argparse.Namespace) -> int:
    if args.action == "show":
        profile = load_profile(args.name)
        print(json.dumps(profile.to_dict(), indent=1) if args.json else describe(profile))
        return 0
    rows = [_summary(name) for name in list_profiles()]
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        if "error" in r:
            print(f"{r['name'].ljust(width)}  error: {r['error']}")
            continue
        clock = f" @ {r['max_clock_ghz']:g} GHz" if r["max_clock_ghz"] else ""
        print(
            f"{r['name'].ljust(width)}  {r['cores']}x {r['core']}{clock}, default "
            f"{r['backend']} {r['threads']} threads {r['quantization']}: {r['description']}"
        )
    return 0


def _summary(name: str) -> dict[str, Any]:
    try:
        p = load_profile(name)
    except ProfileError as exc:  # one broken user profile must not hide the others
        return {"name": name, "error": str(exc)}
    return {
        "name": p.name,
        "description": p.description,
        "core": p.cpu.core,
        "cores": p.cpu.cores,
        "max_clock_ghz": p.cpu.max_clock_ghz,
        "backend": p.defaults.backend,
        "threads": p.defaults.threads,
        "quantization": p.defaults.quantization,
        "path": str(p.path) if p.path else None,
    }


def _value(profile: DeviceProfile, dotted: str) -> Any:
    table, _, key = dotted.rpartition(".")
    holder = getattr(profile, table) if table else profile
    value = None if holder is None else getattr(holder, key)
    return ", ".join(sorted(value)) if isinstance(value, frozenset) else value


def describe(profile: DeviceProfile) -> str:
    """Every figure with its value and source (or the note saying why it is absent)."""
    origin = f"from {profile.path}" if profile.path else "detected on this machine"
    lines = [f"{profile.name}: {profile.description}", f"  {origin}", ""]
    width = max(len(f) for f in FIGURE_FIELDS)
    pad = " " * (width + 4)
    shown_notes = set()
    for name in FIGURE_FIELDS:
        value = _value(profile, name)
        source = profile.sources.get(name)
        note = profile.notes.get(name) or profile.notes.get(name.split(".")[0])
        text = "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)
        lines.append(f"  {name.ljust(width)}  {text}")
        if source:
            lines.append(f"  {pad}source: {source.title} <{source.url}>")
        elif profile.detected and value is not None:
            lines.append(f"  {pad}read from this machine")
        if note and note not in shown_notes and (value is None or not source):
            shown_notes.add(note)  # a table's note (e.g. no accelerator) once, not per field
            lines.append(f"  {pad}note: {note}")
    d = profile.defaults
    lines += [
        "",
        f"  defaults (edgepack's choice): {d.backend}, {d.threads} threads, {d.quantization}",
    ]
    for ref in profile.references:
        threads = f", {ref.threads} threads" if ref.threads else ""
        lines.append(
            f"  reference: {ref.model}, {ref.backend} {ref.precision}{threads}: "
            f"{ref.latency_ms:g} ms, source: {ref.source.title} <{ref.source.url}>"
        )
    if "references" in profile.notes:
        lines.append(f"  references note: {profile.notes['references']}")
    return "\n".join(lines)
