"""Quantize an ONNX model, a Hugging Face folder or a pack to int8 within an accuracy budget."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgepack.cli.info_command import describe
from edgepack.packing import scratch_dir
from edgepack.runtime import InputError
from edgepack.runtime.pack import PackReader


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help=".onnx file, Hugging Face model folder, or pack")
    parser.add_argument("-o", "--output", required=True, help="pack to write")
    parser.add_argument(
        "--method",
        choices=["dynamic", "static"],
        action="append",
        help="quantization method (repeat to try both; default dynamic)",
    )
    parser.add_argument(
        "--calibration",
        choices=["minmax", "entropy", "percentile"],
        default="minmax",
        help="static: how activation ranges are calibrated",
    )
    parser.add_argument("--per-channel", action="store_true", help="per-channel weight scales")
    parser.add_argument("--reduce-range", action="store_true", help="7-bit weights (old CPUs)")
    parser.add_argument("--op-types", nargs="+", help="op types to quantize (default: all)")
    parser.add_argument(
        "--calib", help="calibration data: sklearn:NAME, .csv/.tsv/.jsonl, .npz, or an image folder"
    )
    parser.add_argument("--eval", dest="eval_data", help="evaluation data (same kinds)")
    parser.add_argument(
        "--budget",
        type=float,
        default=1.0,
        help="largest metric drop vs fp32, in points (default 1.0)",
    )
    parser.add_argument("--metric", help="accuracy, macro_f1, precision, recall, agreement, cosine")
    parser.add_argument(
        "--min-speedup",
        type=float,
        default=1.0,
        help="fp32/int8 p50 a result needs here (default 1.0; 0: no requirement)",
    )
    parser.add_argument(
        "--sample-shape", type=int, nargs="+", help="reshape each data sample, e.g. 1 8 8"
    )
    parser.add_argument("--input-name", help="the model input the data feeds (array data)")
    parser.add_argument("--name", help="pack name (default: the output's name)")
    parser.add_argument("--task", default="other")
    parser.add_argument("--quiet", action="store_true")


def main(args: argparse.Namespace) -> int:
    from edgepack.compress.recipe import Recipe, run_recipe  # workstation only

    stage: dict = {"type": "quantize", "budget": args.budget, "min_speedup": args.min_speedup}
    if args.metric:
        stage["metric"] = args.metric
    stage["candidates"] = [_options(method, args) for method in args.method or ["dynamic"]]
    options = {}
    if args.sample_shape:
        options["sample_shape"] = args.sample_shape
    if args.input_name:
        options["input_name"] = args.input_name
    output = Path(args.output)
    recipe = Recipe(
        name=args.name or output.name.removesuffix(".edgepack"),
        output=str(output),
        task=args.task,
        data={"calibration": args.calib, "evaluation": args.eval_data, "options": options},
        stages=[stage],
    )
    with scratch_dir("edgepack-quantize-") as tmp:
        recipe.source = _source(Path(args.model), recipe, Path(tmp))
        manifest = run_recipe(recipe, progress=not args.quiet)
    print(f"wrote {output}")
    print(describe(manifest), end="")
    return 0


def _options(method: str, args: argparse.Namespace) -> dict:
    options = {"method": method, "per_channel": args.per_channel, "reduce_range": args.reduce_range}
    if args.op_types:
        options["op_types"] = tuple(args.op_types)
    if method == "static":
        options["calibration"] = args.calibration
    return options


def _source(model: Path, recipe, tmp: Path) -> str:
    """An ONNX file or HF folder as it is; a pack gives its fp32 ONNX model, preprocessing,
    labels and assets, which the new pack keeps."""
    is_pack = (model / "manifest.json").is_file() or model.name.endswith(".edgepack")
    if not is_pack:
        return str(model)
    with PackReader(model) as reader:
        manifest = reader.manifest
        entry = next(
            (m for m in manifest.models if m.format == "onnx" and m.precision == "fp32"), None
        )
        if entry is None:
            raise InputError(f"pack {model} has no fp32 ONNX model to quantize")
        source = tmp / "model.onnx"
        source.write_bytes(reader.read(entry.path))
        for asset in manifest.files:
            (tmp / asset.path).parent.mkdir(parents=True, exist_ok=True)
            (tmp / asset.path).write_bytes(reader.read(asset.path))
            recipe.assets[asset.path] = {"source": str(tmp / asset.path), "role": asset.role}
    recipe.task = manifest.task
    recipe.preprocessing = manifest.preprocessing
    recipe.postprocessing = manifest.postprocessing
    return str(source)
