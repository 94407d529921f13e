"""Show what a pack holds: models, inputs and outputs, preprocessing, provenance and metrics."""

from __future__ import annotations

import argparse
import json

from edgepack.cli.pack_options import describe_image_input
from edgepack.packing import manifest_json
from edgepack.runtime import PackManifest, read_manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pack", help="pack directory or .edgepack archive")
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")


def main(args: argparse.Namespace) -> int:
    manifest = read_manifest(args.pack)
    print(manifest_json(manifest) if args.json else describe(manifest), end="")
    return 0


def describe(manifest: PackManifest) -> str:
    """A short human summary of a manifest."""
    lines = [
        f"pack {manifest.name} ({manifest.task}), schema {manifest.schema_version}, "
        f"made by edgepack {manifest.edgepack_version} at {manifest.created}"
    ]
    for model in manifest.models:
        lines.append(
            f"  model {model.path}: {model.format} {model.precision}, "
            f"{model.size_bytes / 1e6:.2f} MB, runs on {', '.join(model.backends)}"
        )
        for kind, tensors in (("in ", model.inputs), ("out", model.outputs)):
            for t in tensors:
                quant = f" int8 I/O scale={t.quantization.scale:.4g}" if t.quantization else ""
                lines.append(f"    {kind} {t.name}: {t.dtype}{t.shape}{quant}")
        for check in model.checks:
            figures = ", ".join(f"{k}={v}" for k, v in check.items() if k != "reference")
            lines.append(f"    checked against {check['reference']}: {figures}")
    if manifest.preprocessing:
        lines.append(f"  preprocessing: {json.dumps(manifest.preprocessing)}")
        if takes := describe_image_input(manifest.preprocessing):
            lines.append(f"  {takes}")
    example = manifest.example_inputs or {}
    for name, spec in example.get("inputs", {}).items():
        lines.append(f"  example input {name}: {json.dumps(spec)}")
    if example.get("file"):
        lines.append(f"  example inputs file: {example['file']}")
    if manifest.postprocessing:
        post = manifest.postprocessing
        lines.append(f"  labels: {post.get('labels')} (softmax: {post.get('softmax')})")
    for f in manifest.files:
        lines.append(f"  file {f.path} ({f.role}, {f.size_bytes} bytes)")
    for stage, figures in manifest.metrics.items():
        lines.append(f"  metrics[{stage}]: {json.dumps(figures)}")
    if manifest.provenance:
        lines.append(f"  provenance: {json.dumps(manifest.provenance)}")
    return "\n".join(lines) + "\n"
