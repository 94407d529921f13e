"""The `edgepack` command: one subcommand per module in this package, mirroring the Python API.

Subcommand modules import only the device runtime at the top; anything from compress/ is
imported inside the command that needs it, so `edgepack run` works with the base install.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from edgepack.runtime import EdgepackError, __version__

# subcommand -> module in edgepack.cli that defines add_arguments(parser) and main(args) -> int
COMMANDS = {
    "pack": ("pack_command", "wrap ONNX/TFLite files into a pack"),
    "info": ("info_command", "show what a pack holds"),
    "verify": ("verify_command", "check a pack's manifest and every file hash"),
    "run": ("run_command", "run a pack on text, an image or .npy arrays"),
    "estimate": ("estimate_command", "estimate a pack's latency on a device profile"),
    "finetune": ("finetune_command", "fine-tune a Hugging Face folder into a text classifier"),
    "quantize": ("quantize_command", "quantize a model or pack to int8 within an accuracy budget"),
    "compress": ("compress_command", "run a compression recipe (stages in a TOML file)"),
    "demo": ("demo_command", "the main job: digits CNN to a benchmarked int8 pack"),
    "bench": ("bench_command", "benchmark packs here or under a device profile"),
    "profiles": ("profiles_command", "list device profiles or show one with its sources"),
    "bundle": ("bundle_command", "bundle a pack with its runtime's wheels for offline install"),
    "deploy": ("deploy_command", "deploy a bundle over SSH to devices, or roll one back"),
}
# A workstation command on a base install: the missing import's top package -> the extra
# that brings it, so the user gets one line to act on instead of a traceback.
EXTRA_OF_MODULE = {
    **dict.fromkeys(
        ("torch", "onnx", "onnxscript", "optimum", "transformers", "tokenizers"), "compress"
    ),
    **dict.fromkeys(("torch_pruning", "tqdm", "sklearn", "optuna"), "compress"),
    **dict.fromkeys(("litert_torch", "ai_edge_quantizer"), "convert"),
    "ai_edge_litert": "tflite",
    "matplotlib": "report",
}
# Old command names kept for one release: alias -> (command, release that removes it).
DEPRECATED_ALIASES = {"predict": ("estimate", "0.3")}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgepack", description="Take a trained model to an edge device and measure it there."
    )
    parser.add_argument("--version", action="version", version=f"edgepack {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(f"edgepack.cli.{module_name}")
        aliases = [old for old, (new, _) in DEPRECATED_ALIASES.items() if new == name]
        command = sub.add_parser(
            name, aliases=aliases, help=help_text, description=first_paragraph(module.__doc__)
        )
        module.add_arguments(command)
        command.set_defaults(handler=module.main)
    return parser


def first_paragraph(doc: str | None) -> str | None:
    """A module docstring's first paragraph, whole: `--help` shows no sentence cut in two."""
    if not doc:
        return None
    return " ".join(doc.strip().split("\n\n")[0].split())


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """`needs the X extra` for an import that an extra provides, else None (a real bug)."""
    top = (exc.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(top)
    if extra is None:
        return None
    return f"needs the `{extra}` extra ({top} is not installed): pip install 'edgepack[{extra}]'"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command in DEPRECATED_ALIASES:
        new, removal = DEPRECATED_ALIASES[args.command]
        print(
            f"edgepack {args.command}: deprecated, use `edgepack {new}` "
            f"(the old name goes in {removal})",
            file=sys.stderr,
        )
    try:
        return args.handler(args)
    except EdgepackError as exc:
        print(f"edgepack {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except ModuleNotFoundError as exc:
        hint = missing_extra(exc)
        if hint is None:
            raise
        print(f"edgepack {args.command}: {hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"edgepack {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
