"""Benchmark packs on this machine, or on it under a device profile's cores and threads
(MLPerf-style: warm-up, minimum count and duration; p50/p90/p99 with confidence intervals)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgepack.benchmarks.harness import DEFAULT_BATCH_SIZES, SCENARIOS, benchmark, compare
from edgepack.benchmarks.inputs import SPEC_HELP, parse_input_spec
from edgepack.benchmarks.report import format_table, require_matplotlib, write_csv, write_report
from edgepack.runtime import InputError

from .arguments import name_value
from .deploy_command import add_ssh_arguments, ssh_options
from .run_command import add_runtime_arguments


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("packs", nargs="+", metavar="PACK", help="pack directories or archives")
    parser.add_argument(
        "--profile", help="device profile name or .toml path (see `edgepack profiles`)"
    )
    add_runtime_arguments(parser)
    parser.add_argument("--scenario", choices=SCENARIOS, default="single-stream")
    parser.add_argument(
        "--stream",
        dest="scenario",
        action="store_const",
        const="stream",
        help="a stateful model called back to back, fed back its state (--scenario stream)",
    )
    parser.add_argument(
        "--feed",
        action="append",
        default=[],
        metavar="INPUT=OUTPUT",
        help="stream: feed this output back as that input (default: the pack's, else by name)",
    )
    parser.add_argument(
        "--chunk-ms",
        type=float,
        help="stream: milliseconds of signal per call, for the real-time factor "
        "(default: from a sample-rate input)",
    )
    parser.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help=f"an input's shape and values ({SPEC_HELP}); default: the pack's example inputs",
    )
    parser.add_argument("--inputs", metavar="FILE.npz", help="real input arrays by input name")
    parser.add_argument("--warmup", type=int, default=10, help="untimed queries first (10)")
    parser.add_argument(
        "--min-count", type=int, default=200, help="at least this many queries (200)"
    )
    parser.add_argument(
        "--min-duration", type=float, default=5.0, help="and at least this many seconds (5)"
    )
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=list(DEFAULT_BATCH_SIZES),
        help="offline: batch sizes to try, where the model's batch is not fixed",
    )
    parser.add_argument("--rate", type=float, help="server: Poisson arrivals per second")
    parser.add_argument(
        "--p99-bound-ms", type=float, help="server: find the highest rate whose p99 stays within"
    )
    parser.add_argument(
        "--dim",
        action="append",
        default=[],
        metavar="NAME=SIZE",
        help="size of a named input dim, e.g. sequence=128 (default: batch 1, others 64)",
    )
    parser.add_argument(
        "--cold-starts", type=int, default=3, help="new processes timed for cold start (0: skip)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--compare", action="store_true", help="run the packs interleaved, in one table"
    )
    parser.add_argument(
        "--estimate",
        "--predict",  # the old name, kept for one release
        action=_Estimate,
        nargs=0,
        default=False,
        help="also estimate the latency on the profile from the pack's cost summary",
    )
    parser.add_argument(
        "--remote",
        metavar="URL",
        help="run on the device at ssh://[user@]host[:port][/path] where the pack's bundle is "
        "current (edgepack deploy), and bring its measurement back",
    )
    add_ssh_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON instead of the table")
    parser.add_argument("--csv", metavar="FILE", help="also write one CSV row per pack")
    parser.add_argument("--report", metavar="DIR", help="also write report.md/.html with plots")
    parser.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress line on stderr (default: when stderr is a terminal)",
    )


def main(args: argparse.Namespace) -> int:
    if args.report:
        require_matplotlib()  # before minutes of measuring, not after
    options = {
        "profile": args.profile,
        "backend": args.backend,
        "threads": args.threads,
        "providers": args.providers,
        "scenario": args.scenario,
        "warmup": args.warmup,
        "min_count": args.min_count,
        "min_duration_s": args.min_duration,
        "batch_sizes": args.batch_sizes,
        "rate": args.rate,
        "p99_bound_ms": args.p99_bound_ms,
        "dims": dict(_dim(item) for item in args.dim),
        "inputs": dict(parse_input_spec(item) for item in args.input),
        "input_file": _npz(args.inputs),
        "feed": dict(
            name_value(item, "--feed", "INPUT=OUTPUT (e.g. state=stateN)") for item in args.feed
        ),
        "chunk_s": args.chunk_ms / 1000 if args.chunk_ms else None,
        "cold_starts": args.cold_starts,
        "seed": args.seed,
        "estimate": args.estimate,
        "progress": sys.stderr.isatty() if args.progress is None else args.progress,
    }
    if args.remote:
        groups = [_remote(args)]
    elif args.compare:
        groups = [compare(args.packs, **options)]
    else:
        groups = [[benchmark(pack, **options)] for pack in args.packs]
    results = [r for group in groups for r in group]
    if args.json:
        print(json.dumps({"results": [r.to_dict() for r in results]}, indent=1))
    else:
        print("\n".join(format_table(group) for group in groups), end="")
        profile = results[0].profile
        if results[0].emulation and not args.estimate:
            print(
                f"note: measured on this host under {profile}'s cores and threads, not on "
                f"{profile} itself; add --estimate for an estimated {profile} latency"
            )
    if args.csv:
        print(f"wrote {write_csv(results, args.csv)}", file=sys.stderr)
    if args.report:
        written = write_report(results, args.report)
        print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    return 0


class _Estimate(argparse.Action):
    """--estimate; under its old name --predict it still works, with a note on stderr."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        if option_string == "--predict":
            print("edgepack bench: --predict is deprecated, use --estimate", file=sys.stderr)
        setattr(namespace, self.dest, True)


def _npz(path: str | None) -> str | None:
    if path is not None and not Path(path).is_file():
        raise InputError(f"--inputs: no file {path}; expected an .npz of arrays by input name")
    return path


def _remote(args: argparse.Namespace) -> list:
    """The device's own run of `edgepack bench` with these options, fetched back over ssh."""
    from edgepack.deploy.remote_bench import bench_remote
    from edgepack.deploy.ssh import SshTarget

    if len(args.packs) != 1 or args.compare or args.estimate or args.profile:
        raise InputError(
            "--remote benchmarks one pack on its device, where it is measured, not estimated: "
            "no --compare, --estimate or --profile"
        )
    device_args = [
        *("--scenario", args.scenario, "--warmup", str(args.warmup), "--seed", str(args.seed)),
        *("--min-count", str(args.min_count), "--min-duration", str(args.min_duration)),
        *("--cold-starts", str(args.cold_starts), "--backend", args.backend),
        *("--batch-sizes", *map(str, args.batch_sizes)),
    ]
    for flag, value in (("--threads", args.threads), ("--rate", args.rate),
                        ("--p99-bound-ms", args.p99_bound_ms)):  # fmt: skip
        if value is not None:
            device_args += [flag, str(value)]
    if args.inputs:
        raise InputError(
            "--inputs names a file here; give it to `edgepack pack --inputs` so it travels "
            "with the pack to the device"
        )
    if args.chunk_ms:
        device_args += ["--chunk-ms", str(args.chunk_ms)]
    for flag, items in (("--dim", args.dim), ("--input", args.input), ("--feed", args.feed)):
        for item in items:
            device_args += [flag, item]
    for provider in args.providers or []:
        device_args += ["--provider", provider]
    return bench_remote(
        args.packs[0],
        SshTarget.parse(args.remote),
        ssh_options(args),
        bench_args=device_args,
        progress=lambda line: print(line, file=sys.stderr),
    )


def _dim(item: str) -> tuple[str, int]:
    form = "NAME=SIZE with a positive size"
    name, size = name_value(item, "--dim", form)
    if not size.isdigit() or int(size) < 1:
        raise InputError(f"--dim takes {form}, got {item!r}")
    return name, int(size)
