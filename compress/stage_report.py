"""The per-stage rows of a compress run's report: every model a stage leaves, scored as it ends
(through the runtime, on the data of that moment: a trimmed vocabulary re-tokenizes it) and
timed at the end of the run, all side by side, so the p50 column compares like with like."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from edgepack.runtime import EdgepackError, Model

from .workspace import ModelFile, StageRecord, Workspace, cost_assumptions, open_model_file

TIMING = {"warmup": 5, "min_runs": 30, "min_seconds": 1.0}  # per model, interleaved


@dataclass
class _Captured:
    row: dict[str, Any]
    runner: Model
    feeds: dict[str, np.ndarray]


class StageReport:
    """Collects one row per (stage, model) while a recipe runs; `rows()` times them together."""

    def __init__(self) -> None:
        self._captured: list[_Captured] = []
        self._number = 0  # of the stage being captured; 0 is the source

    def source(self, work: Workspace) -> None:
        """The source model, before any stage changes it (exports it if nothing had yet)."""
        self._capture(work, "source", work.fp32_model(), 0.0, None)

    def stage(self, work: Workspace, record: StageRecord, changed_weights: bool) -> None:
        self._number += 1
        models = list(record.models) + ([work.fp32_model()] if changed_weights else [])
        scored = record.provenance.get("budget_check", {}).get("models", {})
        for model in models:
            known = scored.get(model.entry.path, {}).get(work.metric)
            self._capture(work, record.name, model, record.seconds, known)

    def rows(self, progress: bool = False) -> list[dict[str, Any]]:
        """The rows, with host_p50_ms: batch 1, one thread, every model in turn in one loop."""
        if not self._captured:
            return []
        from .evaluate import measure_latency

        # Each model on its own feeds (a trimmed vocabulary changes the ids), timed in turn.
        groups: dict[int, list[_Captured]] = {}
        for item in self._captured:
            groups.setdefault(id(item.feeds), []).append(item)
        timed = {}
        for items in groups.values():
            latencies = measure_latency([i.runner for i in items], items[0].feeds, **TIMING)
            timed.update({id(i): lat.p50_ms for i, lat in zip(items, latencies, strict=True)})
        if len(groups) > 1:  # different feeds: the groups were timed one after another
            for item in self._captured:
                item.row["timed_with_other_feeds"] = True
        return [{**i.row, "host_p50_ms": round(timed[id(i)], 4)} for i in self._captured]

    def _capture(
        self, work: Workspace, stage: str, model: ModelFile, seconds: float, metric: float | None
    ) -> None:
        from .evaluate import evaluate

        data = work.evaluation
        if metric is None and data is not None and data.labels is not None:
            runner = open_model_file(model, work.dir)
            result = evaluate(runner, data, progress=work.progress, desc=f"report: {stage}")
            metric = float(result.metrics[work.metric])
        entry, timed = model.entry, open_model_file(model, work.dir, threads=1)
        cost = entry.cost or _cost(model, cost_assumptions(work))
        row = {
            "number": self._number,
            "stage": stage,
            "model": entry.path,
            "format": entry.format,
            "precision": entry.precision,
            "parameters": cost.get("parameters"),
            "flops": cost.get("flops"),
            "size_bytes": model.path.stat().st_size,
            "metric_name": work.metric if metric is not None else None,
            "metric": metric,
            "seconds": round(seconds, 2),
        }
        self._captured.append(_Captured(row, timed, self._feeds(work, timed)))

    def _feeds(self, work: Workspace, runner: Model) -> dict[str, np.ndarray]:
        """One real sample when there is data, else the harness's synthetic inputs; the very
        object an earlier model got when the values are the same, so the two are timed together."""
        data = work.evaluation or work.calibration or work.train
        if data is None:
            from edgepack.benchmarks.inputs import synthetic_inputs

            feeds = synthetic_inputs(runner.entry)
        else:
            feeds = next(data.batches(1))
        for item in self._captured:
            if item.feeds.keys() == feeds.keys() and all(
                np.array_equal(item.feeds[k], v) for k, v in feeds.items()
            ):
                return item.feeds
        return feeds


def _cost(model: ModelFile, assume: dict[str, int] | None) -> dict[str, Any]:
    """Parameters and FLOPs of a model file; empty when they cannot be counted (packing warns)."""
    from .cost import cost_or_none, tflite_cost_summary

    if model.entry.format == "tflite":
        try:
            return tflite_cost_summary(model.path)
        except EdgepackError:
            return {}
    return cost_or_none(model.path, assume)[0] or {}
