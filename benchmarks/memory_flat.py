"""Memory over a long run: resident memory after 10,000 run() calls against after 100.

    python benchmarks/memory_flat.py PACK [--backend onnxruntime] [--threads 1] [--runs 10000]

Target (issue 2): RSS after 10,000 runs within 2% of RSS after 100. A leak of even one small
array per call shows here: 10,000 x 40 bytes is 0.4 MB.
"""

from __future__ import annotations

import argparse
import sys

from edgepack.benchmarks.inputs import synthetic_inputs
from edgepack.runtime import load


def current_rss_bytes() -> int:
    """VmRSS now (not the peak): what a leak would make grow."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise OSError("/proc/self/status has no VmRSS (this check needs Linux)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("pack")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--warm", type=int, default=100, help="runs before the first reading")
    args = parser.parse_args(argv)

    model = load(args.pack, backend=args.backend, threads=args.threads)
    feeds = synthetic_inputs(model.entry)
    # A plain loop, untimed: the harness's measure() keeps every latency, and its samples grew
    # RSS by 3.5% over 15,000 calls of a tiny pack (2.3 MiB), the very thing checked here.
    for _ in range(args.warm):
        model.run(feeds)
    after_warm = current_rss_bytes()
    for _ in range(args.runs - args.warm):
        model.run(feeds)
    after_all = current_rss_bytes()
    growth = 100 * (after_all - after_warm) / after_warm
    print(f"{model.describe()['model_file']} on {model.backend}, {args.threads} thread(s)")
    print(
        f"RSS after {args.warm:,} runs: {after_warm / 2**20:.2f} MiB; after {args.runs:,}: "
        f"{after_all / 2**20:.2f} MiB ({growth:+.2f}%); target within 2%: "
        f"{'met' if abs(growth) <= 2 else 'NOT met'}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
