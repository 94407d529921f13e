"""Attacks a freshly built set of packs the way a hostile or unlucky user would, and prints the
table of issue 12: attack, tries, clean errors, silent accepts, wrong answers, crashes, stray files.

The attacks and the judge are tests/attack's (attacks.py, craft.py); this runs many more tries.
Target: 0 crashes, 0 wrong answers, 0 stray files; silent accepts only where the changed bytes
are provably not used (the answers are identical to the untouched pack's).

    python -m experiments.attack_report [--quick] [--details N]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from tests.attack import attacks, craft

COLUMNS = ("clean", "silent", "wrong", "crash", "stray")
MEMORY_LIMIT = 8 << 30


def rows(bench: attacks.Workbench, quick: bool) -> Iterable[tuple[str, Callable[[], Iterable]]]:
    """(attack, a generator of its outcomes), in the order of the issue's sections."""
    rng = random.Random(12)
    step = 9 if quick else 1
    image = bench.packs["image"]
    span = attacks.manifest_span(image)
    yield (
        "archive: bit flip at every byte of the manifest entry",
        lambda: (attacks.archive_flip(bench, "image", p, p % 8) for p in span[::step]),
    )
    for name in ("image", "image-deflated", "text"):
        size = bench.packs[name].stat().st_size
        count = 60 if quick else 500
        yield (
            f"archive: bit flip at {count} random bytes ({name} pack, {size} B)",
            lambda name=name, size=size, count=count: (
                attacks.archive_flip(bench, name, rng.randrange(size), rng.randrange(8))
                for _ in range(count)
            ),
        )
    manifest_size = (bench.packs["image-dir"] / "manifest.json").stat().st_size
    yield (
        "directory: bit flip at every byte of manifest.json",
        lambda: (
            attacks.directory_manifest_flip(bench, p, p % 8) for p in range(0, manifest_size, step)
        ),
    )
    size = image.stat().st_size
    yield (
        "archive: truncated at every 7th length",
        lambda: (attacks.truncated(bench, "image", n) for n in range(0, size, 7 * step)),
    )
    yield (
        "archive: duplicate entry names",
        lambda: (attacks.duplicate_entry(bench, k) for k in attacks.DUPLICATES.values()),
    )
    yield (
        "archive: 'encrypted' flag on each entry",
        lambda: (
            attacks.encrypted(bench, name, i)
            for name in ("image", "text", "image-deflated")
            for i in range(3)
        ),
    )
    yield (
        "archive: bombs (1 GiB entry listed as 10 B; 1 GiB manifest)",
        lambda: (attacks.bomb(bench, kind) for kind in ("asset", "manifest")),
    )
    yield (
        "ONNX external data (unlisted, working dir, ../)",
        lambda: (attacks.external_data(bench, c) for c in range(len(attacks.EXTERNAL))),
    )
    yield (
        "symlinked folders (model, asset)",
        lambda: (attacks.symlinked_folder(bench, c) for c in range(len(attacks.SYMLINKS))),
    )
    loads = 60 if quick else 300
    yield (
        f"race: model replaced (rename) during {loads} loads",
        lambda: attacks.race(bench, loads, "replace"),
    )
    yield (
        f"race: model rewritten in place during {loads} loads",
        lambda: attacks.race(bench, loads, "inplace"),
    )
    yield (
        "manifest changed where no file hash looks",
        lambda: (attacks.tampered_manifest(bench, c) for c in range(3)),
    )
    yield (
        "signed packs: unsigned / other key / tampered (trusted key given)",
        lambda: (attacks.signature(bench, c) for c in range(4)),
    )
    yield (
        "malformed manifests (issue's list and more)",
        lambda: (attacks.malformed(bench, case) for case in attacks.MALFORMED),
    )
    fuzz = 300 if quick else 3000
    yield (
        f"manifest fuzz, re-hashed ({fuzz} mutations; valid ones accepted)",
        lambda: (
            attacks.fuzzed_manifest(
                bench,
                [rng.randrange(50) for _ in range(rng.randrange(1, 6))],
                rng.choice(attacks.HOSTILE_VALUES),
                rng.random() < 0.2,
            )
            for _ in range(fuzz)
        ),
    )
    for sig in (signal.SIGKILL, signal.SIGTERM):
        for dest in ("p", "p.edgepack"):
            yield (
                f"{sig.name} during a pack write ({'archive' if dest.endswith('k') else 'dir'})",
                lambda sig=sig, dest=dest: _kill_points(bench, dest, sig, 6 if quick else 30),
            )
    yield (
        "SIGTERM / SIGKILL during quantize (temp folders)",
        lambda: (
            attacks.killed_quantize(bench, sig, n)
            for sig in (signal.SIGTERM, signal.SIGKILL)
            for n in ((1,) if quick else (1, 2, 3))
        ),
    )
    yield (
        "run() / predict() bad inputs",
        lambda: (attacks.bad_input(bench, case) for case in attacks.INPUTS),
    )
    yield (
        "CLI bad inputs (exit 2 usage, 1 refused, one line)",
        lambda: (craft.judge_cli(argv, code) for argv, code in attacks.cli_cases(bench).values()),
    )


def _kill_points(bench: attacks.Workbench, dest: str, sig: int, count: int) -> Iterable:
    total = attacks.write_points(bench, dest)
    # spread over the write, and the last few (the renames into place) each
    spread = {1 + round(i * (total - 1) / max(count - 1, 1)) for i in range(count)}
    points = sorted(spread | set(range(max(1, total - 5), total + 1)))
    return (attacks.killed_write(bench, dest, sig, p) for p in points)


def many_files(bench: attacks.Workbench, counts: tuple[int, ...]) -> str:
    """Load time per listed file at growing counts: flat when loading is linear."""
    figures = []
    for count in counts:
        pack = attacks.many_files_pack(bench, count)
        seconds = min(attacks.seconds(lambda p=pack: craft.ep.load(p, threads=1)) for _ in range(3))
        figures.append(f"{count} files {seconds:.2f} s ({seconds / count * 1e6:.0f} us/file)")
    return "; ".join(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer tries per attack")
    parser.add_argument("--details", type=int, default=2, help="examples shown per bad outcome")
    parser.add_argument("--only", help="run the attacks whose name holds this text")
    args = parser.parse_args()
    # An attack that makes the reader allocate without bound must end as a MemoryError here
    # (counted as a crash), not take the machine down.
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, resource.RLIM_INFINITY))
    with tempfile.TemporaryDirectory(prefix="attack-report-") as tmp:
        # A temp dir of our own: other programs' edgepack-* folders must not count as strays.
        (Path(tmp) / "tmp").mkdir()
        tempfile.tempdir = os.environ["TMPDIR"] = str(Path(tmp) / "tmp")
        bench = attacks.Workbench(Path(tmp))
        table, notes = [], []
        for attack, outcomes in rows(bench, args.quick):
            if args.only and args.only not in attack:
                continue
            before = attacks.tmp_strays()
            start = time.perf_counter()
            counts: Counter[str] = Counter()
            examples: dict[str, list[str]] = {}
            tries = 0
            for outcome, detail in outcomes():
                tries += 1
                counts[outcome] += 1
                if outcome in ("wrong", "crash", "stray"):
                    examples.setdefault(outcome, []).append(detail.splitlines()[0][:160])
            counts["stray"] += len(attacks.tmp_strays() - before)
            table.append((attack, tries, counts))
            seconds = time.perf_counter() - start
            print(f"  {attack}: {dict(counts)} ({seconds:.0f} s)", file=sys.stderr, flush=True)
            for outcome, details in examples.items():
                for detail in details[: args.details]:
                    notes.append(f"- {attack} / {outcome}: {detail}")
        timing = many_files(bench, (1000, 4000) if args.quick else (1000, 4000, 8000))
    print(f"| attack | tries | {' | '.join(COLUMNS)} |")
    print("|---|---:|" + "---:|" * len(COLUMNS))
    total: Counter[str] = Counter()
    for attack, tries, counts in table:
        total.update(counts)
        total["tries"] += tries
        print(f"| {attack} | {tries} | {' | '.join(str(counts[c]) for c in COLUMNS)} |")
    print(f"| **all** | {total['tries']} | {' | '.join(str(total[c]) for c in COLUMNS)} |")
    print(f"\nmany listed files, load(): {timing}")
    if notes:
        print("\nexamples of outcomes off target:")
        print("\n".join(notes))


if __name__ == "__main__":
    main()
