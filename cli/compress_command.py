"""Run a compression recipe (a TOML file of stages) into a pack, with a report of every stage
(report.md, report.html, report.json and plots, beside the pack); see compress/recipe.py.

`--nproc N` runs it under torchrun on N processes of this machine (gloo on CPU, nccl on GPUs):
the distill stage trains on all of them, rank 0 does the rest and writes everything. Several
machines: run on each `torchrun --nnodes M --nproc-per-node N --rdzv-backend c10d
--rdzv-endpoint HOST:29500 --rdzv-id RUN -m edgepack.cli.main compress RECIPE --workdir DIR`.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from edgepack.cli.info_command import describe
from edgepack.cli.pack_options import add_pack_options, run_recipe_with_pack_options
from edgepack.cli.quantize_command import speed_line
from edgepack.runtime import InputError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe .toml file")
    parser.add_argument("-o", "--output", help="pack to write (overrides the recipe's output)")
    parser.add_argument(
        "--profile",
        help="target device profile (overrides the recipe's profile): its int8 scheme and "
        "speed rule (measured when this host is that device, else estimated)",
    )
    parser.add_argument(
        "--report",
        metavar="DIR",
        help="folder for the stage report (default: PACK-report beside the pack)",
    )
    parser.add_argument(
        "--no-report",
        action="store_true",
        help="skip the stage report (it scores and times the model of every stage)",
    )
    parser.add_argument(
        "--workdir",
        metavar="DIR",
        help="keep training checkpoints here; rerunning the same command resumes from them",
    )
    parser.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="processes for the distill stage on this machine (launches torchrun)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars or tables")
    parser.add_argument("-v", "--verbose", action="store_true", help="show third-party output")
    add_pack_options(parser)  # over the recipe's [preprocessing] and [postprocessing]


def main(args: argparse.Namespace) -> int:
    if args.nproc < 1:
        raise InputError(f"--nproc must be a positive number of processes, got {args.nproc}")
    if args.nproc > 1 and "WORLD_SIZE" not in os.environ:
        return _launch(args)
    from edgepack.compress.quiet import cached_log, quiet  # workstation only
    from edgepack.compress.recipe import Recipe, set_option

    recipe = Recipe.load(args.recipe)
    if args.output:
        recipe.output = args.output
    if args.profile:
        recipe = set_option(recipe, "profile", args.profile)
    if args.workdir:
        recipe.workdir = args.workdir
    report = None if args.no_report else (args.report or report_dir(recipe.output))
    name = Path(recipe.output).name.removesuffix(".edgepack")
    log = Path(report) / "logs" / "compress.log" if report else cached_log(f"compress-{name}.log")
    with quiet(log, verbose=args.verbose):
        manifest = run_recipe_with_pack_options(
            recipe, args, progress=not args.quiet, report=report
        )
    if manifest is None:  # a torchrun rank other than 0: rank 0 reports
        return 0
    print(f"wrote {recipe.output}" + (f"; stage report: {report}/report.md" if report else ""))
    say_log(log, args.verbose)
    print(speed_line(manifest))
    print(describe(manifest), end="")
    return 0


def say_log(log: Path, verbose: bool) -> None:
    """Where third-party output went (absl, LiteRT-Torch, onnxruntime's quantizer, ...)."""
    if not verbose and log.is_file() and log.stat().st_size:
        print(f"third-party output (-v shows it): {log}")


def report_dir(pack: str) -> str:
    """Where a pack's stage report goes by default: `NAME-report` beside it."""
    path = Path(pack)
    return str(path.with_name(path.name.removesuffix(".edgepack") + "-report"))


def _launch(args: argparse.Namespace) -> int:
    """This command again, with the same arguments but --nproc, under torchrun on args.nproc
    local processes."""
    argv, skip = [], False
    for item in args.argv:
        if skip or item == "--nproc" or item.startswith("--nproc="):
            skip = item == "--nproc"
            continue
        argv.append(item)
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc-per-node", str(args.nproc), "-m", "edgepack.cli.main", *argv]
    env = dict(os.environ)
    env.setdefault("GLOO_SOCKET_IFNAME", "lo")  # one machine: the processes talk over loopback
    return subprocess.run(command, check=False, env=env).returncode
