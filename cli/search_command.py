"""Search a recipe's knobs ([search] table) for the fastest pack within an accuracy budget on
each device profile; workers on several machines share one study through --storage."""

from __future__ import annotations

import argparse

from .arguments import add_budget, add_output, add_profile


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe .toml file with a [search] table")
    add_profile(
        parser,
        "device profile to optimise for (repeat for several; 'host' is measured here)",
        repeat=True,
        required=True,
    )
    add_budget(parser, "accuracy points below the source allowed (default: recipe's)")
    parser.add_argument(
        "--trials",
        type=int,
        help="finished trials the study should hold, over all workers (default 20 without "
        "--timeout)",
    )
    parser.add_argument("--timeout", type=float, help="stop starting trials after S seconds")
    parser.add_argument(
        "--storage",
        help="Optuna storage URL shared by the workers: sqlite:///study.db on one machine, "
        "postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB across machines "
        "(default sqlite:///OUTPUT/study.db)",
    )
    parser.add_argument("--study", help="study name (default: the recipe's name)")
    parser.add_argument(
        "--heartbeat",
        type=int,
        default=None,
        help="seconds between a worker's heartbeats; a trial silent for twice this is failed "
        "and redone (default 20)",
    )
    parser.add_argument("--seed", type=int, help="sampler seed (default: random per worker)")
    add_output(parser, "output folder", default="edgepack-search")


def main(args: argparse.Namespace) -> int:
    from edgepack.compress.search import DEFAULT_HEARTBEAT_S, run_search  # workstation only

    result = run_search(
        args.recipe,
        profiles=args.profile,
        budget=args.budget,
        trials=args.trials,
        timeout=args.timeout,
        storage=args.storage,
        study=args.study,
        output=args.output,
        heartbeat_s=args.heartbeat or DEFAULT_HEARTBEAT_S,
        seed=args.seed,
    )
    for profile in result.profiles:
        print()
        print(result.table(profile))
    print()
    for profile in result.profiles:
        if profile in result.best:
            figures = result.best[profile].figures[profile]
            print(
                f"{profile}: {result.packs[profile]} ({figures.model}, {figures.latency_ms:.3f} "
                f"ms {figures.latency_kind}, accuracy {figures.accuracy:.2f})"
            )
        else:
            print(f"{profile}: no trial met the budget of {result.budget:g} points")
    print(f"report: {result.report}")
    return 0 if result.best else 1
