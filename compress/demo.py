"""The main job on the bundled default: train a small CNN teacher on scikit-learn's digits, run
the CNN recipe (distill, structured prune, int8, ONNX and TFLite) within a 1-point accuracy budget,
benchmark the packs here, estimate them on every device profile, and say which pack to flash to
which device, with a report (markdown, HTML with plots, JSON). `edgepack demo` runs it; its output
is edgepack's own lines and progress bars, third-party output goes to DIR/logs/.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from edgepack.compress.errors import QuantizationError
from edgepack.runtime import load
from edgepack.runtime.pack import PackReader

from .data import ArrayDataset
from .optimize import Outcome, cnn_stages, profile_names, score_models, ship_report
from .quiet import quiet
from .recipe import Recipe, run_recipe

PathLike = str | os.PathLike[str]
INPUT = "pixels"


def digits_cnn() -> torch.nn.Module:
    """A small CNN for 1x8x8 digit images with raw pixel values 0..16."""
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(32, 64, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(64 * 4 * 4, 128),
        torch.nn.ReLU(),
        torch.nn.Linear(128, 10),
    )


def split_digits(seed: int = 0, test_fraction: float = 0.25):
    """(train_x, train_y, test_x, test_y): a seeded split of the 1,797 digits, x as Nx1x8x8."""
    digits = load_digits()
    x = digits.data.astype(np.float32).reshape(-1, 1, 8, 8)
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    cut = int(len(x) * (1 - test_fraction))
    train, test = order[:cut], order[cut:]
    return x[train], y[train], x[test], y[test]


def train(
    x: np.ndarray, y: np.ndarray, epochs: int = 12, seed: int = 0, progress: bool = False
) -> torch.nn.Module:
    """Adam on cross-entropy, batch 64: about a second per epoch on two cores."""
    from tqdm import tqdm

    torch.manual_seed(seed)
    model = digits_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    inputs, labels = torch.from_numpy(x), torch.from_numpy(y)
    for _ in tqdm(range(epochs), desc="train teacher", disable=not progress):
        order = torch.randperm(len(inputs))
        for start in range(0, len(inputs), 64):
            batch = order[start : start + 64]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(inputs[batch]), labels[batch])
            loss.backward()
            optimizer.step()
    return model.eval()


def trained_digits_cnn(epochs: int = 3) -> torch.nn.Module:
    """The demo's CNN trained on its seeded digits split (about 96% after 3 epochs, seconds):
    a ready factory for `edgepack optimize edgepack.compress.demo:trained_digits_cnn`."""
    train_x, train_y, _, _ = split_digits()
    return train(train_x, train_y, epochs=epochs)


@dataclass(frozen=True)
class DemoOptions:
    """How long each part runs; the defaults are the README's demo, tests shorten them."""

    epochs: int = 12  # teacher training
    distill_epochs: int = 4
    finetune_steps: int = 200  # after pruning
    bench_seconds: float = 2.0  # per model, in the harness
    cold_starts: int = 1
    budget: float = 1.0  # points of accuracy below the teacher


def run_demo(
    output: PathLike = "edgepack-demo",
    options: DemoOptions | None = None,
    *,
    verbose: bool = False,
    profiles: list[str] | None = None,
) -> Outcome:
    """Teacher, recipe, packs, scores, host benchmark, estimates per profile, report; print the
    steps and, last, which pack to flash to which device. Returns the Outcome."""
    from .quiet import console

    options = options or DemoOptions()
    term = console()
    output = Path(output)
    started = time.perf_counter()
    names = profile_names(profiles)
    stages = cnn_stages(
        distill_epochs=options.distill_epochs,
        finetune_steps=options.finetune_steps,
        budget=options.budget,
    )
    output.mkdir(parents=True, exist_ok=True)
    # A model this small gains nothing from a second thread, and on a loaded 2-core machine the
    # threads' synchronisation costs more than it saves (one teacher epoch at load 12: 6.4 s on
    # one thread, 15.1 s on two).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _run(output, options, names, stages, term, verbose, started)
    finally:
        torch.set_num_threads(threads)


def _run(output, options, names, stages, term, verbose, started) -> Outcome:
    logs = output / "logs"
    steps = 6
    counter = iter(range(1, steps + 1))

    def step(text: str) -> None:
        term.say(f"[{next(counter)}/{steps}] {text}")

    train_x, train_y, test_x, test_y = split_digits()
    step(f"training the teacher CNN on {len(train_x)} digits (scikit-learn's bundled set)")
    with quiet(logs / "train.log", verbose=verbose):
        teacher = train(train_x, train_y, epochs=options.epochs, progress=True)
    data = output / "data"
    data.mkdir(exist_ok=True)
    np.savez(data / "train.npz", **{INPUT: train_x, "labels": train_y})
    np.savez(data / "calibration.npz", **{INPUT: train_x[:256]})
    np.savez(data / "test.npz", **{INPUT: test_x, "labels": test_y})
    packs = output / "packs"
    teacher_recipe = digits_recipe("digits-teacher", packs, data, [{"type": "export"}])
    recipe = digits_recipe("digits", packs, data, stages, budget=options.budget)
    step(
        "compressing: "
        + " -> ".join(s["type"] for s in stages)
        + f", within {options.budget:g} point"
    )
    example = {INPUT: torch.from_numpy(train_x[:1])}
    notes: list[str] = []
    with quiet(logs / "compress.log", verbose=verbose):
        run_recipe(teacher_recipe, module=teacher, example_inputs=example)
        try:
            manifest = run_recipe(recipe, module=teacher, example_inputs=example)
        except QuantizationError as exc:  # the pack is written with the last good stage's models
            notes.append(str(exc).splitlines()[0])
            manifest = None
    for note in notes:
        term.say(f"      {note}")
    written = [Path(teacher_recipe.output), Path(recipe.output)]
    step("packs written: " + ", ".join(f"{p} ({p.stat().st_size / 1e3:.0f} kB)" for p in written))
    left = leave_examples(output, written[0], test_x)
    term.say(f"      for the README's examples: {', '.join(str(p) for p in left)}")
    evaluation = ArrayDataset({INPUT: test_x}, test_y)
    with quiet(logs / "score.log", verbose=verbose):
        reference = score_models(written[:1], evaluation, "accuracy", progress=False)[0]
        runtime_model = load(written[1], threads=1)
        image = (test_x[0, 0] * 255 / 16).astype(np.uint8)  # an 8-bit grey image, as a camera gives
        prediction = runtime_model.predict(image)
    term.say(
        f"      teacher accuracy {reference['metric']:.2f}% on {len(test_x)} held-out digits; "
        f"{runtime_model.describe()['model_file']} reads digit {test_y[0]} as {prediction.label} "
        f"({prediction.score:.3f})"
    )
    outcome = ship_report(
        title="edgepack demo: digits CNN",
        output=output,
        reference=reference,
        packs=written[1:],
        evaluation=evaluation,
        metric="accuracy",
        budget=options.budget,
        profiles=names,
        stages=[_stage_row("teacher", reference), *_recipe_stages(manifest)],
        term=term,
        bench_seconds=options.bench_seconds,
        cold_starts=options.cold_starts,
        verbose=verbose,
        notes=notes,
        step=step,
    )
    outcome.seconds = time.perf_counter() - started
    term.say(
        f"[done] in {outcome.seconds:.0f} s; report: {output / 'report.html'} "
        "(and report.md, report.json)"
    )
    term.say("flash to each device (pack, format, latency, accuracy):")
    for line in outcome.lines:
        term.say(f"  {line}")
    return outcome


def leave_examples(output: Path, teacher_pack: Path, test_x: np.ndarray) -> list[Path]:
    """What the README's examples use, beside the packs: the teacher's fp32 ONNX model
    (`model.onnx`, input `pixels` Nx1x8x8 float32 in 0..16, output `logits`), `labels.txt`
    (one class name a line), `digit.npy` (one held-out 8x8 float32 image in scikit-learn's
    0..16) and `batch.npy` (8 held-out model inputs, 8x1x8x8). Each is written whole or not at
    all."""
    with PackReader(teacher_pack) as reader:
        entry = next(m for m in reader.manifest.models if m.format == "onnx")
        model = reader.read(entry.path)
    files = {
        "model.onnx": model,
        "labels.txt": "".join(f"{d}\n" for d in range(10)).encode(),
        "digit.npy": _npy(test_x[0, 0]),
        "batch.npy": _npy(test_x[:8]),
    }
    for name, data in files.items():
        staging = output / f".{name}.{os.getpid()}.tmp"
        staging.write_bytes(data)
        os.replace(staging, output / name)
    return [output / name for name in files]


def _npy(array: np.ndarray) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(array, np.float32), allow_pickle=False)
    return buffer.getvalue()


def digits_recipe(
    name: str,
    packs: Path,
    data: Path,
    stages: list[dict],
    budget: float | None = None,
    evaluation: str = "test.npz",
) -> Recipe:
    """The demo's recipe for the digits CNN: its data files in `data` (train.npz,
    calibration.npz and the evaluation file), image pre- and postprocessing, the stages."""
    return Recipe(
        name=name,
        output=str(packs / f"{name}.edgepack"),
        task="image-classification",
        budget=budget,
        data={
            "train": str(data / "train.npz"),
            "calibration": str(data / "calibration.npz"),
            "evaluation": str(data / evaluation),
        },
        preprocessing={
            "kind": "image",
            "input_name": INPUT,
            "size": [8, 8],
            "layout": "NCHW",
            "color": "grayscale",
            "scale": 16 / 255,
            "mean": [0.0],
            "std": [1.0],
            "pixel_range": [0, 255],  # 8-bit images, scaled to the 0..16 it was trained on
        },
        postprocessing={
            "output_name": "logits",
            "softmax": True,
            "labels": [str(d) for d in range(10)],
        },
        stages=stages,
        keep_fp32=budget is not None,  # on a board where int8 is slower, fp32 is the one to ship
    )


def _stage_row(stage: str, row: dict) -> dict:
    return {
        "stage": stage,
        "model": row["key"],
        "format": row["format"],
        "precision": row["precision"],
        "size_bytes": row["size_bytes"],
        "metric": row["metric"],
        "host_p50_ms": None,
    }


def _recipe_stages(manifest) -> list[dict]:
    """The recipe's intermediate models, as its stages measured them on this host."""
    if manifest is None:
        return []
    rows = []
    prune = manifest.metrics.get("prune") or {}
    if prune:
        rows.append(
            {
                "stage": "prune",
                "model": "pruned fp32 (in the run)",
                "format": "onnx",
                "precision": "fp32",
                "size_bytes": int(prune.get("onnx_bytes_after", 0)),
                "metric": prune.get("metrics_after_accuracy"),
                "host_p50_ms": prune.get("latency_after_p50_ms"),
            }
        )
    return rows
