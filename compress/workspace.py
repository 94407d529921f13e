"""The workspace of a recipe run: the current model and its lazy ONNX export, the data, the
global accuracy budget against the source, and the pack written from the stages' records.

compress/recipe.py parses a recipe and runs its stages; each stage reads and updates a
Workspace and returns a StageRecord. Nothing here knows a stage type: a stage that changes the
weights sets `work.module` and the runner calls `work.weights_changed()`; the next
`work.onnx()` exports those weights.
"""

from __future__ import annotations

import copy
import hashlib
import json
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgepack.compress.errors import QuantizationError
from edgepack.device_profiles import DeviceProfile
from edgepack.packing import assemble_pack, describe_model_file
from edgepack.runtime import InputError, ModelEntry, PackManifest, load

from .data import ArrayDataset, TextDataset, load_dataset

if TYPE_CHECKING:
    from .recipe import Recipe

PARITY_SAMPLES = 64  # samples compared between a pack's TFLite and ONNX models


class BudgetError(QuantizationError):
    """A stage's model fell further below the source model than the recipe's budget allows."""


@dataclass
class ModelFile:
    """A model a stage made for the pack, and which weights (workspace version) it came from."""

    path: Path
    entry: ModelEntry
    version: int = 0


@dataclass
class StageRecord:
    """What a stage did: figures for the manifest's metrics (by group name), provenance for its
    `stages` list, the models it made for the pack. The pack writer reads only these."""

    name: str
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    models: list[ModelFile] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Workspace:
    """What the stages share: the current model (torch module when there is one), the data,
    the target profile, and the ONNX export of the current weights, made when first needed."""

    dir: Path
    recipe: Recipe
    module: Any = None  # a torch.nn.Module, the richest form of the current model
    example_inputs: dict[str, Any] | None = None
    hf_dir: Path | None = None  # the Hugging Face source folder (config, tokenizer)
    profile: DeviceProfile | None = None  # the target, when the recipe names one
    train: ArrayDataset | None = None  # labelled data for stages that train (prune, distill)
    calibration: ArrayDataset | None = None
    evaluation: ArrayDataset | None = None
    assets: dict[str, tuple[Path, str]] = field(default_factory=dict)
    figures: dict[str, dict[str, Any]] = field(default_factory=dict)  # the exports' own checks
    version: int = 0  # bumped after every stage that changed the weights
    drop: float = 0.0  # how far the current weights are below the source, in metric points
    stage_dir: Path | None = None
    progress: bool = True
    _onnx: ModelFile | None = None
    _opset: int = 17
    _source_onnx: Path | None = None  # an ONNX source file, used as it is
    _reference: Any = None  # the source model's Evaluation on the evaluation data

    @property
    def metric(self) -> str:
        if self.recipe.metric:
            return self.recipe.metric
        has_labels = self.evaluation is not None and self.evaluation.labels is not None
        return "accuracy" if has_labels else "agreement"

    def onnx(self, opset: int | None = None) -> Path:
        """The fp32 ONNX file of the current weights, exported now if there is none yet."""
        return self.fp32_model(opset).path

    def fp32_model(self, opset: int | None = None) -> ModelFile:
        """The fp32 ONNX model of the current weights: the cached export unless the weights
        changed since, or a stage asks for another opset (default: the cached one, else 17)."""
        cached = self._onnx
        stale = cached is None or cached.version != self.version
        if not stale and opset is not None and self.module is not None:
            stale = opset != self._opset
        if stale:
            self._opset = opset or self._opset
            self._onnx = _export_current(self, self._opset)
        return self._onnx  # type: ignore[return-value]

    @property
    def exported_version(self) -> int | None:
        """Which weights the cached ONNX export holds (None: nothing exported yet)."""
        return None if self._onnx is None else self._onnx.version

    def weights_changed(self) -> None:
        self.version += 1

    def snapshot(self) -> tuple[Any, ...]:
        return (copy.deepcopy(self.module), self.version, self._onnx, self.drop, dict(self.figures))

    def restore(self, state: tuple[Any, ...]) -> None:
        self.module, self.version, self._onnx, self.drop, self.figures = state


def load_source(work: Workspace) -> None:
    """An ONNX file is used as it is; a Hugging Face folder is loaded as a torch model (exported
    only when a stage needs ONNX), its tokenizer files kept for the pack."""
    if work.module is not None:
        return
    source = work.recipe.source
    path = Path(source)  # type: ignore[arg-type]
    if path.suffix == ".onnx" and path.is_file():
        work._source_onnx = path
        return
    if (path / "config.json").is_file():
        from .export_onnx import load_hf

        work.hf_dir = path
        work.module = load_hf(path, work.recipe.task)
        keep_tokenizer(work, path)
        return
    raise InputError(
        f"source {source!r} is neither an .onnx file nor a Hugging Face model folder "
        "(a folder with config.json)"
    )


def keep_tokenizer(work: Workspace, model_dir: Path) -> None:
    """The tokenizer files a text pack ships, saved as the tokenizer library writes them."""
    if not any((model_dir / n).is_file() for n in ("vocab.txt", "tokenizer.json")):
        return
    from transformers import AutoTokenizer

    out = work.dir / "tokenizer"
    AutoTokenizer.from_pretrained(str(model_dir)).save_pretrained(str(out))
    for name, role in (("vocab.txt", "vocab"), ("tokenizer.json", "tokenizer")):
        if (out / name).is_file():
            work.assets[name] = (out / name, role)


def _text_preprocessing(model_dir: Path, onnx: Path, work: Workspace) -> dict[str, Any]:
    config_file = model_dir / "tokenizer_config.json"
    config = json.loads(config_file.read_text()) if config_file.is_file() else {}
    names = [t.name for t in describe_model_file(onnx).inputs]
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


def load_data(work: Workspace) -> None:
    data = work.recipe.data
    options = dict(data.get("options", {}))
    for role in ("train", "calibration", "evaluation"):
        if data.get(role) is None:
            continue
        dataset = load_dataset(data[role], **options)
        if isinstance(dataset, TextDataset):
            tokenizer = data.get("tokenizer") or work.hf_dir or work.recipe.source
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


def _export_current(work: Workspace, opset: int) -> ModelFile:
    """The fp32 ONNX model of the current weights, checked against PyTorch on real inputs.

    A Hugging Face model goes through Optimum's exporter (from the source folder while its
    weights are the source's, else from a copy saved now); any other module is traced with its
    example inputs, batch axis dynamic.
    """
    out = work.dir / f"onnx-v{work.version}"
    if work.module is None:
        path = work._source_onnx
        assert path is not None  # _check_before_running saw to it
        return ModelFile(path, _fp32_entry(path, None), work.version)
    from .export_onnx import export_hf, export_onnx

    if work.hf_dir is not None:
        folder = work.hf_dir
        if work.version > 0 and hasattr(work.module, "save_pretrained"):
            folder = out / "hf"
            work.module.save_pretrained(str(folder))
            for name in (
                "vocab.txt",
                "tokenizer.json",
                "tokenizer_config.json",
                "special_tokens_map.json",
            ):
                if (work.hf_dir / name).is_file():
                    (folder / name).write_bytes((work.hf_dir / name).read_bytes())
        result = export_hf(folder, out, task=work.recipe.task)  # type: ignore[arg-type]
    else:
        import torch

        data = work.evaluation or work.calibration  # check the export on real inputs
        check = None
        if data is not None:
            sample = data.subset(np.arange(min(len(data), PARITY_SAMPLES)))
            check = {k: torch.from_numpy(v) for k, v in sample.inputs.items()}
        result = export_onnx(
            work.module,
            work.example_inputs,  # type: ignore[arg-type]
            out / "model.onnx",
            opset=opset,
            dynamic_axes={name: {0: "batch"} for name in work.example_inputs or {}},
            check_inputs=check,
        )
    work.figures["export"] = {"onnx_" + k: v for k, v in vars(result.check).items()}
    return ModelFile(result.path, _fp32_entry(result.path, result.check), work.version)


def _fp32_entry(path: Path, check: Any) -> ModelEntry:
    entry = describe_model_file(path, precision="fp32")
    entry.path = "model.onnx"
    if check is not None:
        entry.checks = [
            {
                "reference": "pytorch",
                "samples": check.samples,
                "max_abs_diff": check.max_abs_diff,
                "argmax_agreement": check.argmax_agreement,
            }
        ]
    return entry


# --- The global budget ---


def source_reference(work: Workspace) -> Any:
    """The source model's evaluation (through the runtime), computed once, before any stage
    changes the weights."""
    if work._reference is None:
        from .evaluate import (
            LABEL_METRICS,
            Evaluation,
            check_above_chance,
            evaluate,
            run_batched,
        )

        assert work.version == 0 and work.evaluation is not None
        source = work.fp32_model().path
        if work.metric in LABEL_METRICS:
            work._reference = evaluate(
                source, work.evaluation, progress=work.progress, desc="evaluate source"
            )
            if work.evaluation.labels is not None:
                check_above_chance(
                    work._reference.metrics["accuracy"],
                    work.evaluation.labels,
                    str(work.recipe.source),
                )
        else:
            outputs = run_batched(
                source, work.evaluation, progress=work.progress, desc="evaluate source"
            )
            work._reference = Evaluation({"agreement": 100.0, "cosine": 100.0}, outputs)
    return work._reference


def check_budget(work: Workspace, record: StageRecord, changes_weights: bool, number: int) -> None:
    """Score each model the stage made (and the new weights, if it changed them) against the
    source; raise BudgetError naming the model when one falls below source - budget."""
    budget = work.recipe.budget
    if budget is None or work.evaluation is None:
        return
    from .evaluate import evaluate

    reference = source_reference(work)
    base = reference.metrics[work.metric]
    models = list(record.models)
    if changes_weights:
        models.append(work.fp32_model())
    scores = {}
    for model in models:
        runner = open_model_file(model, work.dir)
        result = evaluate(
            runner,
            work.evaluation,
            reference=reference.outputs,
            progress=work.progress,
            desc=f"budget: {model.entry.path}",
        )
        score = result.metrics[work.metric]
        drop = base - score
        scores[model.entry.path] = {work.metric: score, "drop": drop}
        if drop > budget + 1e-9:
            raise BudgetError(
                f"stage {number} ({record.name}) broke the accuracy budget: {model.entry.path} "
                f"scores {work.metric} {score:.2f} against the source's {base:.2f} (-{drop:.2f} "
                f"points; the recipe allows {budget}). Loosen that stage, raise budget, or drop it"
            )
        if changes_weights and model is models[-1]:
            work.drop = max(drop, 0.0)
    record.provenance["budget_check"] = {"metric": work.metric, "source": base, "models": scores}


def open_model_file(model: ModelFile, scratch: Path, threads: int | None = None) -> Any:
    """A model file loaded through the runtime on its own backend, as a device would run it
    (threads: ONNX Runtime's default all cores, LiteRT's one)."""
    from .evaluate import open_model

    if model.entry.format == "onnx":
        return open_model(model.path, threads)
    pack = Path(tempfile.mkdtemp(dir=scratch)) / "check"  # goes with the workspace
    assemble_pack(pack, [(model.path, model.entry)], name="check")
    return load(pack, backend="litert", threads=threads or 1)


# --- The pack ---


def pack_records(work: Workspace, records: list[StageRecord], keep_fp32: bool) -> PackManifest:
    """One pack from the records: the ONNX models made last first, the fp32 ONNX model when
    asked or when no stage made an ONNX model, then the other formats; models made from
    weights that a later stage changed are left out."""
    recipe = work.recipe
    current = [m for r in records for m in r.models if m.version == work.version]
    fp32 = work.fp32_model()
    onnx_models = [m for m in reversed(current) if m.entry.format == "onnx"]
    if keep_fp32 or not onnx_models:
        onnx_models.append(fp32)
    models = onnx_models + [m for m in current if m.entry.format != "onnx"]
    _parity_with_onnx(work, fp32, [m for m in models if m.entry.format == "tflite"])
    from .cost import cost_or_none, tflite_cost_summary

    example = work.recipe.data.get("inputs")
    shapes = None
    if example:
        from .quantize import example_feeds

        shapes = {k: list(np.shape(v)) for k, v in example_feeds(fp32.path, example).items()}
    assume = cost_assumptions(work)
    for model in models:
        if model.entry.format == "onnx":
            model.entry.cost, why = cost_or_none(model.path, assume, input_shapes=shapes)
            if why:
                print(f"warning: {model.entry.path}: {why}", file=sys.stderr)
        elif model.entry.format == "tflite":  # so LiteRT targets can be estimated too
            model.entry.cost = tflite_cost_summary(model.path)
    preprocessing = recipe.preprocessing
    if preprocessing is None and work.hf_dir is not None and "vocab.txt" in work.assets:
        preprocessing = _text_preprocessing(work.hf_dir, fp32.path, work)
    metrics = dict(work.figures)
    for record in records:
        metrics.update(record.figures)
    provenance = {
        "source_model": recipe.source or type(work.module).__name__,
        "recipe": recipe.to_dict(),
        "stages": [
            {"name": r.name, **r.provenance, "seconds": round(r.seconds, 2)} for r in records
        ],
        "calibration_fingerprint": _fingerprint(work.calibration),
    }
    return assemble_pack(
        recipe.output,
        [(m.path, m.entry) for m in models],
        name=recipe.name,
        task=recipe.task,
        assets=work.assets,
        preprocessing=preprocessing,
        postprocessing=_postprocessing(work, fp32.path),
        provenance=provenance,
        metrics=metrics,
    )


def cost_assumptions(work: Workspace) -> dict[str, int] | None:
    """What a cost summary assumes of dynamic dims: a text model's sequence is the pack's
    max_length (the longest the pack sends; its position table may hold no more)."""
    if work.hf_dir is None:
        return None
    return {"sequence": int(work.recipe.data.get("max_length", 128))}


def is_scalar(value: Any) -> bool:
    """Whether a figure fits the manifest's metrics (number, string or null; not a bool)."""
    return (isinstance(value, int | float | str) and not isinstance(value, bool)) or value is None


def _parity_with_onnx(work: Workspace, onnx: ModelFile, tflite: list[ModelFile]) -> None:
    """Check each TFLite model against the pack's fp32 ONNX model on the same inputs, through
    the runtime: the figures go into the TFLite entry's checks."""
    data = work.evaluation or work.calibration
    if data is None or not tflite:
        return
    from .evaluate import open_model, run_batched

    count = min(len(data), PARITY_SAMPLES)
    sample = data.subset(np.arange(count))
    theirs = run_batched(open_model(onnx.path, threads=1), sample, progress=False)
    for model in tflite:
        ours = run_batched(open_model_file(model, work.dir), sample, progress=False)
        model.entry.checks.append(
            {
                "reference": onnx.entry.path,
                "samples": count,
                "max_abs_diff": float(np.abs(ours - theirs).max()),
                "argmax_agreement": float(100 * np.mean(ours.argmax(-1) == theirs.argmax(-1))),
            }
        )


def _postprocessing(work: Workspace, onnx: Path) -> dict[str, Any] | None:
    post = work.recipe.postprocessing
    if post is not None:
        return post
    data = work.evaluation or work.calibration
    labels = _hf_labels(work.hf_dir) if work.hf_dir is not None else None
    if labels is None and data is not None and data.classes:
        labels = list(data.classes)
    if labels is not None:
        output = describe_model_file(onnx).outputs[0].name
        return {"output_name": output, "softmax": True, "labels": labels}
    return None


def _hf_labels(model_dir: Path) -> list[str] | None:
    """The class names a Hugging Face classifier was trained with (config.json's id2label),
    in index order, so `run --text` prints "positive 0.97" rather than "1 (1.013)"."""
    config = json.loads((model_dir / "config.json").read_text())
    id2label = config.get("id2label") or {}
    if not id2label:
        return None
    return [str(id2label.get(str(i), id2label.get(i, i))) for i in range(len(id2label))]


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
