"""A compression run as data: a TOML recipe of a source, data and stages, run into one pack.

    name = "digits"
    task = "image-classification"
    output = "packs/digits.edgepack"
    source = "digits.onnx"              # an .onnx file or a Hugging Face model folder

    [data]
    calibration = "sklearn:digits"      # see compress.data.load_dataset
    evaluation = "sklearn:digits"
    options = { sample_shape = [1, 8, 8] }

    [[stages]]
    type = "export"
    formats = ["onnx", "tflite"]
    tflite_quantization = "dynamic"     # none | dynamic | full

    [[stages]]
    type = "quantize"
    method = "static"                   # any field of DynamicOptions / StaticOptions, or
                                        # candidates = [{method = "static"}, {method = "dynamic"}]
    budget = 1.0                        # points of the metric below fp32; also metric,
                                        # max_float_nodes, sensitivity_samples, max_probes,
                                        # min_speedup (0: int8 need not be faster here)

The pack records the recipe, each stage's figures and the calibration data's fingerprint.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.packing import assemble_pack, describe_model_file, scratch_dir
from edgepack.runtime import InputError, ModelEntry, PackManifest, QuantizationError, load

from .data import ArrayDataset, TextDataset, load_dataset

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

PathLike = str | os.PathLike[str]
TFLITE_QUANTIZATION = ("none", "dynamic", "full")
PARITY_SAMPLES = 64  # samples compared between a pack's TFLite and ONNX models
BUDGET_KEYS = (
    "max_float_nodes",
    "sensitivity_samples",
    "max_probes",
    "min_speedup",
)  # quantize stage options


@dataclass
class Recipe:
    """The parsed recipe; `to_dict` gives back what the pack records."""

    name: str
    output: str
    source: str | None = None
    task: str = "other"
    data: dict[str, Any] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)
    preprocessing: dict[str, Any] | None = None
    postprocessing: dict[str, Any] | None = None
    assets: dict[str, dict[str, str]] = field(default_factory=dict)  # path -> {source, role}
    keep_fp32: bool = False

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], origin: str = "recipe") -> Recipe:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"{origin}: unknown key(s) {unknown}; expected {sorted(known)}")
        for key in ("name", "output"):
            if not isinstance(data.get(key), str):
                raise InputError(f"{origin}: {key!r} is required and must be a string")
        recipe = cls(**data)
        for number, stage in enumerate(recipe.stages):
            if stage.get("type") not in STAGES:
                raise InputError(
                    f"{origin}: stage {number} has type {stage.get('type')!r}; "
                    f"expected one of {list(STAGES)}"
                )
        return recipe

    @classmethod
    def load(cls, path: PathLike) -> Recipe:
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text("utf-8"))
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise InputError(f"cannot read recipe {path}: {exc}") from exc
        recipe = cls.from_dict(data, str(path))
        base = path.parent  # relative paths in a recipe are relative to the recipe file
        recipe.output = str(base / recipe.output)
        if recipe.source and not recipe.source.startswith("sklearn:"):
            recipe.source = str(base / recipe.source)
        for key in ("calibration", "evaluation"):
            value = recipe.data.get(key)
            if isinstance(value, str) and not value.startswith("sklearn:"):
                recipe.data[key] = str(base / value)
        return recipe

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class Workspace:
    """What the stages share: the models made so far, the data, and the figures to record."""

    dir: Path
    recipe: Recipe
    module: Any = None  # a torch.nn.Module, for exports to TFLite
    example_inputs: dict[str, Any] | None = None
    onnx: Path | None = None  # the fp32 ONNX model
    models: list[tuple[Path, ModelEntry]] = field(default_factory=list)
    assets: dict[str, tuple[Path, str]] = field(default_factory=dict)
    calibration: ArrayDataset | None = None
    evaluation: ArrayDataset | None = None
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)
    progress: bool = True


def run_recipe(
    recipe: Recipe | PathLike,
    *,
    module: Any = None,
    example_inputs: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> PackManifest:
    """Run every stage and write the pack to recipe.output; return its manifest.

    module/example_inputs: a PyTorch model to start from instead of recipe.source (the Python
    API's way in; recipes name files). When quantization cannot meet its budget the pack is
    still written without the int8 model, and QuantizationError says why.
    """
    if not isinstance(recipe, Recipe):
        recipe = Recipe.load(recipe)
    with scratch_dir("edgepack-recipe-") as tmp:
        work = Workspace(Path(tmp), recipe, module, dict(example_inputs or {}) or None)
        work.progress = progress
        work.assets = {p: (Path(a["source"]), a["role"]) for p, a in recipe.assets.items()}
        _load_source(work)
        _load_data(work)
        failure: QuantizationError | None = None
        for stage in recipe.stages:
            try:
                STAGES[stage["type"]](work, dict(stage))
            except QuantizationError as exc:
                failure = exc
                work.metrics["quantize"] = {"error": str(exc).splitlines()[0]}
                break
        manifest = _write_pack(work, keep_fp32=recipe.keep_fp32 or failure is not None)
    if failure is not None:
        raise QuantizationError(
            f"{failure}\nthe pack was written without an int8 model: {recipe.output}"
        ) from failure
    return manifest


def _load_source(work: Workspace) -> None:
    """An ONNX file is used as it is; a Hugging Face folder is exported now (and kept as a
    torch model for later TFLite exports)."""
    source = work.recipe.source
    if work.module is not None:
        if work.example_inputs is None:
            raise InputError("a module needs example_inputs: a dict of input name -> tensor")
        return
    if source is None:
        raise InputError("the recipe names no source, and no module was given")
    path = Path(source)
    if path.suffix == ".onnx" and path.is_file():
        work.onnx = path
        return
    if (path / "config.json").is_file():
        from .export_onnx import _load_hf, export_hf

        out = work.dir / "hf"
        result = export_hf(path, out, task=work.recipe.task)
        work.onnx = result.path
        work.module = _load_hf(path, work.recipe.task)
        work.example_inputs = None  # a TFLite export takes its example from the data
        work.metrics["export"] = {"onnx_" + k: v for k, v in vars(result.check).items()}
        for file in result.files:
            if file.name == "vocab.txt":
                work.assets["vocab.txt"] = (file, "vocab")
            elif file.name == "tokenizer.json":
                work.assets["tokenizer.json"] = (file, "tokenizer")
        if work.recipe.preprocessing is None and "vocab.txt" in work.assets:
            work.recipe.preprocessing = _text_preprocessing(path, work)
        return
    raise InputError(
        f"source {source!r} is neither an .onnx file nor a Hugging Face model folder "
        "(a folder with config.json)"
    )


def _text_preprocessing(model_dir: Path, work: Workspace) -> dict[str, Any]:
    config_file = model_dir / "tokenizer_config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    names = [t.name for t in describe_model_file(work.onnx).inputs]
    preprocessing = {
        "kind": "text",
        "tokenizer": "wordpiece",
        "vocab_file": "vocab.txt",
        "lowercase": bool(config.get("do_lower_case", True)),
        "strip_accents": config.get("strip_accents"),
        "max_length": int(work.recipe.data.get("max_length", 128)),
        "padding": "longest",
        "truncation": True,
        "input_names": {
            r: r for r in ("input_ids", "attention_mask", "token_type_ids") if r in names
        },
    }
    if "tokenizer.json" in work.assets:
        preprocessing["tokenizer_file"] = "tokenizer.json"
    return preprocessing


def _load_data(work: Workspace) -> None:
    data = work.recipe.data
    options = dict(data.get("options", {}))
    for role in ("calibration", "evaluation"):
        if data.get(role) is None:
            continue
        dataset = load_dataset(data[role], **options)
        if isinstance(dataset, TextDataset):
            tokenizer = data.get("tokenizer") or work.recipe.source
            if tokenizer is None or not Path(tokenizer).is_dir():
                raise InputError(
                    f"{role} data is text: the recipe needs a Hugging Face model folder as its "
                    "source, or data.tokenizer naming a tokenizer folder"
                )
            dataset = dataset.tokenize(tokenizer, int(data.get("max_length", 128)))
        limit = data.get(f"{role}_samples")
        if limit is not None and len(dataset) > limit:
            dataset = dataset.subset(np.arange(int(limit)))
        setattr(work, role, dataset)


def _export_stage(work: Workspace, options: dict[str, Any]) -> None:
    """Export to ONNX (unless the source is ONNX already) and, if asked, to TFLite."""
    options.pop("type")
    formats = options.pop("formats", ["onnx"])
    tflite_quantization = options.pop("tflite_quantization", "none")
    opset = options.pop("opset", 17)
    if options:
        raise InputError(f"export stage: unknown option(s) {sorted(options)}")
    if tflite_quantization not in TFLITE_QUANTIZATION:
        raise InputError(
            f"export stage: tflite_quantization {tflite_quantization!r}; expected one of "
            f"{list(TFLITE_QUANTIZATION)}"
        )
    unknown = sorted(set(formats) - {"onnx", "tflite"})
    if unknown or "onnx" not in formats:
        raise InputError(f"export stage: formats {formats}; expected 'onnx', optionally 'tflite'")
    _ensure_onnx(work, opset)
    work.stages.append(
        {"name": "export", "formats": formats, "tflite_quantization": tflite_quantization}
    )
    if "tflite" in formats:
        _export_tflite(work, tflite_quantization)


def _ensure_onnx(work: Workspace, opset: int = 17) -> Path:
    """The fp32 ONNX model, exported from the PyTorch model (batch axis dynamic) if needed."""
    if work.onnx is None:
        import torch

        from .export_onnx import export_onnx

        data = work.evaluation or work.calibration  # check the export on real inputs
        check = None
        if data is not None:
            sample = data.subset(np.arange(min(len(data), PARITY_SAMPLES)))
            check = {k: torch.from_numpy(v) for k, v in sample.inputs.items()}
        result = export_onnx(
            work.module,
            work.example_inputs,
            work.dir / "model.onnx",
            opset=opset,
            dynamic_axes={name: {0: "batch"} for name in work.example_inputs},
            check_inputs=check,
        )
        work.onnx = result.path
        work.metrics["export"] = {"onnx_" + k: v for k, v in vars(result.check).items()}
    return work.onnx


def _export_tflite(work: Workspace, quantization: str) -> None:
    if work.module is None:
        raise InputError(
            "a TFLite export needs the PyTorch model: start from a Hugging Face folder or pass "
            "module= to run_recipe (an ONNX source cannot be converted to TFLite here)"
        )
    import torch

    from .export_tflite import export_tflite

    data = work.calibration or work.evaluation
    if work.example_inputs is not None:
        example = {k: v[:1] for k, v in work.example_inputs.items()}
    elif data is not None:
        example = {k: torch.from_numpy(v[:1]) for k, v in data.inputs.items()}
    else:
        raise InputError("a TFLite export needs example inputs: give calibration data")
    representative = None
    if work.calibration is not None:
        calib = work.calibration.subset(np.arange(min(len(work.calibration), 128)))
        representative = [
            {k: v[i : i + 1] for k, v in calib.inputs.items()} for i in range(len(calib))
        ]
    result = export_tflite(
        work.module,
        example,
        work.dir / f"model.{quantization}.tflite",
        quantization=quantization,
        representative_data=representative,
    )
    entry = describe_model_file(
        result.path, precision=result.precision, names={**result.input_names, **result.output_names}
    )
    entry.path = "model.tflite" if quantization == "none" else f"model.{result.precision}.tflite"
    entry.checks = [result.check]
    work.models.append((result.path, entry))
    figures = {k: v for k, v in result.check.items() if k != "reference"}
    if result.full_int8_method is not None:  # which full-int8 method won, and on what figures
        figures["full_int8_method"] = result.full_int8_method
        for method, agreement in (result.full_int8_agreement or {}).items():
            figures[f"{method}_agreement"] = agreement
    work.metrics[f"export_tflite_{quantization}"] = figures


def _quantize_stage(work: Workspace, options: dict[str, Any]) -> None:
    from .quantize import Budget, options_from_dict, quantize

    options.pop("type")
    metric = options.pop("metric", "accuracy" if _has_labels(work.evaluation) else "agreement")
    limits = {key: options.pop(key) for key in BUDGET_KEYS if key in options}
    if limits.get("min_speedup") == 0:  # TOML has no null: 0 means int8 need not be faster
        limits["min_speedup"] = None
    budget = Budget(max_drop=float(options.pop("budget", 1.0)), metric=metric, **limits)
    candidates = options.pop("candidates", None) or [options]
    choices = [options_from_dict(c) for c in candidates]
    output = work.dir / "model.int8.onnx"
    report = quantize(
        _ensure_onnx(work),
        output,
        choices,
        calib=work.calibration,
        eval_data=work.evaluation,
        budget=budget,
        progress=work.progress,
    )
    chosen = report.candidates[report.chosen]
    entry = describe_model_file(output)
    entry.path = "model.int8.onnx"
    if chosen.float_nodes:
        entry.precision = "mixed"
    work.models.insert(0, (output, entry))
    work.metrics["fp32"] = {k: v for k, v in report.fp32.items() if _is_scalar(v)}
    work.metrics["quantize"] = {
        "method": chosen.options["method"],
        report.metric or "metric": chosen.metric,
        "drop": chosen.drop,
        "p50_ms": chosen.p50_ms,
        "fp32_p50_ms": chosen.fp32_p50_ms,
        "size_bytes": chosen.size_bytes,
        "float_nodes": len(chosen.float_nodes),
    }
    work.stages.append(
        {
            "name": "quantize",
            "options": chosen.options,
            "budget": budget.to_dict(),
            "float_nodes": [vars(n) for n in chosen.float_nodes],
        }
    )
    if work.progress:
        print(report.table(), file=sys.stderr)


def _has_labels(data: ArrayDataset | None) -> bool:
    return data is not None and data.labels is not None


def _is_scalar(value: Any) -> bool:
    return isinstance(value, int | float | str) or value is None


def _parity_with_onnx(work: Workspace, onnx_entry: ModelEntry, onnx_path: Path) -> None:
    """Check each TFLite model against the pack's ONNX model on the same inputs, through the
    runtime: the figures go into the TFLite entry's checks."""
    data = work.evaluation or work.calibration
    if data is None:
        return
    from .evaluate import _open_model

    onnx_model = _open_model(onnx_path, threads=1)
    with tempfile.TemporaryDirectory(dir=work.dir) as tmp:
        for path, entry in work.models:
            if entry.format != "tflite":
                continue
            pack = Path(tmp) / entry.path.replace(".", "_")
            assemble_pack(pack, [(path, entry)], name="parity")
            tflite = load(pack, backend="litert", threads=1)
            count = min(len(data), PARITY_SAMPLES)
            ours, theirs = [], []
            for i in range(count):
                feeds = {k: v[i : i + 1] for k, v in data.inputs.items()}
                ours.append(next(iter(tflite.run(feeds).values()))[0])
                theirs.append(next(iter(onnx_model.run(feeds).values()))[0])
            ours, theirs = np.stack(ours), np.stack(theirs)
            entry.checks.append(
                {
                    "reference": onnx_entry.path,
                    "samples": count,
                    "max_abs_diff": float(np.abs(ours - theirs).max()),
                    "argmax_agreement": float(100 * np.mean(ours.argmax(-1) == theirs.argmax(-1))),
                }
            )


def _write_pack(work: Workspace, keep_fp32: bool) -> PackManifest:
    recipe = work.recipe
    models = list(work.models)
    fp32_entry = describe_model_file(_ensure_onnx(work), precision="fp32")
    fp32_entry.path = "model.onnx"
    if "export" in work.metrics:
        fp32_entry.checks = [
            {
                "reference": "pytorch",
                "samples": work.metrics["export"].get("onnx_samples", 0),
                "max_abs_diff": work.metrics["export"].get("onnx_max_abs_diff"),
                "argmax_agreement": work.metrics["export"].get("onnx_argmax_agreement"),
            }
        ]
    has_int8_onnx = any(e.format == "onnx" for _, e in models)
    if keep_fp32 or not has_int8_onnx:
        insert_at = sum(1 for _, e in models if e.format == "onnx")
        models.insert(insert_at, (work.onnx, fp32_entry))
    _parity_with_onnx(work, fp32_entry, work.onnx)
    from .cost import cost_summary

    for path, entry in models:
        if entry.format == "onnx":
            entry.cost = cost_summary(path)
    provenance = {
        "source_model": recipe.source or type(work.module).__name__,
        "recipe": recipe.to_dict(),
        "stages": work.stages,
        "calibration_fingerprint": _fingerprint(work.calibration),
    }
    return assemble_pack(
        recipe.output,
        models,
        name=recipe.name,
        task=recipe.task,
        assets=work.assets,
        preprocessing=recipe.preprocessing,
        postprocessing=_postprocessing(work),
        provenance=provenance,
        metrics=work.metrics,
    )


def _postprocessing(work: Workspace) -> dict[str, Any] | None:
    post = work.recipe.postprocessing
    if post is not None:
        return post
    data = work.evaluation or work.calibration
    if data is not None and data.classes:
        output = describe_model_file(work.onnx).outputs[0].name
        return {"output_name": output, "softmax": True, "labels": list(data.classes)}
    return None


def _fingerprint(data: ArrayDataset | None) -> str | None:
    """sha256 over the calibration arrays (names, dtypes, shapes, bytes), in name order."""
    if data is None:
        return None
    digest = hashlib.sha256()
    for name in sorted(data.inputs):
        array = np.ascontiguousarray(data.inputs[name])
        digest.update(f"{name}:{array.dtype}:{array.shape}".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


STAGES: dict[str, Callable[[Workspace, dict[str, Any]], None]] = {
    "export": _export_stage,
    "quantize": _quantize_stage,
}
