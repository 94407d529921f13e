"""Wrap existing ONNX/TFLite files, labels and preprocessing assets into a pack, or change the
labels, softmax and preprocessing of an existing pack (`edgepack pack PACK --labels ... -o NEW`).

A changed pack keeps its models, checks, cost summaries, metrics and provenance; its files are
verified as they are read, and the new pack is re-hashed and written atomically.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edgepack.benchmarks.inputs import SPEC_HELP, check_names, parse_input_spec
from edgepack.cli.pack_options import Sections, add_pack_options, change_pack, given, pack_sections
from edgepack.packing import assemble_pack, describe_model_file
from edgepack.packing.repack import was_signed
from edgepack.runtime import InputError

from .arguments import name_value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "models", nargs="+", help=".onnx and/or .tflite files, or one pack to change"
    )
    parser.add_argument("-o", "--output", required=True, help="pack directory or NAME.edgepack")
    parser.add_argument("--name", help="pack name (default: the output's name)")
    parser.add_argument(
        "--task",
        default=None,
        choices=["text-classification", "image-classification", "feature-extraction", "other"],
    )
    parser.add_argument("--precision", help="override the precision read from the files")
    parser.add_argument(
        "--rename",
        action="append",
        default=[],
        metavar="TENSOR=NAME",
        help="name users pass for a file tensor, e.g. serving_default_args_0:0=x",
    )
    shapes = parser.add_argument_group("example inputs and shapes (for bench and the cost summary)")
    shapes.add_argument(
        "--input", action="append", default=[], metavar="NAME=SPEC",
        help=f"an example input, kept in the pack for bench ({SPEC_HELP})",
    )  # fmt: skip
    shapes.add_argument("--inputs", metavar="FILE.npz", help="real input arrays, kept in the pack")
    shapes.add_argument(
        "--input-shape", action="append", default=[], metavar="NAME=1x3x480x640",
        help="an input's shape for the cost summary (default: the --input shapes)",
    )  # fmt: skip
    shapes.add_argument(
        "--assume", action="append", default=[], metavar="DIM=SIZE",
        help="size of a named dynamic dim for the cost summary",
    )  # fmt: skip
    add_pack_options(parser)


def main(args: argparse.Namespace) -> int:
    if len(args.models) == 1 and is_pack(args.models[0]):
        return _change_pack(args)
    renames = dict(name_value(item, "--rename", "TENSOR=NAME", last=True) for item in args.rename)
    for path in [*args.models, args.vocab, args.tokenizer_json]:
        if path is not None and not Path(path).is_file():
            raise InputError(f"no file {path}: expected an existing .onnx/.tflite model or asset")
    entries = [
        (path, describe_model_file(path, precision=args.precision, names=renames))
        for path in args.models
    ]
    specs = dict(parse_input_spec(item) for item in args.input)
    shapes = {n: s.shape for n, s in specs.items() if s.shape is not None}
    shapes |= {n: s.shape for n, s in map(parse_input_spec, args.input_shape) if s.shape}
    assume = {n: int(s.values) for n, s in map(parse_input_spec, args.assume)}
    for path, entry in entries:
        check_names(entry, {**specs, **shapes}, "--input/--input-shape")
        entry.cost = _cost(path, entry.format, shapes, assume)
    first = entries[0][1]
    sections = pack_sections(
        args,
        [t.name for t in first.inputs],
        [t.name for t in first.outputs],
        Sections(args.task or "other", None, None),
    )
    if args.task:
        sections.task = args.task
    assets = dict(sections.assets)
    example = {"inputs": {n: s.to_dict() for n, s in specs.items()}} if specs else None
    if args.inputs:
        if not Path(args.inputs).is_file():
            raise InputError(f"--inputs: no file {args.inputs}; expected an .npz of input arrays")
        assets["example_inputs.npz"] = (args.inputs, "example-inputs")
        example = {**(example or {}), "file": "example_inputs.npz"}
    manifest = assemble_pack(
        args.output,
        entries,
        name=args.name,
        task=sections.task,
        assets=assets,
        preprocessing=sections.preprocessing,
        postprocessing=sections.postprocessing,
        example_inputs=example,
        provenance={
            "source_model": ", ".join(str(Path(p)) for p in args.models),
            "stages": [{"name": "pack"}],
        },
    )
    print(f"wrote {args.output}: {len(manifest.models)} model(s), {len(manifest.files)} asset(s)")
    return 0


def is_pack(path: str) -> bool:
    """A pack directory (with manifest.json) or a .edgepack archive, not a model file."""
    return (Path(path) / "manifest.json").is_file() or (
        Path(path).is_file() and path.endswith(".edgepack")
    )


# Options that describe model files: a pack's models are kept as they are.
_FILE_OPTIONS = ("precision", "rename", "input", "inputs", "input_shape", "assume")


def _change_pack(args: argparse.Namespace) -> int:
    """`pack PACK --labels ... -o NEW`: the pack option flags applied to an existing pack."""
    source = args.models[0]
    refused = [f"--{o.replace('_', '-')}" for o in _FILE_OPTIONS if getattr(args, o)]
    if refused:
        raise InputError(
            f"{', '.join(refused)}: describe model files, and a pack's models are kept as they "
            f"are; to change them, pack the model files again"
        )
    if not (given(args) or args.task or args.name):
        raise InputError(
            f"{source} is a pack and nothing was asked to change: give --labels, --softmax, "
            "--output-name, text (--vocab, --max-length, ...) or image (--image-size, --scale, "
            "--pixel-range, ...) options, --task or --name"
        )
    signed = was_signed(source)
    name = args.name or Path(args.output).name.removesuffix(".edgepack")
    manifest, changed = change_pack(args, source, args.output, name=name, task=args.task)
    print(
        f"wrote {args.output}: {source} with {', '.join(changed)} changed; "
        f"{len(manifest.models)} model(s), {len(manifest.files)} asset(s)"
    )
    if signed:
        print(f"note: {source} was signed; sign {args.output} again (edgepack sign)")
    return 0


def _cost(path: str, fmt: str, shapes: dict, assume: dict) -> dict | None:
    """The cost summary the latency estimator reads, at the given shapes; needs the compress
    extra (onnx; for TFLite files also the LiteRT interpreter). Never stops the pack."""
    try:
        from edgepack.compress.cost import cost_or_none, tflite_cost_summary
    except ImportError:
        print("note: no cost summary (needs the compress extra): no latency estimate for it")
        return None
    if fmt == "tflite":
        return tflite_cost_summary(path)
    cost, why = cost_or_none(path, assume, shapes)
    if why:
        print(f"warning: {Path(path).name}: {why}")
    return cost
