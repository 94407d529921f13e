"""The `edgepack` command: one subcommand per module in this package, mirroring the Python API.

Subcommand modules import only the device runtime at the top; anything from compress/ is
imported inside the command that needs it, so `edgepack run` works with the base install.
"""

from __future__ import annotations

import argparse
import importlib
import signal
import sys
import warnings

from edgepack.runtime import EdgepackError, __version__

# subcommand -> module in edgepack.cli that defines add_arguments(parser) and main(args) -> int
COMMANDS = {
    "pack": ("pack_command", "wrap ONNX/TFLite files into a pack"),
    "info": ("info_command", "show what a pack holds"),
    "verify": ("verify_command", "check a pack's manifest, every file hash and its signature"),
    "sign": ("sign_command", "sign a pack with an Ed25519 key"),
    "run": ("run_command", "run a pack on text, an image or .npy arrays"),
    "estimate": ("estimate_command", "estimate a pack's latency on a device profile"),
    "finetune": ("finetune_command", "fine-tune a Hugging Face folder into a text classifier"),
    "quantize": ("quantize_command", "quantize a model or pack to int8 within an accuracy budget"),
    "compress": ("compress_command", "run a compression recipe (stages in a TOML file)"),
    "demo": ("demo_command", "the main job on the bundled digits CNN: packs, estimates, report"),
    "optimize": ("optimize_command", "your model to the fastest pack within budget per device"),
    "search": ("search_command", "search a recipe's knobs for the fastest pack within budget"),
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
    **dict.fromkeys(("torch_pruning", "tqdm", "sklearn"), "compress"),
    **dict.fromkeys(("optuna", "sqlalchemy", "psycopg"), "search"),
    "cryptography": "sign",
    **dict.fromkeys(("litert_torch", "ai_edge_quantizer"), "convert"),
    "ai_edge_litert": "tflite",
    "matplotlib": "report",
}
# Old command names kept for one release: alias -> (command, release that removes it).
DEPRECATED_ALIASES = {"predict": ("estimate", "0.3")}


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line, like every other refusal (exit 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (--help shows the usage)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="edgepack", description="Take a trained model to an edge device and measure it there."
    )
    parser.add_argument("--version", action="version", version=f"edgepack {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks instead of one line")
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
    """Run one command: exit 0, 1 with one line on stderr when an input is refused, 2 for a
    usage error (argparse), 130 on Ctrl-C and 143 on SIGTERM, after cleaning up the same way."""
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # for a command that relaunches
    if args.command in DEPRECATED_ALIASES:
        new, removal = DEPRECATED_ALIASES[args.command]
        print(
            f"edgepack {args.command}: deprecated, use `edgepack {new}` "
            f"(the old name goes in {removal})",
            file=sys.stderr,
        )
    previous = _raise_on_sigterm()
    try:
        with warnings.catch_warnings():
            warnings.showwarning = _warning_line(args.command)
            return args.handler(args)
    except EdgepackError as exc:
        if args.debug:
            raise
        return _fail(args.command, f"error: {exc}", 1)
    except ModuleNotFoundError as exc:
        hint = missing_extra(exc)
        if hint is None or args.debug:
            raise
        return _fail(args.command, hint, 1)
    except KeyboardInterrupt:
        return _fail(args.command, "interrupted", 130)
    except _Terminated:
        return _fail(args.command, "terminated", 143)
    except Exception as exc:  # a bug of ours: still one line, and --debug for the traceback
        if args.debug:
            raise
        return _fail(args.command, f"internal error: {type(exc).__name__}: {exc} (--debug)", 1)
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _warning_line(command: str):
    """edgepack's own warnings (a pixel range, a CPU feature) as one line, like its errors;
    others as Python shows them."""
    original = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if category.__module__.startswith("edgepack."):
            text = " ".join(f"edgepack {command}: warning: {message}".split())
            print(text, file=sys.stderr)
        else:
            original(message, category, filename, lineno, file, line)

    return show


class _Terminated(BaseException):
    """SIGTERM as an exception, so every `finally` and temporary folder cleans up on the way out,
    as on Ctrl-C (a BaseException: no `except Exception` swallows it)."""


def _raise_on_sigterm():
    def terminate(signum, frame):
        raise _Terminated

    try:
        return signal.signal(signal.SIGTERM, terminate)
    except ValueError:  # not the main thread: leave signals to the host program
        return None


def _fail(command: str, message: str, code: int) -> int:
    """One line on stderr whatever the message holds (newlines, unpaired surrogates)."""
    line = " ".join(f"edgepack {command}: {message}".split())
    print(line.encode("utf-8", "backslashreplace").decode("utf-8"), file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
