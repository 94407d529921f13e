"""Run a pack on text (--text), images (--image) or raw arrays (--npy NAME=FILE)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edgepack.runtime import InputError, Model, load

from .arguments import name_value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pack", help="pack directory or .edgepack archive")
    given = parser.add_mutually_exclusive_group(required=True)
    given.add_argument("--text", action="append", help="text to classify (repeatable)")
    given.add_argument(
        "--image",
        action="append",
        help="an image file (PNG, JPEG, ...: needs Pillow) or a .npy array, HxW or HxWxC "
        "(channels last, any size: resized), uint8 or float, with pixel values in the range "
        "the pack was made for (`edgepack info PACK` says which, e.g. 0..255); repeatable",
    )
    given.add_argument("--npy", action="append", metavar="NAME=FILE", help="raw input array")
    add_runtime_arguments(parser)
    parser.add_argument("--json", action="store_true", help="print JSON")


def add_runtime_arguments(parser: argparse.ArgumentParser) -> None:
    """The load() options, shared by every command that runs a pack."""
    parser.add_argument(
        "--backend", default="auto", help="onnxruntime (onnx), litert (tflite) or auto"
    )
    parser.add_argument("--threads", type=_positive, default=None, help="intra-op threads")
    parser.add_argument(
        "--provider",
        action="append",
        dest="providers",
        help="ONNX Runtime execution provider, e.g. CUDAExecutionProvider (repeatable)",
    )


def main(args: argparse.Namespace) -> int:
    model = load(args.pack, backend=args.backend, threads=args.threads, providers=args.providers)
    _check_kind(model, "text" if args.text else "image" if args.image else None)
    if args.npy:
        outputs = model.run(_read_arrays(args.npy))
        result = {name: value.tolist() for name, value in outputs.items()}
        text = "\n".join(f"{n}: shape {v.shape} {v.dtype}\n{v}" for n, v in outputs.items())
    else:
        predictions = model.predict(args.text or args.image)
        result = [p.to_dict() for p in predictions]
        text = "\n".join(
            f"{item!s:.60}: {p.label} ({p.score:.3f})"
            for item, p in zip(args.text or args.image, predictions, strict=True)
        )
    if args.json:
        print(json.dumps({"model": model.describe(), "result": result}, indent=2))
    else:
        info = model.describe()
        print(
            f"# {info['pack']}: {info['model_file']} ({info['precision']}) on {info['backend']}, "
            f"{info['threads']} thread(s)"
        )
        print(text)
    return 0


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return int(text)


def _check_kind(model: Model, given: str | None) -> None:
    """--text for text packs, --image for image packs: say which the pack takes, not how the
    other one failed."""
    pre = model.manifest.preprocessing
    takes = pre["kind"] if pre else None
    if given is not None and given != takes:
        wanted = {"text": "text (--text)", "image": "images (--image FILE)"}
        raise InputError(
            f"pack {model.manifest.name!r} takes "
            f"{wanted.get(takes, 'arrays (--npy NAME=FILE): it has no preprocessing section')}, "
            f"not --{given}"
        )


def _read_arrays(items: list[str]) -> dict[str, np.ndarray]:
    arrays = {}
    for item in items:
        name, path = name_value(item, "--npy", "NAME=FILE")
        if not Path(path).is_file():
            raise InputError(f"--npy {name}: no file {path}")
        try:  # never unpickle: a pickle runs code
            arrays[name] = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise InputError(
                f"--npy {name}: {path} is not a .npy array of numbers ({exc}); edgepack "
                "reads arrays with allow_pickle=False and never unpickles"
            ) from exc
        if not isinstance(arrays[name], np.ndarray):
            raise InputError(f"--npy {name}: {path} is an .npz archive; give one .npy array")
    return arrays
