"""Run a compression recipe (a TOML file of stages) into a pack; see compress/recipe.py."""

from __future__ import annotations

import argparse

from edgepack.cli.info_command import describe


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe .toml file")
    parser.add_argument("-o", "--output", help="pack to write (overrides the recipe's output)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars or tables")


def main(args: argparse.Namespace) -> int:
    from edgepack.compress.recipe import Recipe, run_recipe  # workstation only

    recipe = Recipe.load(args.recipe)
    if args.output:
        recipe.output = args.output
    manifest = run_recipe(recipe, progress=not args.quiet)
    print(f"wrote {recipe.output}")
    print(describe(manifest), end="")
    return 0
