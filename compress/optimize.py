"""From a trained model to the pack to flash on each device: pick the recipe for the model's
family, run it, score every model it packed through the runtime, benchmark them here, estimate
them on each device profile, and choose per profile the fastest one within the accuracy budget.

>>> result = optimize("minilm-sst2/", "train.tsv", "out", profiles=["rpi5"])  # doctest: +SKIP
>>> result.lines  # one per profile: pack, format, latency (measured or estimated), accuracy

`edgepack optimize` and `edgepack demo` (compress/demo.py) run it; the report it writes is
edgepack.benchmarks.report.write_choice_report's.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepack.compress.errors import QuantizationError
from edgepack.device_profiles import HOST, list_profiles, load_profile
from edgepack.runtime import EdgepackError, InputError, load, read_manifest

from .data import ArrayDataset, TextDataset, load_dataset
from .quiet import Console, quiet

PathLike = str | os.PathLike[str]
BERT_FAMILY = ("bert", "distilbert", "roberta", "xlm-roberta", "electra", "albert", "camembert")
BACKEND_OF_FORMAT = {"onnx": "onnxruntime", "tflite": "litert"}


# --- Recipes per model family ---------------------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """The recipe chosen for a model: its family, why, and the stages as recipe tables."""

    family: str
    reason: str
    stages: list[dict[str, Any]]


def has_stage(name: str) -> bool:
    """Whether this install's recipes know a stage type (distill arrives in Compress II)."""
    from .recipe import STAGES

    return name in STAGES


def cnn_stages(
    *, distill_epochs: int = 4, finetune_steps: int = 200, budget: float = 1.0
) -> list[dict[str, Any]]:
    """The CNN recipe: distill to a narrower student (when the distill stage exists), prune
    channels, int8 (static per-channel or dynamic, whichever meets the budget faster), then ONNX
    and TFLite (dynamic int8)."""
    stages: list[dict[str, Any]] = []
    if has_stage("distill"):
        stages.append(
            {
                "type": "distill",
                "channels_keep": 0.75,
                "epochs": distill_epochs,
                "learning_rate": 1e-3,
                "batch_size": 64,
            }
        )
    stages += [
        {"type": "prune", "channels_keep": 0.5, "finetune_steps": finetune_steps},
        {
            "type": "quantize",
            "budget": budget,
            "min_speedup": 0,  # speed is judged per device, by the choice
            "candidates": [{"method": "static", "per_channel": True}, {"method": "dynamic"}],
        },
        {"type": "export", "formats": ["onnx", "tflite"], "tflite_quantization": "dynamic"},
    ]
    return stages


def text_stages(*, finetune_steps: int = 200, budget: float = 1.0) -> list[dict[str, Any]]:
    """The text recipe for BERT-family encoders: distill to half the layers (when the distill
    stage exists), prune half the FFN neurons and a quarter of the heads, dynamic int8, ONNX."""
    stages: list[dict[str, Any]] = []
    if has_stage("distill"):
        stages.append({"type": "distill", "epochs": 1})
    stages += [
        {
            "type": "prune",
            "ffn_keep": 0.5,
            "heads_keep": 0.75,
            "finetune_steps": finetune_steps,
        },
        {"type": "quantize", "budget": budget, "method": "dynamic", "min_speedup": 0},
        {"type": "export", "formats": ["onnx"]},
    ]
    return stages


def plan_for(model: Any, budget: float = 1.0, finetune_steps: int = 200) -> Plan:
    """The recipe for a model: a Path (an .onnx file or a Hugging Face folder) or an nn.Module."""
    quantize = {
        "type": "quantize",
        "budget": budget,
        "min_speedup": 0,
        "candidates": [{"method": "static", "per_channel": True}, {"method": "dynamic"}],
    }
    if isinstance(model, Path) and model.suffix == ".onnx":
        return Plan("onnx", "an ONNX file: quantize-only (no weights to retrain)", [quantize])
    if isinstance(model, Path):
        model_type = _model_type(model)
        if model_type in BERT_FAMILY:
            return Plan(
                "text",
                f"a BERT-family folder ({model_type}): the text recipe",
                text_stages(finetune_steps=finetune_steps, budget=budget),
            )
        return Plan(
            "hf",
            f"a Hugging Face folder of model_type {model_type!r}, not BERT-family: quantize-only",
            [{"type": "export", "formats": ["onnx"]}, quantize],
        )
    import torch

    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv1d | torch.nn.Conv2d)]
    if convs:
        return Plan(
            "cnn",
            f"a convolutional module ({len(convs)} conv layers): the CNN recipe",
            cnn_stages(finetune_steps=finetune_steps, budget=budget),
        )
    return Plan(
        "module",
        "a module without convolutions: quantize, then ONNX and TFLite",
        [
            quantize,
            {"type": "export", "formats": ["onnx", "tflite"], "tflite_quantization": "dynamic"},
        ],
    )


def _model_type(folder: Path) -> str:
    try:
        config = json.loads((folder / "config.json").read_text("utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {folder / 'config.json'}: {exc}") from exc
    return str(config.get("model_type", "unknown"))


def resolve_model(spec: str) -> Path | Any:
    """MODEL as given on the command line: an .onnx file, a Hugging Face folder (config.json),
    or module:function returning an nn.Module."""
    path = Path(spec)
    if path.suffix == ".onnx":
        if not path.is_file():
            raise InputError(f"model {spec}: no such .onnx file")
        import onnx

        try:
            onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # onnx raises DecodeError and others for a bad file
            raise InputError(f"model {spec} is not a readable ONNX file: {exc}") from None
        return path
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise InputError(
                f"model {spec} is a folder without config.json; expected a Hugging Face "
                "model folder"
            )
        return path
    if ":" in spec and not path.exists():
        module_name, _, function = spec.partition(":")
        sys.path.insert(0, os.getcwd())
        try:
            factory = getattr(importlib.import_module(module_name), function)
        except (ImportError, AttributeError) as exc:
            raise InputError(
                f"model {spec}: cannot import {function} from {module_name}: {exc}"
            ) from None
        finally:
            sys.path.remove(os.getcwd())
        import torch

        module = factory()
        if not isinstance(module, torch.nn.Module):
            raise InputError(
                f"model {spec} returned a {type(module).__name__}; expected an nn.Module"
            )
        return module.eval()
    raise InputError(
        f"model {spec}: expected an .onnx file, a Hugging Face folder (with config.json) or "
        "module:function returning an nn.Module"
    )


# --- Choosing what ships --------------------------------------------------------------------------


@dataclass
class Outcome:
    """What optimize/demo found: the report's data, its files, and the per-profile lines."""

    choice: dict[str, Any]
    files: list[Path]
    lines: list[str]
    met: bool
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def profile_names(requested: Sequence[str] | None) -> list[str]:
    """The profiles to estimate: the requested ones (checked, naming the known ones when
    unknown), else every bundled one; and the host, which is measured."""
    names = list(requested) if requested else [p for p in list_profiles() if p != HOST]
    for name in names:
        load_profile(name)  # ProfileError names the known profiles
    return [*dict.fromkeys(names), HOST]


def score_models(
    packs: Sequence[Path], data: ArrayDataset, metric: str, progress: bool
) -> list[dict[str, Any]]:
    """Every model of every pack, scored on the evaluation data through the runtime on the
    backend its format needs, as the device will run it."""
    from .evaluate import evaluate

    rows = []
    for pack in packs:
        manifest = read_manifest(pack)
        for entry in manifest.models:
            backend = BACKEND_OF_FORMAT.get(entry.format)
            if backend is None:
                continue
            model = load(pack, backend=backend, threads=1, model_file=entry.path)
            result = evaluate(model, data, progress=progress, desc=f"score {entry.path}")
            rows.append(
                {
                    "key": f"{Path(pack).name.removesuffix('.edgepack')}/{entry.path}",
                    "pack": str(pack),
                    "model": entry.path,
                    "format": entry.format,
                    "precision": entry.precision,
                    "backend": backend,
                    "size_bytes": entry.size_bytes,
                    "metric": float(result.metrics[metric]),
                    "cost": entry.cost,
                    "sha256": entry.sha256,
                }
            )
    return rows


def measure_here(
    rows: Sequence[dict[str, Any]], seconds: float, cold_starts: int, progress: bool
) -> tuple[dict[str, float], str]:
    """Host p50 (ms, 1 thread) of each (pack, backend) the harness runs, and its table."""
    from tqdm import tqdm

    from edgepack.benchmarks.harness import benchmark
    from edgepack.benchmarks.report import format_table

    results, p50 = [], {}
    targets: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:  # the harness runs the first model of a pack the backend can run
        targets.setdefault((row["pack"], row["backend"]), row)
    for (pack, backend), row in tqdm(targets.items(), desc="benchmark", disable=not progress):
        result = benchmark(
            pack,
            backend=backend,
            threads=1,
            min_count=100,
            min_duration_s=seconds,
            cold_starts=cold_starts,
        )
        if result.model_file == row["model"]:
            p50[row["key"]] = result.latency["percentiles_s"]["p50"] * 1e3
        results.append(result)
    return p50, format_table(results) if results else ""


def estimate_rows(
    rows: Sequence[dict[str, Any]], profile: str, measured: dict[str, float]
) -> tuple[dict[str, dict[str, Any]], str | None]:
    """({key: estimate or measurement or error}, why the profile is left out or None)."""
    from edgepack.benchmarks.estimate import estimate_latency

    out: dict[str, dict[str, Any]] = {}
    if profile == HOST:
        for row in rows:
            if row["key"] in measured:
                out[row["key"]] = {
                    "kind": "measured",
                    "latency_ms": measured[row["key"]],
                    "label": "measured on this host through the harness, 1 thread",
                }
            else:
                out[row["key"]] = {"error": "the harness ran another model of this pack here"}
        return out, None if any("error" not in v for v in out.values()) else "nothing was measured"
    board = load_profile(profile)
    for row in rows:
        if not row["cost"]:
            out[row["key"]] = {"error": f"{row['model']} carries no cost summary"}
            continue
        try:
            estimate = estimate_latency(
                row["cost"],
                board,
                backend=row["backend"],
                model={"pack": row["pack"], "path": row["model"], "sha256": row["sha256"]},
            )
        except EdgepackError as exc:
            out[row["key"]] = {"error": str(exc)}
            continue
        out[row["key"]] = {
            k: estimate[k]
            for k in ("kind", "label", "latency_ms", "range_ms", "backend", "threads", "notes")
        }
    if all("error" in v for v in out.values()):
        reasons = sorted({v["error"] for v in out.values()})
        return out, "no model could be estimated: " + "; ".join(reasons)
    return out, None


def choose(
    rows: Sequence[dict[str, Any]],
    estimates: dict[str, dict[str, Any]],
    floor: float,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(fastest model at or above `floor`, or None; the closest one when none is)."""
    timed = [
        {**r, **{k: estimates[r["key"]][k] for k in ("kind", "latency_ms")}}
        for r in rows
        if r["key"] in estimates and "error" not in estimates[r["key"]]
    ]
    within = [t for t in timed if t["metric"] >= floor - 1e-9]
    if within:
        return _plain(min(within, key=lambda t: t["latency_ms"])), None
    if not timed:
        return None, None
    return None, _plain(max(timed, key=lambda t: (t["metric"], -t["latency_ms"])))


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in ("cost",)}


def ship_report(
    *,
    title: str,
    output: Path,
    reference: dict[str, Any],
    packs: Sequence[Path],
    evaluation: ArrayDataset,
    metric: str,
    budget: float,
    profiles: Sequence[str],
    stages: list[dict[str, Any]],
    term: Console,
    bench_seconds: float = 2.0,
    cold_starts: int = 1,
    verbose: bool = False,
    notes: Sequence[str] = (),
    step: Callable[[str], None] | None = None,
) -> Outcome:
    """Score, benchmark here, estimate per profile, choose, write the report."""
    from edgepack.benchmarks.report import choice_lines, write_choice_report

    say = step or term.say
    logs = output / "logs"
    say("scoring every packed model through the runtime")
    with quiet(logs / "score.log", verbose=verbose):
        rows = score_models(packs, evaluation, metric, progress=True)
    if not rows:
        raise QuantizationError("the recipe packed no model that ONNX Runtime or LiteRT can run")
    say(f"benchmarking on this host through the harness ({bench_seconds:g} s per model)")
    with quiet(logs / "benchmark.log", verbose=verbose):
        measured, table = measure_here(rows, bench_seconds, cold_starts, progress=True)
    for row in rows:
        row["host_p50_ms"] = measured.get(row["key"])
    say(f"estimating {len(profiles) - 1} device profile(s), measuring the host")
    floor = reference["metric"] - budget
    profile_rows: dict[str, Any] = {}
    with quiet(logs / "estimate.log", verbose=verbose):
        for name in profiles:
            estimates, left_out = estimate_rows(rows, name, measured)
            chosen, closest = (None, None) if left_out else choose(rows, estimates, floor)
            profile_rows[name] = {
                "estimates": estimates,
                "chosen": chosen,
                "closest": closest,
                "left_out": left_out,
            }
    choice = {
        "title": title,
        "metric": metric,
        "budget": budget,
        "reference": reference["metric"],
        "reference_model": reference,
        "stages": stages
        + [
            {
                "stage": "packed",
                "model": r["key"],
                "format": r["format"],
                "precision": r["precision"],
                "size_bytes": r["size_bytes"],
                "metric": r["metric"],
                "host_p50_ms": r["host_p50_ms"],
            }
            for r in rows
        ],
        "candidates": [_plain(r) for r in rows],
        "profiles": profile_rows,
        "host": table,
        "notes": list(notes),
    }
    files = write_choice_report(choice, output)
    met = all(r["chosen"] is not None for r in profile_rows.values() if not r["left_out"])
    return Outcome(choice, files, choice_lines(choice), met)


# --- edgepack optimize ----------------------------------------------------------------------------


def optimize(
    model: str | PathLike,
    data: str,
    output: PathLike,
    *,
    eval_data: str | None = None,
    profiles: Sequence[str] | None = None,
    budget: float = 1.0,
    input_shape: Sequence[int] | None = None,
    finetune_steps: int = 200,
    bench_seconds: float = 2.0,
    verbose: bool = False,
    term: Console | None = None,
) -> Outcome:
    """Pick the recipe for the model's family, run it into OUTPUT/packs/, choose per profile."""
    from .quiet import console
    from .recipe import Recipe, run_recipe

    started = time.perf_counter()
    term = term or console()
    output = Path(output)
    if budget < 0:
        raise InputError(f"budget must be a number of points >= 0, got {budget}")
    names = profile_names(profiles)
    logs = output / "logs"
    with quiet(logs / "load.log", verbose=verbose):
        resolved = resolve_model(str(model))
        evaluation = _load_array_data(
            eval_data or data, resolved, "--eval" if eval_data else "--data"
        )
        _load_array_data(data, resolved, "--data")
    plan = plan_for(resolved, budget, finetune_steps)
    term.say(
        f"recipe: {plan.family} ({plan.reason}): {' -> '.join(s['type'] for s in plan.stages)}"
    )
    module = example = None
    source = None
    if isinstance(resolved, Path):
        source = str(resolved)
    else:
        if not input_shape:
            raise InputError(
                "a module:function model needs --input-shape, one sample's shape (e.g. 1 8 8)"
            )
        import torch

        module = resolved
        name = next(iter(evaluation.inputs))
        example = {name: torch.zeros((1, *input_shape), dtype=torch.float32)}
        if tuple(evaluation.inputs[name].shape[1:]) != tuple(input_shape):
            raise InputError(
                f"--input-shape {list(input_shape)} but the data's samples have shape "
                f"{list(evaluation.inputs[name].shape[1:])}"
            )
    task = "text-classification" if plan.family in ("text", "hf") else "image-classification"
    packs_dir = output / "packs"
    packs_dir.mkdir(parents=True, exist_ok=True)
    data_table = {"train": data, "calibration": data, "evaluation": eval_data or data}
    if plan.family == "onnx":
        data_table.pop("train")
    base = Recipe(
        name="source",
        output=str(packs_dir / "source.edgepack"),
        source=source,
        task=task,
        data=data_table,
        stages=[{"type": "export", "formats": ["onnx"]}] if plan.family != "onnx" else [],
    )
    recipe = Recipe(
        name="optimized",
        output=str(packs_dir / "optimized.edgepack"),
        source=source,
        task=task,
        budget=budget,
        data=data_table,
        stages=plan.stages,
        keep_fp32=True,  # on a board where int8 is slower, the fp32 model is the one to ship
    )
    notes: list[str] = []
    term.say("running the recipe (third-party output: logs/compress.log)")
    with quiet(logs / "compress.log", verbose=verbose):
        run_recipe(base, module=module, example_inputs=example)
        try:
            run_recipe(recipe, module=module, example_inputs=example)
        except QuantizationError as exc:
            notes.append(str(exc).splitlines()[0])
            term.say(f"  {str(exc).splitlines()[0]}")
    reference = score_models([Path(base.output)], evaluation, "accuracy", progress=False)[0]
    outcome = ship_report(
        title=f"edgepack optimize: {model}",
        output=output,
        reference=reference,
        packs=[Path(recipe.output)],
        evaluation=evaluation,
        metric="accuracy",
        budget=budget,
        profiles=names,
        stages=[
            {**_plain(reference), "stage": "source", "model": reference["key"], "host_p50_ms": None}
        ],
        term=term,
        bench_seconds=bench_seconds,
        verbose=verbose,
        notes=notes,
    )
    outcome.seconds = time.perf_counter() - started
    return outcome


def _load_array_data(spec: str, model: Any, flag: str) -> ArrayDataset:
    """Check a data argument before the run (a clear line for an unreadable file)."""
    try:
        dataset = load_dataset(spec)
    except EdgepackError:
        raise
    except (OSError, ValueError) as exc:
        raise InputError(f"{flag} {spec}: cannot read it: {exc}") from None
    if isinstance(dataset, TextDataset):
        if not isinstance(model, Path) or model.suffix == ".onnx":
            raise InputError(f"{flag} {spec} is text; text data needs a Hugging Face model folder")
        return dataset.tokenize(str(model), 128)
    if dataset.labels is None:
        raise InputError(
            f"{flag} {spec} has no labels; optimize measures accuracy on labelled data"
        )
    return dataset
