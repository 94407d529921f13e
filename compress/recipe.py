"""A compression run as data: a TOML recipe of a source, data and typed stages, run into one pack.

    name = "digits"
    task = "image-classification"
    output = "packs/digits.edgepack"
    source = "digits.onnx"              # an .onnx file or a Hugging Face model folder
    profile = "rpi5"                    # optional: the target; sets the int8 scheme and judges
                                        # "int8 must be faster" for it (measured or estimated)
    budget = 1.0                        # optional: points of the metric below the SOURCE model
    metric = "accuracy"                 # default accuracy with labels, agreement without

    [data]
    train = "train.npz"                 # labelled; for stages that train (prune, distill)
    calibration = "sklearn:digits"      # see compress.data.load_dataset
    evaluation = "sklearn:digits"
    options = { sample_shape = [1, 8, 8] }

    [[stages]]
    type = "prune"                      # any field of compress.prune.PruneOptions
    channels_keep = 0.5                 # or heads_keep/ffn_keep, or target_latency_ms (on the
                                        # recipe's profile), or method = "unstructured"

    [[stages]]
    type = "export"
    formats = ["onnx", "tflite"]
    tflite_quantization = "dynamic"     # none | dynamic | full

    [[stages]]
    type = "quantize"
    method = "static"                   # any field of DynamicOptions / StaticOptions, or
                                        # candidates = [{method = "static"}, {method = "dynamic"}]
    max_float_nodes = 16                # also budget (this stage's own search target), metric,
                                        # sensitivity_samples, max_probes, min_speedup (0: none)

Each row of STAGES is an options dataclass (frozen, checked when built, unknown keys answered
with the closest valid one) and a run function that returns a StageRecord. The whole recipe is
parsed before anything runs, so a typo in the last stage fails before the first one starts. The
workspace holds the model in its richest form (the torch module when there is one) and exports
ONNX only when a stage asks for it, again after any stage that changed the weights. After each
stage the models it made are evaluated through edgepack.runtime against the source model; one
that breaks `budget` stops the run and the pack keeps the last good stage's models.

A search rewrites a recipe as data: `set_option(recipe, "stages.quantize.method", "dynamic")`
returns a new, validated recipe. A new stage is one options class and one function:

    @dataclass(frozen=True)
    class PruneOptions(StageOptions):
        ffn_keep: float = 0.5

        def validate(self) -> None:  # the field types are checked already
            if not 0 < self.ffn_keep <= 1:
                raise InputError(f"ffn_keep must be in (0, 1], got {self.ffn_keep}")

    def run_prune(work: Workspace, options: PruneOptions) -> StageRecord:
        work.module = prune(work.module, options.ffn_keep)  # the next export sees new weights
        return StageRecord("prune", figures={"prune": {...}})

    STAGES["prune"] = StageType(PruneOptions, run_prune, changes_weights=True)
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import json
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgepack.compress.errors import QuantizationError
from edgepack.packing import describe_model_file, scratch_dir
from edgepack.runtime import InputError, PackManifest

from .data import pad_text
from .options import StageOptions, as_tuple, unknown_key_error
from .quiet import terminal
from .workspace import (
    BudgetError,
    ModelFile,
    StageRecord,
    Workspace,
    check_budget,
    is_scalar,
    keep_tokenizer,
    load_data,
    load_source,
    pack_records,
    source_reference,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = [
    "STAGES",
    "BudgetError",
    "ExportOptions",
    "QuantizeStageOptions",
    "Recipe",
    "Stage",
    "StageOptions",
    "StageRecord",
    "StageType",
    "Workspace",
    "get_option",
    "option_paths",
    "run_recipe",
    "set_option",
    "unknown_key_error",
]
PathLike = str | os.PathLike[str]
TFLITE_QUANTIZATION = ("none", "dynamic", "full")
DATA_KEYS = (
    "train",
    "train_samples",
    "calibration",
    "evaluation",
    "options",
    "tokenizer",
    "max_length",
    "calibration_samples",
    "evaluation_samples",
    "inputs",  # example inputs as `edgepack bench --input` takes them, e.g. ["sr=16000"]
)


@dataclass(frozen=True)
class ExportOptions(StageOptions):
    """Export the current model to ONNX (always) and, if asked, to TFLite.

    [[stages]]
    type = "export"
    formats = ["onnx", "tflite"]
    tflite_quantization = "full"        # none | dynamic | full (needs calibration data)
    """

    formats: tuple[str, ...] = ("onnx",)
    tflite_quantization: str = "none"
    opset: int = 17

    def validate(self) -> None:
        as_tuple(self, "formats", str)
        unknown = sorted(set(self.formats) - {"onnx", "tflite"})
        if unknown or "onnx" not in self.formats:
            raise InputError(f"formats {list(self.formats)}; expected 'onnx', optionally 'tflite'")
        if self.tflite_quantization not in TFLITE_QUANTIZATION:
            raise InputError(
                f"tflite_quantization {self.tflite_quantization!r}; expected one of "
                f"{list(TFLITE_QUANTIZATION)}"
            )
        if self.opset < 7:
            raise InputError(f"opset must be an integer >= 7, got {self.opset!r}")

    @property
    def needs_torch(self) -> bool:
        return "tflite" in self.formats


@dataclass(frozen=True)
class QuantizeStageOptions(StageOptions):
    """Int8 with onnxruntime (compress.quantize): one set of options, or several candidates.

        [[stages]]
        type = "quantize"
        method = "static"                   # unset: the recipe profile's default, else dynamic
        calibration = "entropy"
        max_float_nodes = 8

    The quantizer fields (method .. preprocess) left unset take the profile's choice (int8
    activations on Arm, uint8 on x86; per-channel on Arm), then DynamicOptions'/StaticOptions'
    defaults. A candidates table's fields override the flat ones. budget: this stage's own
    search target in points below its input; unset, what the recipe's budget still allows
    (else 1.0). min_speedup 0: int8 need not be faster.
    """

    method: str | None = None
    candidates: tuple[Mapping[str, Any], ...] = ()
    per_channel: bool | None = None
    reduce_range: bool | None = None
    weight_type: str | None = None
    activation_type: str | None = None
    activation_symmetric: bool | None = None
    calibration: str | None = None
    percentile: float | None = None
    op_types: tuple[str, ...] | None = None
    nodes_to_exclude: tuple[str, ...] | None = None
    calibration_samples: int | None = None
    preprocess: bool | None = None
    budget: float | None = None
    metric: str | None = None
    max_float_nodes: int = 16
    sensitivity_samples: int = 64
    max_probes: int = 64
    min_speedup: float = 1.0

    QUANTIZER_FIELDS: ClassVar[tuple[str, ...]] = (
        "per_channel",
        "reduce_range",
        "weight_type",
        "activation_type",
        "activation_symmetric",
        "calibration",
        "percentile",
        "op_types",
        "nodes_to_exclude",
        "calibration_samples",
        "preprocess",
    )

    def validate(self) -> None:
        as_tuple(self, "op_types", str)
        as_tuple(self, "nodes_to_exclude", str)
        as_tuple(self, "candidates", Mapping)
        object.__setattr__(self, "candidates", tuple(dict(c) for c in self.candidates))
        if self.method is not None and self.method not in ("dynamic", "static"):
            raise InputError(
                f"unknown quantization method {self.method!r}; expected dynamic or static"
            )
        self.budget_for(1.0, "accuracy")  # checks the search limits
        self.resolve(None)  # checks every candidate the stage would try

    def resolve(self, profile: Any) -> list[Any]:
        """The QuantizeOptions to try, with the profile's scheme (if any) under the user's."""
        from edgepack.device_profiles import quantization_scheme

        from .quantize import OPTION_CLASSES, options_for_profile, options_from_dict

        flat = {n: getattr(self, n) for n in self.QUANTIZER_FIELDS if getattr(self, n) is not None}
        implied = quantization_scheme(profile).method if profile is not None else None
        result = []
        for table in self.candidates or ({},):
            method = table.get("method", self.method) or implied or "dynamic"
            if method not in OPTION_CLASSES:
                raise InputError(
                    f"unknown quantization method {method!r}; expected dynamic or static"
                )
            takes = {f.name for f in dataclasses.fields(OPTION_CLASSES[method])}
            mine = {k: v for k, v in flat.items() if k in takes}  # e.g. calibration: static only
            merged = {**mine, **{k: v for k, v in table.items() if k != "method"}}
            if profile is None:
                result.append(options_from_dict({"method": method, **merged}))
            else:
                result.append(options_for_profile(profile, method, **merged))
        return result

    def check_for(self, profile: Any) -> None:
        self.resolve(profile)

    def budget_for(self, max_drop: float, metric: str) -> Any:
        from .quantize import Budget

        return Budget(
            max_drop=float(self.budget if self.budget is not None else max_drop),
            metric=self.metric or metric,
            max_float_nodes=self.max_float_nodes,
            sensitivity_samples=self.sensitivity_samples,
            max_probes=self.max_probes,
            min_speedup=None if self.min_speedup == 0 else self.min_speedup,
        )


# --- The recipe ---


@dataclass(frozen=True)
class Stage:
    """One [[stages]] table: its type (a key of STAGES) and its validated options."""

    type: str
    options: StageOptions

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "stage") -> Stage:
        data = dict(data)
        kind = data.pop("type", None)
        if kind not in STAGES:
            close = difflib.get_close_matches(str(kind), list(STAGES), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise InputError(
                f"{where} has type {kind!r}{hint} (expected one of {', '.join(STAGES)})"
            )
        return cls(kind, STAGES[kind].options.from_dict(data, f"{where} ({kind})"))

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, **self.options.to_dict()}


@dataclass
class Recipe:
    """The parsed, validated recipe; `to_dict`/`to_toml` give back what the pack records.

    stages may be given as tables (dicts): they are parsed here, so a Recipe that exists is
    one whose every stage is valid.
    """

    name: str
    output: str
    source: str | None = None
    task: str = "other"
    profile: str | None = None
    budget: float | None = None
    metric: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    stages: list[Stage] = field(default_factory=list)
    preprocessing: dict[str, Any] | None = None
    postprocessing: dict[str, Any] | None = None
    assets: dict[str, dict[str, str]] = field(default_factory=dict)  # path -> {source, role}
    keep_fp32: bool = False
    search: dict[str, Any] | None = None  # [search]: knobs by dotted path (compress.search)
    workdir: str | None = None  # training stages checkpoint here; a rerun resumes (else a temp dir)

    def __post_init__(self) -> None:
        self.stages = _parse_stages(self.stages, "recipe")
        if self.search is not None:
            from .search import parse_space

            parse_space(self.search, self)  # an unknown path or empty range fails here
        if self.workdir is not None and not isinstance(self.workdir, str):
            raise InputError(f"recipe: workdir must be a folder path, got {self.workdir!r}")
        for key in self.data:
            if key not in DATA_KEYS:
                raise unknown_key_error("recipe [data]", key, DATA_KEYS)
        if self.budget is not None and (
            isinstance(self.budget, bool)
            or not isinstance(self.budget, int | float)
            or self.budget < 0
        ):
            raise InputError(f"recipe: budget must be a number of points >= 0, got {self.budget!r}")
        if self.metric is not None:
            from .evaluate import METRICS

            if self.metric not in METRICS:
                raise InputError(
                    f"recipe: unknown metric {self.metric!r}; expected one of {list(METRICS)}"
                )
        if self.profile is not None:
            from edgepack.device_profiles import load_profile

            profile = load_profile(self.profile)  # an unknown name fails here, naming the known
            for number, stage in enumerate(self.stages, start=1):
                try:
                    stage.options.check_for(profile)
                except InputError as exc:
                    raise InputError(
                        f"recipe: stage {number} ({stage.type}) for profile {self.profile}: {exc}"
                    ) from None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], origin: str = "recipe") -> Recipe:
        known = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in known:
                raise unknown_key_error(origin, key, known)
        for key in ("name", "output"):
            if not isinstance(data.get(key), str):
                raise InputError(f"{origin}: {key!r} is required and must be a string")
        fields = dict(data)
        fields["stages"] = _parse_stages(fields.get("stages", []), origin)
        return cls(**fields)

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
        if recipe.workdir:
            recipe.workdir = str(base / recipe.workdir)
        for key in ("train", "calibration", "evaluation"):
            value = recipe.data.get(key)
            if isinstance(value, str) and not value.startswith("sklearn:"):
                recipe.data[key] = str(base / value)
        return recipe

    def to_dict(self) -> dict[str, Any]:
        data = {k.name: getattr(self, k.name) for k in dataclasses.fields(self)}
        data["stages"] = [s.to_dict() for s in self.stages]
        return {k: v for k, v in data.items() if v is not None}

    def to_toml(self) -> str:
        """The recipe as a TOML file that Recipe.load reads back to an equal recipe."""
        data = self.to_dict()
        tables = {k: data.pop(k) for k in list(data) if isinstance(data[k], dict)}
        stages = data.pop("stages")
        lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in data.items()]
        for name, table in tables.items():
            if name == "assets":
                for path, asset in table.items():
                    lines += ["", f"[assets.{_toml_key(path)}]"]
                    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in asset.items()]
                continue
            lines += ["", f"[{name}]"]  # TOML has no null: an absent key reads back as None
            lines += [
                f"{_toml_key(k)} = {_toml_value(v)}" for k, v in table.items() if v is not None
            ]
        for stage in stages:
            lines += ["", "[[stages]]"]
            lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in stage.items()]
        return "\n".join(lines) + "\n"


def _parse_stages(stages: Sequence[Any], origin: str) -> list[Stage]:
    if isinstance(stages, Mapping | str):
        raise InputError(f"{origin}: stages must be a list of [[stages]] tables")
    parsed = []
    for number, stage in enumerate(stages, start=1):
        if isinstance(stage, Stage):
            parsed.append(stage)
        elif isinstance(stage, Mapping):
            parsed.append(Stage.from_dict(stage, f"{origin}: stage {number}"))
        else:
            raise InputError(f"{origin}: stage {number} must be a table, got {stage!r}")
    return parsed


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, Mapping):
        items = ", ".join(
            f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items() if v is not None
        )
        return "{" + items + "}"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise InputError(f"cannot write {value!r} ({type(value).__name__}) to a TOML recipe")


# --- Knobs a search varies, by dotted path ---

RECIPE_KNOBS = ("profile", "budget", "metric", "keep_fp32", "task")


def get_option(recipe: Recipe, path: str) -> Any:
    """The value at a dotted path: "budget", "data.max_length", "stages.quantize.method"
    (a stage by type, the first of that type, or by 1-based number: "stages.2.method")."""
    parts = path.split(".")
    if parts[0] == "stages":
        stage = recipe.stages[_stage_index(recipe, path)]
        return getattr(stage.options, parts[2])
    if parts[0] == "data" and len(parts) == 2:
        return recipe.data.get(parts[1])
    _check_top(path)
    return getattr(recipe, path)


def set_option(recipe: Recipe, path: str, value: Any) -> Recipe:
    """A new recipe with the value at a dotted path replaced, validated as a parsed one is.

    >>> fast = set_option(recipe, "stages.quantize.method", "dynamic")  # doctest: +SKIP
    >>> set_option(recipe, "stages.quantize.methd", "dynamic")  # doctest: +SKIP
    InputError: stages.quantize: unknown key 'methd'; did you mean 'method'? ...
    """
    parts = path.split(".")
    if parts[0] == "stages":
        index = _stage_index(recipe, path)
        stage = recipe.stages[index]
        valid = [f.name for f in dataclasses.fields(stage.options)]  # type: ignore[arg-type]
        if parts[2] not in valid:
            raise unknown_key_error(".".join(parts[:2]), parts[2], valid)
        try:
            options = dataclasses.replace(stage.options, **{parts[2]: value})  # type: ignore[type-var]
        except InputError as exc:
            raise InputError(f"{path}: {exc}") from None
        stages = list(recipe.stages)
        stages[index] = Stage(stage.type, options)
        return dataclasses.replace(recipe, stages=stages)
    if parts[0] == "data" and len(parts) == 2:
        return dataclasses.replace(recipe, data={**recipe.data, parts[1]: value})
    _check_top(path)
    return dataclasses.replace(recipe, **{path: value})


def option_paths(recipe: Recipe) -> dict[str, Any]:
    """Every addressable knob of this recipe and its current value, by dotted path."""
    paths: dict[str, Any] = {k: getattr(recipe, k) for k in RECIPE_KNOBS}
    seen: set[str] = set()
    for number, stage in enumerate(recipe.stages, start=1):
        name = stage.type if stage.type not in seen else str(number)
        seen.add(stage.type)
        for f in dataclasses.fields(stage.options):  # type: ignore[arg-type]
            paths[f"stages.{name}.{f.name}"] = getattr(stage.options, f.name)
    return paths


def _check_top(path: str) -> None:
    if path not in RECIPE_KNOBS:
        valid = [*RECIPE_KNOBS, "data.<key>", "stages.<type>.<option>"]
        raise unknown_key_error("recipe", path, valid)


def _stage_index(recipe: Recipe, path: str) -> int:
    parts = path.split(".")
    if len(parts) != 3:
        raise InputError(f"{path!r}: expected stages.<type or number>.<option>")
    which = parts[1]
    if which.isdigit():
        if not 1 <= int(which) <= len(recipe.stages):
            raise InputError(f"{path!r}: the recipe has {len(recipe.stages)} stage(s)")
        return int(which) - 1
    types = [s.type for s in recipe.stages]
    if which not in types:
        close = difflib.get_close_matches(which, types, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise InputError(f"{path!r}: the recipe has no {which!r} stage{hint} (it has {types})")
    return types.index(which)


# --- Running ---


@dataclass(frozen=True)
class StageType:
    """A row of STAGES: the options class, the run function, and whether it changes weights
    (then the ONNX export is redone before the next stage needs it)."""

    options: type[StageOptions]
    run: Callable[[Workspace, Any], StageRecord]
    changes_weights: bool = False
    distributed: bool = False  # every torchrun rank runs it (the others run only rank 0)


STAGES: dict[str, StageType] = {}  # filled below, after the run functions


def run_recipe(
    recipe: Recipe | PathLike,
    *,
    module: Any = None,
    example_inputs: Mapping[str, Any] | None = None,
    progress: bool = True,
    report: PathLike | None = None,
) -> PackManifest:
    """Run every stage and write the pack to recipe.output; return its manifest.

    module/example_inputs: a PyTorch model to start from instead of recipe.source (the Python
    API's way in; recipes name files). When a stage cannot meet its constraints or breaks the
    recipe's budget, the run stops there, the pack is still written with the models of the
    stages before it, and QuantizationError (BudgetError for the budget) says why.
    report: a folder for report.md, report.json and plots: one row per model the source and each
    stage left (parameters, FLOPs, size, metric, p50 here, stage seconds); written either way.

    Under torchrun (`edgepack compress --nproc N`) every rank runs the stages up to the last
    distributed one (distill) and the stages before it; then only rank 0 goes on, checks the
    budget, writes the pack and the report; the other ranks return None there.
    """
    if not isinstance(recipe, Recipe):
        recipe = Recipe.load(recipe)
    _check_before_running(recipe, module, example_inputs)
    rank, world = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
    shared = [n for n, s in enumerate(recipe.stages, 1) if STAGES[s.type].distributed]
    last_shared = shared[-1] if world > 1 and shared else len(recipe.stages)
    if rank > 0:
        report = None
    with scratch_dir("edgepack-recipe-") as tmp:
        if module is not None and any(STAGES[s.type].changes_weights for s in recipe.stages):
            module = copy.deepcopy(module)  # the caller's model stays as it was given
        work = Workspace(Path(tmp), recipe, module, dict(example_inputs or {}) or None)
        work.progress = progress
        work.assets = {p: (Path(a["source"]), a["role"]) for p, a in recipe.assets.items()}
        if recipe.profile is not None:
            from edgepack.device_profiles import load_profile

            work.profile = load_profile(recipe.profile)
        load_source(work)
        load_data(work)
        from edgepack.benchmarks.report import write_stage_report

        from .stage_report import StageReport

        stage_report = StageReport() if report is not None else None
        if stage_report is not None:
            stage_report.source(work)
        records: list[StageRecord] = []
        failure: tuple[int, Stage, QuantizationError] | None = None
        for number, stage in enumerate(recipe.stages, start=1):
            if rank > 0 and number > last_shared:
                return None  # type: ignore[return-value]
            row = STAGES[stage.type]
            stages_dir = work.dir if recipe.workdir is None else Path(recipe.workdir)
            work.stage_dir = stages_dir / f"stage{number}-{stage.type}"
            work.stage_dir.mkdir(parents=True, exist_ok=recipe.workdir is not None)
            state = None
            if row.changes_weights:
                if recipe.budget is not None and rank == 0:
                    source_reference(work)  # the source is scored before its weights change
                state = work.snapshot()
            started = time.perf_counter()
            try:
                record = row.run(work, stage.options)
                if row.changes_weights:
                    work.weights_changed()
                if rank == 0:
                    check_budget(work, record, row.changes_weights, number)
            except QuantizationError as exc:
                if state is not None:
                    work.restore(state)
                failure = (number, stage, exc)
                break
            record.seconds = time.perf_counter() - started
            records.append(record)
            if stage_report is not None:
                stage_report.stage(work, record, row.changes_weights)
        if rank > 0:
            return None  # type: ignore[return-value]
        if failure is not None:
            number, stage, exc = failure
            records.append(
                StageRecord(stage.type, figures={stage.type: {"error": str(exc).splitlines()[0]}})
            )
        manifest = pack_records(work, records, keep_fp32=recipe.keep_fp32 or failure is not None)
        if stage_report is not None:
            write_stage_report(
                stage_report.rows(),
                report,  # type: ignore[arg-type]
                title=f"{recipe.name or Path(recipe.output).stem}: compress stages",
                stopped=None if failure is None else f"stage {failure[0]} ({failure[1].type})",
            )
    if failure is not None:
        number, stage, exc = failure
        last = (
            f"stage {number - 1} ({recipe.stages[number - 2].type})" if number > 1 else "the source"
        )
        raise type(exc)(
            f"{exc}\nthe run stopped at stage {number} ({stage.type}); the pack was written "
            f"without its models, from {last}: {recipe.output}"
        ) from exc
    return manifest


def _check_before_running(
    recipe: Recipe, module: Any, example_inputs: Mapping[str, Any] | None
) -> None:
    """What can be known before any stage runs: a source, evaluation data for a budget, and a
    torch model where one is needed."""
    if recipe.budget is not None and recipe.data.get("evaluation") is None:
        raise InputError(
            "the recipe has a budget but no data.evaluation: the budget is measured on "
            "evaluation data against the source model"
        )
    if module is not None:
        if not example_inputs:
            raise InputError("a module needs example_inputs: a dict of input name -> tensor")
        return
    if recipe.source is None:
        raise InputError("the recipe names no source, and no module was given")
    if Path(recipe.source).suffix != ".onnx":
        return
    for number, stage in enumerate(recipe.stages, start=1):
        row = STAGES[stage.type]
        if row.changes_weights or getattr(stage.options, "needs_torch", False):
            raise InputError(
                f"stage {number} ({stage.type}) needs the PyTorch model: start from a Hugging "
                "Face folder or pass module= to run_recipe (an ONNX source cannot be "
                "converted to TFLite or retrained here)"
            )


# --- The stages ---


def run_export(work: Workspace, options: ExportOptions) -> StageRecord:
    """Export to ONNX (kept in the pack as its fp32 model) and, if asked, to TFLite."""
    work.fp32_model(options.opset)
    record = StageRecord(
        "export",
        provenance={
            "formats": list(options.formats),
            "tflite_quantization": options.tflite_quantization,
        },
    )
    if "tflite" in options.formats:
        model, figures = _export_tflite(work, options.tflite_quantization)
        record.models.append(model)
        record.figures[f"export_tflite_{options.tflite_quantization}"] = figures
    return record


def _export_tflite(work: Workspace, quantization: str) -> tuple[ModelFile, dict[str, Any]]:
    import torch

    from .export_tflite import export_tflite

    data = work.calibration or work.evaluation
    # TFLite shapes are fixed: a text model is exported at the max_length the pack pads to.
    length = int(work.recipe.data.get("max_length", 128)) if work.hf_dir is not None else 0

    def fixed(inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return pad_text(inputs, length) if length and "attention_mask" in inputs else inputs

    if work.example_inputs is not None:
        example = {k: v[:1] for k, v in work.example_inputs.items()}
    elif data is not None:
        example = {k: torch.from_numpy(v[:1]) for k, v in fixed(data.inputs).items()}
    else:
        raise InputError("a TFLite export needs example inputs: give calibration data")
    representative = None
    if work.calibration is not None:
        count = min(len(work.calibration), 128)
        calib = fixed(work.calibration.subset(np.arange(count)).inputs)
        representative = [{k: v[i : i + 1] for k, v in calib.items()} for i in range(count)]
    result = export_tflite(
        work.module,
        example,
        work.stage_dir / f"model.{quantization}.tflite",  # type: ignore[operator]
        quantization=quantization,
        representative_data=representative,
    )
    entry = describe_model_file(
        result.path, precision=result.precision, names={**result.input_names, **result.output_names}
    )
    entry.path = "model.tflite" if quantization == "none" else f"model.{result.precision}.tflite"
    entry.checks = [result.check]
    figures = {k: v for k, v in result.check.items() if k != "reference"}
    if result.full_int8_method is not None:  # which full-int8 method won, and on what figures
        figures["full_int8_method"] = result.full_int8_method
        for method, agreement in (result.full_int8_agreement or {}).items():
            figures[f"{method}_agreement"] = agreement
    return ModelFile(result.path, entry, work.version), figures


def run_quantize(work: Workspace, options: QuantizeStageOptions) -> StageRecord:
    """Int8 ONNX within the stage's budget (by default, what the recipe's budget still allows),
    in the profile's scheme, with the speed rule judged for the profile."""
    from .quantize import example_feeds, quantize

    remaining = 1.0 if work.recipe.budget is None else max(work.recipe.budget - work.drop, 0.0)
    budget = options.budget_for(remaining, work.metric)
    output = work.stage_dir / "model.int8.onnx"  # type: ignore[operator]
    report = quantize(
        work.onnx(),
        output,
        options.resolve(work.profile),
        calib=work.calibration,
        eval_data=work.evaluation,
        budget=budget,
        profile=work.profile,
        progress=work.progress,
        example_inputs=example_feeds(work.onnx(), work.recipe.data.get("inputs")),
    )
    chosen = report.candidates[report.chosen]  # type: ignore[index]
    entry = describe_model_file(output)
    entry.path = "model.int8.onnx"
    if chosen.float_nodes:
        entry.precision = "mixed"
    elif entry.precision == "fp32":  # its int8 ops sit in subgraphs the file reader skips
        entry.precision = f"int8-{chosen.options['method']}"
    figures = {
        "method": chosen.options["method"],
        report.metric or "metric": chosen.metric,
        "drop": chosen.drop,
        "p50_ms": chosen.p50_ms,
        "fp32_p50_ms": chosen.fp32_p50_ms,
        "size_bytes": chosen.size_bytes,
        "float_nodes": len(chosen.float_nodes),
        **{f"check_{k}": v for k, v in (chosen.check or {}).items()},  # no eval data: vs fp32
    }
    if chosen.speed_kind is not None:
        figures["speed"] = f"{chosen.speed_kind} ({chosen.speed_on})"
    if work.progress:
        print(report.table(), file=terminal().err)  # edgepack's own table, also under quiet()
    return StageRecord(
        "quantize",
        figures={
            "fp32": {k: v for k, v in report.fp32.items() if is_scalar(v)},
            "quantize": figures,
        },
        provenance={
            "options": chosen.options,
            "budget": budget.to_dict(),
            "float_nodes": [vars(n) for n in chosen.float_nodes],
            "speed": {"kind": chosen.speed_kind, "on": chosen.speed_on},
            "profile": work.recipe.profile,
        },
        models=[ModelFile(output, entry, work.version)],
    )


def run_prune(work: Workspace, options: Any) -> StageRecord:
    """Prune the current torch model (compress.prune: heads, FFN neurons, channels, or single
    weights), fine-tuned on data.train; the pruned weights become the current model."""
    from .prune import prune

    train = work.train if work.train is not None else work.calibration
    if train is None or train.labels is None:
        raise InputError(
            "a prune stage fine-tunes on labelled data: set data.train (or labelled "
            "data.calibration) in the recipe"
        )
    if options.target_latency_ms is not None and options.profile is None:
        options = dataclasses.replace(options, profile=work.recipe.profile)
    result = prune(
        work.module,
        train,
        work.evaluation if work.evaluation is not None else train,
        options,
        work.stage_dir / "prune",  # type: ignore[operator]
        progress=work.progress,
    )
    work.module = result.model
    summary = result.to_dict()
    figures = {k: v for k, v in summary.items() if is_scalar(v) and k != "method"}
    for key in ("metrics_after", "latency_after"):
        figures.update({f"{key}_{k}": v for k, v in summary[key].items() if is_scalar(v)})
    if work.progress:
        for message in result.messages:
            print(f"prune: {message}", file=terminal().err)
    return StageRecord(
        "prune",
        figures={"prune": figures},
        provenance={
            "options": options.to_dict(),
            "units_before": result.units_before,
            "units_after": result.units_after,
            "steps": summary["steps"],
            "messages": list(result.messages),
        },
    )


def run_distill(work: Workspace, options: Any) -> StageRecord:
    """Distill the current model (the teacher) into a student built from the options (fewer
    layers or a smaller FFN for BERT-family models, a narrower CNN), trained on data.train; the
    student becomes the current model, and a trimmed vocabulary becomes the pack's."""
    from .distill import distill

    text = work.hf_dir is not None
    train: Any = work.recipe.data.get("train") if text else work.train  # text: padded per batch
    if train is None:
        raise InputError("a distill stage trains on labelled data: set data.train in the recipe")
    evaluation: Any = work.recipe.data.get("evaluation") if text else work.evaluation
    tokenizer = None
    if text:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(work.hf_dir))
    result = distill(
        work.module,
        None,
        train,
        evaluation,
        options,
        work.stage_dir / "distill",  # type: ignore[operator]
        progress=work.progress,
        tokenizer=tokenizer,
    )
    work.module = result.student
    if text and Path(result.output).is_dir():  # its own (maybe trimmed) tokenizer: re-tokenize
        work.hf_dir = Path(result.output)
        keep_tokenizer(work, work.hf_dir)
        load_data(work)
    summary = result.to_dict()
    figures = {k: v for k, v in summary.items() if is_scalar(v)}
    figures.update({f"student_{k}": v for k, v in (result.eval or {}).items()})
    figures.update({f"parameters_{k}": v for k, v in result.parameters.items()})
    return StageRecord(
        "distill",
        figures={"distill": figures},
        provenance={
            "options": summary["options"],
            "lineage": result.lineage,
            "vocab": result.vocab,
            "history": result.history,
        },
    )


def _prune_options() -> type[StageOptions]:
    from .prune import PruneOptions

    return PruneOptions


def _distill_options() -> type[StageOptions]:
    from .distill import DistillOptions

    return DistillOptions


STAGES.update(
    {
        "export": StageType(ExportOptions, run_export),
        "quantize": StageType(QuantizeStageOptions, run_quantize),
        "prune": StageType(_prune_options(), run_prune, changes_weights=True),
        "distill": StageType(
            _distill_options(), run_distill, changes_weights=True, distributed=True
        ),
    }
)
