"""Run a compression recipe (a TOML file of stages) into a pack; see compress/recipe.py."""

from __future__ import annotations

import argparse

from edgepack.cli.info_command import describe
from edgepack.cli.pack_options import add_pack_options, run_recipe_with_pack_options
from edgepack.cli.quantize_command import speed_line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe .toml file")
    parser.add_argument("-o", "--output", help="pack to write (overrides the recipe's output)")
    parser.add_argument(
        "--profile",
        help="target device profile (overrides the recipe's profile): its int8 scheme and "
        "speed rule (measured when this host is that device, else estimated)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bars or tables")
    add_pack_options(parser)  # over the recipe's [preprocessing] and [postprocessing]


def main(args: argparse.Namespace) -> int:
    from edgepack.compress.recipe import Recipe, set_option  # workstation only

    recipe = Recipe.load(args.recipe)

    if args.output:
        recipe.output = args.output
    if args.profile:
        recipe = set_option(recipe, "profile", args.profile)
    manifest = run_recipe_with_pack_options(recipe, args, progress=not args.quiet)
    print(f"wrote {recipe.output}")
    print(speed_line(manifest))
    print(describe(manifest), end="")
    return 0
