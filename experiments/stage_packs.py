"""Per-stage packs for the compression experiments: a `snapshot` recipe stage that keeps the
current model between stages, one-model packs cut from a recipe's pack, and their rows (accuracy
through edgepack.runtime, parameters, file size, batch-1 p50 timed interleaved by the harness).

A recipe's pack holds only its last stage's models; the experiments show every stage, so the
recipe they run has `snapshot` stages in between (a row of STAGES, the recipe's own extension
point) that save the model as it is at that point, to be packed and measured like the others.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.benchmarks.harness import compare
from edgepack.compress.data import ArrayDataset, TextDataset
from edgepack.compress.evaluate import evaluate
from edgepack.compress.options import StageOptions
from edgepack.compress.recipe import STAGES, StageRecord, StageType, Workspace
from edgepack.packing import assemble_pack
from edgepack.runtime import InputError, load, read_manifest
from edgepack.runtime.pack import PackReader

PathLike = str | os.PathLike[str]
TOKENIZER_FILES = (
    "vocab.txt",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


@dataclass(frozen=True)
class SnapshotOptions(StageOptions):
    """Keep the current model at `path`: a Hugging Face folder (with its tokenizer) for a text
    model, else its fp32 ONNX file."""

    path: str = ""

    def validate(self) -> None:
        if not self.path:
            raise InputError("a snapshot stage needs path, where the model is kept")


def run_snapshot(work: Workspace, options: SnapshotOptions) -> StageRecord:
    target = Path(options.path)
    partial = target.with_name(f".{target.name}.tmp{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        if work.hf_dir is not None and hasattr(work.module, "save_pretrained"):
            work.module.save_pretrained(str(partial))
            for name in TOKENIZER_FILES:
                if (work.hf_dir / name).is_file():
                    shutil.copyfile(work.hf_dir / name, partial / name)
        else:
            shutil.copyfile(work.onnx(), partial)
        if target.is_dir():
            shutil.rmtree(target)
        partial.replace(target)
    finally:
        if partial.is_dir():
            shutil.rmtree(partial, ignore_errors=True)
        elif partial.exists():
            partial.unlink()
    return StageRecord("snapshot", provenance={"path": str(target)})


STAGES.setdefault("snapshot", StageType(SnapshotOptions, run_snapshot))


def split_pack(pack: PathLike, folder: PathLike) -> dict[str, Path]:
    """One pack per model of `pack` (same assets, preprocessing and labels), so each model is
    loaded, scored and timed on its own: {model path in the pack: new pack}."""
    pack, folder = Path(pack), Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    found = {}
    with PackReader(pack) as reader:
        manifest = reader.manifest
        scratch = folder / f".{pack.stem}-files"
        scratch.mkdir(exist_ok=True)
        assets = {}
        for f in manifest.files:
            (scratch / f.path).write_bytes(reader.read(f.path))
            assets[f.path] = (scratch / f.path, f.role)
        for entry in manifest.models:
            model_file = scratch / entry.path
            model_file.write_bytes(reader.read(entry.path))
            stem = entry.path.replace(".", "-")
            out = folder / f"{pack.stem}-{stem}.edgepack"
            assemble_pack(
                out,
                [(model_file, entry)],
                name=out.stem,
                task=manifest.task,
                assets=assets,
                preprocessing=manifest.preprocessing,
                postprocessing=manifest.postprocessing,
                provenance=manifest.provenance,
                metrics=manifest.metrics,
            )
            found[entry.path] = out
        shutil.rmtree(scratch)
    return found


@dataclass
class Row:
    """One model in the table: what it is, and what it scored."""

    key: str
    title: str
    pack: Path
    format: str = ""
    precision: str = ""
    parameters: int = 0
    size_bytes: int = 0
    accuracy: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> None:
        entry = read_manifest(self.pack).models[0]
        self.format, self.precision = entry.format, entry.precision
        self.size_bytes = entry.size_bytes
        self.parameters = int((entry.cost or {}).get("parameters", 0))

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(self).items()}


def accuracy(pack: Path, data: ArrayDataset | TextDataset, batch: int = 64) -> float:
    """Percent of rows whose predicted class is the label, through the runtime as on a device:
    text as strings through the pack's tokenizer (rows by length, so batches pad little),
    arrays through its model."""
    model = load(pack, threads=2)  # a one-model pack: its own backend
    if isinstance(data, ArrayDataset):
        return float(evaluate(model, data, progress=False).metrics["accuracy"])
    order = np.argsort([len(t) for t in data.texts], kind="stable")
    predicted = np.empty(len(order), np.int64)
    for start in range(0, len(order), batch):
        index = order[start : start + batch]
        predicted[index] = [p.index for p in model.predict([data.texts[i] for i in index])]
    return 100.0 * float(np.mean(predicted == data.labels))


def time_rows(
    rows: Sequence[Row],
    dims: dict[str, int] | None = None,
    min_count: int = 200,
    min_duration_s: float = 5.0,
) -> list[Any]:
    """Batch-1 p50/p90 on 1 thread, the queries of all rows interleaved by the harness in one
    comparison; each one-model pack runs on its own backend ("auto": ONNX Runtime for an ONNX
    model, LiteRT for a TFLite one)."""
    runs = compare(
        [r.pack for r in rows],
        backend="auto",
        threads=1,
        dims=dims or {},
        min_count=min_count,
        min_duration_s=min_duration_s,
        cold_starts=0,
    )
    for row, result in zip(rows, runs, strict=True):
        q = result.latency["percentiles_s"]
        row.p50_ms, row.p90_ms = q["p50"] * 1e3, q["p90"] * 1e3
        row.extra["backend"] = result.backend
    return runs


def format_rows(rows: Sequence[Row], reference: Row | None = None) -> str:
    """The side-by-side table; with a reference row, each row's p50 and size as a ratio of it."""
    head = ["stage", "format", "precision", "params", "file MB", "accuracy %", "p50 ms", "p90 ms"]
    if reference is not None:
        head += [f"p50 / {reference.key}", f"size / {reference.key}"]
    table = [head]
    for r in rows:
        cells = [
            r.title,
            r.format,
            r.precision,
            f"{r.parameters:,}",
            f"{r.size_bytes / 1e6:.2f}",
            "-" if r.accuracy is None else f"{r.accuracy:.2f}",
            "-" if r.p50_ms is None else f"{r.p50_ms:.3f}",
            "-" if r.p90_ms is None else f"{r.p90_ms:.3f}",
        ]
        if reference is not None:
            cells += [
                f"{r.p50_ms / reference.p50_ms:.3f}" if r.p50_ms and reference.p50_ms else "-",
                f"{r.size_bytes / reference.size_bytes:.3f}",
            ]
        table.append(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in table]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(line.rstrip() for line in lines)
