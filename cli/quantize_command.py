"""Quantize an ONNX model, a Hugging Face folder or a pack to int8 within an accuracy budget."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgepack.cli.info_command import describe
from edgepack.cli.pack_options import add_pack_options, run_recipe_with_pack_options
from edgepack.packing import scratch_dir
from edgepack.runtime import InputError, PackManifest
from edgepack.runtime.pack import PackReader


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", help=".onnx file, Hugging Face model folder, or pack")
    parser.add_argument("-o", "--output", required=True, help="pack to write")
    parser.add_argument(
        "--method",
        choices=["dynamic", "static"],
        action="append",
        help="quantization method (repeat to try both; default: the profile's, else by the "
        "graph's op mix: static for convolution-heavy graphs with --calib, else dynamic)",
    )
    parser.add_argument(
        "--profile",
        help="target device profile (rpi5, rpi4-1.8ghz, host, a .toml path): sets the int8 "
        "scheme (Arm: int8 symmetric activations, per-channel) and judges int8-vs-fp32 speed "
        "for it, measured when this host is that device, else estimated",
    )
    parser.add_argument(
        "--calibration",
        choices=["minmax", "entropy", "percentile"],
        help="static: how activation ranges are calibrated (default minmax)",
    )
    parser.add_argument(
        "--per-channel",
        action="store_true",
        default=None,
        help="per-channel weight scales (default: the profile's choice, else per tensor)",
    )
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
    parser.add_argument(
        "--input",
        action="append",
        default=[],
        metavar="NAME=SPEC",
        help="an example input (as bench takes it: sr=16000, state=2x1x128:zeros, "
        "x=1x3x480x640): int8 is checked against fp32 and timed on them without --calib/--eval",
    )
    parser.add_argument("--name", help="pack name (default: the output's name)")
    parser.add_argument(
        "--task", help="default: from a Hugging Face folder's config (architectures), else other"
    )
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bars (the result table is still shown)"
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show third-party output")
    add_pack_options(parser)  # over what the source gives (a pack's, a folder's id2label)


def main(args: argparse.Namespace) -> int:
    from edgepack.cli.compress_command import say_log
    from edgepack.compress.quiet import cached_log, quiet  # workstation only
    from edgepack.compress.recipe import Recipe

    stage: dict = {"type": "quantize", "budget": args.budget, "min_speedup": args.min_speedup}
    if args.metric:
        stage["metric"] = args.metric
    methods = args.method or [_method_by_op_mix(Path(args.model), args)]
    stage["candidates"] = [_options(method, args) for method in methods]
    options = {}
    if args.sample_shape:
        options["sample_shape"] = args.sample_shape
    if args.input_name:
        options["input_name"] = args.input_name
    output = Path(args.output)
    recipe = Recipe(
        name=args.name or output.name.removesuffix(".edgepack"),
        output=str(output),
        task=args.task or _task_from_config(Path(args.model)),
        profile=args.profile,
        data={
            "calibration": args.calib,
            "evaluation": args.eval_data,
            "options": options,
            **({"inputs": list(args.input)} if args.input else {}),
        },
        stages=[stage],
    )
    log = cached_log(f"quantize-{output.name.removesuffix('.edgepack')}.log")
    with scratch_dir("edgepack-quantize-") as tmp, quiet(log, verbose=args.verbose):
        recipe.source = _source(Path(args.model), recipe, Path(tmp))
        manifest = run_recipe_with_pack_options(recipe, args, progress=not args.quiet)
    print(f"wrote {output}")
    say_log(log, args.verbose)
    print(result_table(manifest))
    print(speed_line(manifest))
    print(describe(manifest), end="")
    return 0


TASKS_BY_ARCHITECTURE = {
    "ForSequenceClassification": "text-classification",
    "ForImageClassification": "image-classification",
}


def _task_from_config(model: Path) -> str:
    """The task a Hugging Face folder's config.json names in `architectures`; other for files."""
    config = model / "config.json"
    if not config.is_file():
        return "other"
    architectures = json.loads(config.read_text("utf-8")).get("architectures") or []
    for architecture in architectures:
        for suffix, task in TASKS_BY_ARCHITECTURE.items():
            if architecture.endswith(suffix):
                return task
    raise InputError(
        f"{config} names architectures {architectures}, none of them a task edgepack packs "
        f"(*{', *'.join(TASKS_BY_ARCHITECTURE)}); pass --task"
    )


def _method_by_op_mix(model: Path, args: argparse.Namespace) -> str | None:
    """None (the profile's or the default) unless the model is an ONNX file: then static for a
    convolution-heavy graph when there is calibration data, else dynamic; the reason is
    printed."""
    if args.profile or model.suffix != ".onnx" or not model.is_file():
        return None
    from edgepack.compress.quantize import suggest_method

    method, reason = suggest_method(model)
    if method == "static" and not (args.calib or args.input):
        method = "dynamic"
        reason += "; but static needs calibration data (--calib or --input), so dynamic"
    print(f"method: {reason}", file=sys.stderr)
    return method


def result_table(manifest: PackManifest) -> str:
    """fp32 against the int8 model the quantize stage kept, from the pack's metrics; shown
    even with --quiet."""
    fp32 = manifest.metrics.get("fp32", {})
    int8 = manifest.metrics.get("quantize", {})
    if "error" in int8 or not int8:
        return f"quantize: {int8.get('error', 'no int8 model')}"
    metric = next((k for k in int8 if k not in _NOT_METRICS and not k.startswith("check_")), None)
    if int8.get(metric) is None and int8.get("check_cosine") is not None:
        metric = "check_cosine"  # no evaluation data: the cosine with fp32 on the check inputs

    def cell(value) -> str:
        return "-" if value is None else f"{value:.2f}" if isinstance(value, float) else str(value)

    rows = [
        ["model", "size MB", metric or "metric", "p50 ms", "float nodes"],
        ["fp32", cell(fp32.get("size_bytes", 0) / 1e6), cell(fp32.get("metric")),
         cell(int8.get("fp32_p50_ms")), ""],
        [int8.get("method", "int8"), cell(int8.get("size_bytes", 0) / 1e6),
         cell(int8.get(metric)) if metric else "-", cell(int8.get("p50_ms")),
         cell(int8.get("float_nodes"))],
    ]  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    table = "\n".join(
        "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )
    if int8.get("check_on"):
        table += f"\nchecked against fp32 on {int8['check_on']}"
    return table


_NOT_METRICS = {"method", "drop", "p50_ms", "fp32_p50_ms", "size_bytes", "float_nodes", "speed"}


def _options(method: str | None, args: argparse.Namespace) -> dict:
    """One candidate table; what is not given here is the profile's choice (or the default)."""
    options: dict = {"reduce_range": args.reduce_range}
    if method is not None:
        options["method"] = method
    if args.per_channel is not None:
        options["per_channel"] = args.per_channel
    if args.op_types:
        options["op_types"] = tuple(args.op_types)
    if args.calibration and method != "dynamic":
        options["calibration"] = args.calibration
    return options


def speed_line(manifest: PackManifest) -> str:
    """Whether the int8-vs-fp32 speed was measured here or estimated for the target profile."""
    for stage in manifest.provenance.get("stages", []):
        speed = stage.get("speed") or {}
        if stage.get("name") == "quantize" and speed.get("kind"):
            where = "on" if speed["kind"] == "measured" else "for"
            return f"int8 vs fp32 speed: {speed['kind']} {where} {speed['on']}"
    return "int8 vs fp32 speed: not timed"


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
