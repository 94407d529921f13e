"""The main job on the bundled default: train a small CNN on scikit-learn's digits, compress it
to an int8 ONNX + TFLite pack within a 1-point accuracy budget, run it, benchmark it here and
estimate its latency on the device profiles. `edgepack demo` runs it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits

from edgepack.runtime import QuantizationError, load

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


def train(x: np.ndarray, y: np.ndarray, epochs: int = 12, seed: int = 0) -> torch.nn.Module:
    """Adam on cross-entropy, batch 64: about a second per epoch on two cores."""
    torch.manual_seed(seed)
    model = digits_cnn()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    inputs, labels = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(epochs):
        order = torch.randperm(len(inputs))
        for start in range(0, len(inputs), 64):
            batch = order[start : start + 64]
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(inputs[batch]), labels[batch])
            loss.backward()
            optimizer.step()
    return model.eval()


def run_demo(output: PathLike = "edgepack-demo", *, quick: bool = False) -> dict:
    """Train, compress, pack, run, benchmark, estimate latency; print each step; return figures."""
    from edgepack.benchmarks.estimate import estimate_pack, format_estimate
    from edgepack.benchmarks.harness import benchmark
    from edgepack.benchmarks.report import format_table

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    train_x, train_y, test_x, test_y = split_digits()
    print(f"[1/5] training a CNN on {len(train_x)} digits (scikit-learn's bundled set)")
    model = train(train_x, train_y, epochs=4 if quick else 12)
    with torch.no_grad():
        accuracy = float((model(torch.from_numpy(test_x)).argmax(1).numpy() == test_y).mean())
    print(f"      PyTorch accuracy on {len(test_x)} held-out digits: {100 * accuracy:.2f}%")

    np.savez(output / "calibration.npz", **{INPUT: train_x[:256]})
    np.savez(output / "test.npz", **{INPUT: test_x, "labels": test_y})
    recipe = Recipe(
        name="digits",
        output=str(output / "digits.edgepack"),
        task="image-classification",
        data={
            "calibration": str(output / "calibration.npz"),
            "evaluation": str(output / "test.npz"),
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
        },
        postprocessing={
            "output_name": "logits",
            "softmax": True,
            "labels": [str(d) for d in range(10)],
        },
        stages=[
            {"type": "export", "formats": ["onnx", "tflite"], "tflite_quantization": "dynamic"},
            {
                "type": "quantize",
                "budget": 1.0,
                "candidates": [{"method": "static", "per_channel": True}, {"method": "dynamic"}],
            },
        ],
    )
    print("[2/5] compressing: ONNX export, TFLite (dynamic int8), ONNX int8 within 1 point")
    try:
        run_recipe(recipe, module=model, example_inputs={INPUT: torch.from_numpy(train_x[:1])})
    except QuantizationError as exc:
        print(f"      int8 ONNX not kept: {exc}")
    pack = Path(recipe.output)
    print(f"[3/5] pack written: {pack} ({pack.stat().st_size / 1e3:.0f} kB)")

    runtime_model = load(pack, threads=1)
    image = (test_x[0, 0] * 255 / 16).astype(np.uint8)  # an 8-bit grey image, as a camera gives
    prediction = runtime_model.predict(image)
    print(
        f"[4/5] {runtime_model.describe()['model_file']} on {runtime_model.backend}: "
        f"digit {test_y[0]} predicted as {prediction.label} ({prediction.score:.3f})"
    )

    print("[5/5] benchmarking here, then estimating the device profiles")
    backends = ["onnxruntime", "litert"]
    results = [
        benchmark(
            pack,
            backend=b,
            threads=1,
            min_count=100 if quick else 300,
            min_duration_s=1 if quick else 3,
            cold_starts=1 if quick else 3,
        )
        for b in backends
    ]
    print(format_table(results))
    estimates = {}
    for profile in ("rpi-zero-2w", "rpi4-1.8ghz", "rpi5", "jetson-orin-nano"):
        # The cost summary the estimator reads is counted on the ONNX models.
        estimates[profile] = estimate_pack(pack, profile, backend="onnxruntime")
        print(f"  {profile}: {format_estimate(estimates[profile]).splitlines()[0]}")
    print(f"done in {time.perf_counter() - started:.0f} s; try: edgepack info {pack}")
    return {
        "pytorch_accuracy": accuracy,
        "pack": str(pack),
        "benchmarks": [r.to_dict() for r in results],
        "estimates": estimates,
    }
