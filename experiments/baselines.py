"""What edgepack's compression is measured against, as packs that run, evaluate and benchmark
exactly as edgepack's own: the fp32 export, and other tools' int8 (Optimum's dynamic int8).

An experiment's tool, not the library's: a user who wants Optimum's int8 runs Optimum; these
packs exist so that experiments/quantize_sst2.py can set edgepack's choice beside it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from edgepack.compress.cost import cost_summary
from edgepack.compress.recipe import Recipe, run_recipe
from edgepack.packing import assemble_pack, describe_model_file
from edgepack.runtime import PackManifest
from edgepack.runtime.pack import PackReader

PathLike = str | os.PathLike[str]


def optimum_dynamic(
    model_dir: PathLike,
    output: PathLike,
    *,
    per_channel: bool = True,
    max_length: int = 128,
    name: str | None = None,
) -> PackManifest:
    """Optimum's dynamic int8 for AVX512-VNNI CPUs, as a user of Optimum would run it: export with
    Optimum, then ORTQuantizer with AutoQuantizationConfig.avx512_vnni(is_static=False).

    per_channel: the preset's own default (True). The pack gets the same tokenizer, text
    preprocessing and labels as edgepack's packs of model_dir, so only the model file differs.

    >>> optimum_dynamic("teacher/", "optimum.edgepack")  # doctest: +SKIP
    """
    from optimum.onnxruntime import ORTQuantizer
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    model_dir, output = Path(model_dir), Path(output)
    with tempfile.TemporaryDirectory(prefix="edgepack-baseline-") as tmp:
        work = Path(tmp)
        fp32 = export_fp32(model_dir, work / "fp32.edgepack", max_length=max_length)
        unpacked = work / "fp32"
        unpacked.mkdir()
        with PackReader(work / "fp32.edgepack") as reader:
            onnx_entry = next(m for m in fp32.models if m.format == "onnx")
            (unpacked / "model.onnx").write_bytes(reader.read(onnx_entry.path))
            assets = {f.path: (reader.read(f.path), f.role) for f in fp32.files}
        config = AutoQuantizationConfig.avx512_vnni(is_static=False, per_channel=per_channel)
        quantizer = ORTQuantizer.from_pretrained(unpacked, file_name="model.onnx")
        # ORTQuantizer writes model_quantized.onnx and its ort_config.json into save_dir.
        quantizer.quantize(save_dir=work / "int8", quantization_config=config)
        model_file = work / "int8" / "model_quantized.onnx"
        entry = describe_model_file(model_file)
        entry.path = "model.int8.onnx"
        entry.cost = cost_summary(model_file, {"sequence": max_length})  # what the pack runs at
        return assemble_pack(
            output,
            [(model_file, entry)],
            name=name or output.name.removesuffix(".edgepack"),
            task=fp32.task,
            assets=assets,
            preprocessing=fp32.preprocessing,
            postprocessing=fp32.postprocessing,
            provenance={
                "source_model": str(model_dir),
                "stages": [
                    {"name": "export", "tool": "edgepack (Optimum's exporter)"},
                    {
                        "name": "optimum-dynamic",
                        "preset": "AutoQuantizationConfig.avx512_vnni(is_static=False)",
                        "versions": _versions("optimum", "optimum-onnx", "onnxruntime"),
                        "options": _plain(vars(config)),
                    },
                ],
            },
        )


def export_fp32(model_dir: PathLike, output: PathLike, *, max_length: int = 128) -> PackManifest:
    """The fp32 pack edgepack makes of a Hugging Face classifier folder (Optimum's exporter,
    checked against PyTorch), labelled with the model's id2label: every baseline starts here."""
    model_dir = Path(model_dir)
    recipe = Recipe.from_dict(
        {
            "name": Path(output).name.removesuffix(".edgepack"),
            "output": str(output),
            "source": str(model_dir),
            "task": "text-classification",
            "data": {"max_length": max_length},
            "postprocessing": _labels(model_dir),
            "stages": [{"type": "export"}],
        }
    )
    return run_recipe(recipe, progress=False)


def _labels(model_dir: Path) -> dict[str, Any] | None:
    """Softmax over the model's id2label names, from its config.json."""
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        return None  # not a model folder: the export says so
    id2label = json.loads(config_file.read_text()).get("id2label")
    if not id2label:
        return None
    labels = [id2label[str(i)] for i in range(len(id2label))]
    return {"output_name": "logits", "softmax": True, "labels": labels}


def _versions(*packages: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for package in packages:
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
    return found


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready copies of a config's fields (enums by name, lists as lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        if hasattr(value, "name") and not isinstance(value, str | int | float | bool):
            return value.name  # an enum, such as QuantFormat.QOperator
        return value if isinstance(value, str | int | float | bool | type(None)) else str(value)

    return {key: plain(value) for key, value in values.items()}
