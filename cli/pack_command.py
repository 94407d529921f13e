"""Wrap existing ONNX/TFLite files, labels and preprocessing assets into a pack."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgepack.benchmarks.inputs import SPEC_HELP, check_names, parse_input_spec
from edgepack.packing import assemble_pack, describe_model_file
from edgepack.runtime import InputError

from .arguments import name_value

TEXT_ROLES = ("input_ids", "attention_mask", "token_type_ids")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", help=".onnx and/or .tflite files")
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
    post = parser.add_argument_group("postprocessing")
    post.add_argument("--labels", help="labels file (one per line) or a comma-separated list")
    post.add_argument("--softmax", action="store_true", help="apply softmax to the scores")
    post.add_argument("--output-name", help="output holding the class scores (default: first)")
    text = parser.add_argument_group("text preprocessing (BERT WordPiece)")
    text.add_argument("--vocab", help="vocab.txt of the tokenizer")
    text.add_argument("--tokenizer-json", help="tokenizer.json, carried for other tools (not read)")
    text.add_argument("--max-length", type=int, default=128)
    text.add_argument("--cased", action="store_true", help="do not lower-case")
    text.add_argument("--padding", choices=["max_length", "longest"], default="max_length")
    image = parser.add_argument_group("image preprocessing")
    image.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"))
    image.add_argument("--layout", choices=["NCHW", "NHWC"], default="NCHW")
    image.add_argument("--color", choices=["rgb", "grayscale"], default="rgb")
    image.add_argument("--scale", type=float, default=1 / 255)
    image.add_argument("--mean", type=float, nargs="+", default=[0.0])
    image.add_argument("--std", type=float, nargs="+", default=[1.0])


def main(args: argparse.Namespace) -> int:
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
    input_names = [t.name for t in entries[0][1].inputs]
    assets, preprocessing, task = {}, None, args.task or "other"
    example = {"inputs": {n: s.to_dict() for n, s in specs.items()}} if specs else None
    if args.inputs:
        if not Path(args.inputs).is_file():
            raise InputError(f"--inputs: no file {args.inputs}; expected an .npz of input arrays")
        assets["example_inputs.npz"] = (args.inputs, "example-inputs")
        example = {**(example or {}), "file": "example_inputs.npz"}
    if args.vocab and args.image_size:
        raise InputError("give either text (--vocab) or image (--image-size) preprocessing")
    if args.vocab:
        assets["vocab.txt"] = (args.vocab, "vocab")
        preprocessing = {
            "kind": "text",
            "tokenizer": "wordpiece",
            "vocab_file": "vocab.txt",
            "lowercase": not args.cased,
            "strip_accents": None,
            "max_length": args.max_length,
            "padding": args.padding,
            "truncation": True,
            "input_names": {role: role for role in TEXT_ROLES if role in input_names},
        }
        if args.tokenizer_json:
            assets["tokenizer.json"] = (args.tokenizer_json, "tokenizer")
            preprocessing["tokenizer_file"] = "tokenizer.json"
        task = args.task or "text-classification"
    elif args.image_size:
        preprocessing = {
            "kind": "image",
            "input_name": input_names[0],
            "size": args.image_size,
            "layout": args.layout,
            "color": args.color,
            "scale": args.scale,
            "mean": args.mean,
            "std": args.std,
        }
        task = args.task or "image-classification"
    postprocessing = None
    if args.labels or args.softmax or args.output_name:
        postprocessing = {
            "output_name": args.output_name or entries[0][1].outputs[0].name,
            "softmax": args.softmax,
        }
        if args.labels:
            postprocessing["labels"] = _labels(args.labels)
    manifest = assemble_pack(
        args.output,
        entries,
        name=args.name,
        task=task,
        assets=assets,
        preprocessing=preprocessing,
        postprocessing=postprocessing,
        example_inputs=example,
        provenance={
            "source_model": ", ".join(str(Path(p)) for p in args.models),
            "stages": [{"name": "pack"}],
        },
    )
    print(f"wrote {args.output}: {len(manifest.models)} model(s), {len(manifest.files)} asset(s)")
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


def _labels(value: str) -> list[str]:
    """A labels file (one a line) or a comma-separated list; one name alone is a file's."""
    path = Path(value)
    if path.is_file():
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"--labels {value}: cannot read it as UTF-8 text ({exc})") from exc
        return [line.strip() for line in text.splitlines() if line.strip()]
    if "," not in value:
        raise InputError(
            f"--labels {value}: no such file; give a labels file (one per line) or a "
            "comma-separated list such as cat,dog"
        )
    return [label.strip() for label in value.split(",")]
