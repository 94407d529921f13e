"""The pack options (labels, softmax, text and image preprocessing) that `pack`, `quantize` and
`compress` share: one set of flags, and the manifest sections they make.

A flag not given leaves the section as the source has it (an existing pack, the recipe, a
Hugging Face folder's id2label), so `edgepack pack PACK --labels labels.txt -o NEW` changes the
labels and nothing else.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgepack.packing.repack import KEEP, PackChanges, repack
from edgepack.runtime import InputError, PackManifest, read_manifest

TEXT_ROLES = ("input_ids", "attention_mask", "token_type_ids")
IMAGE_DEFAULTS = {"layout": "NCHW", "color": "rgb", "scale": 1 / 255, "mean": [0.0], "std": [1.0]}
TEXT_FLAGS = ("vocab", "tokenizer_json", "max_length", "cased", "padding")
IMAGE_FLAGS = ("image_size", "layout", "color", "scale", "mean", "std", "pixel_range")
POST_FLAGS = ("labels", "softmax", "output_name")
EIGHT_BIT = [0, 255]


def add_pack_options(parser: argparse.ArgumentParser) -> None:
    """The flags; every default is None, so a flag not given changes nothing."""
    post = parser.add_argument_group("postprocessing (what `run` prints)")
    post.add_argument("--labels", help="labels file (one per line) or a comma-separated list")
    post.add_argument(
        "--softmax",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="apply softmax to the scores (--no-softmax: raw scores)",
    )
    post.add_argument("--output-name", help="output holding the class scores (default: first)")
    text = parser.add_argument_group("text preprocessing (BERT WordPiece)")
    text.add_argument("--vocab", help="vocab.txt of the tokenizer")
    text.add_argument("--tokenizer-json", help="tokenizer.json, carried for other tools (not read)")
    text.add_argument("--max-length", type=int, help="tokens per text (default 128)")
    text.add_argument(
        "--cased",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="do not lower-case (default: lower-case)",
    )
    text.add_argument("--padding", choices=["max_length", "longest"], help="default max_length")
    image = parser.add_argument_group(
        "image preprocessing: x = (pixel * scale - mean) / std, after a resize to H x W"
    )
    image.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"))
    image.add_argument("--layout", choices=["NCHW", "NHWC"], help="default NCHW")
    image.add_argument("--color", choices=["rgb", "grayscale"], help="default rgb")
    image.add_argument("--scale", type=float, help="multiplies raw pixels (default 1/255)")
    image.add_argument("--mean", type=float, nargs="+", help="per channel or one (default 0)")
    image.add_argument("--std", type=float, nargs="+", help="per channel or one (default 1)")
    image.add_argument(
        "--pixel-range",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        help="raw pixel values the model was trained on, before --scale (default 0 255: 8-bit "
        "images); run refuses images outside it and warns on float images filling only its "
        "bottom, e.g. 0..16 given for 0..255. Not 0..255? give --scale too",
    )


def given(args: argparse.Namespace, flags: tuple[str, ...] = TEXT_FLAGS + IMAGE_FLAGS + POST_FLAGS):
    """The pack option flags given on the command line, by dest name."""
    return [f for f in flags if getattr(args, f, None) is not None]


@dataclass
class Sections:
    """The manifest sections the flags make, and the asset files they bring."""

    task: str
    preprocessing: dict[str, Any] | None
    postprocessing: dict[str, Any] | None
    assets: dict[str, tuple[str, str]] = field(default_factory=dict)  # path -> (file, role)


def pack_sections(
    args: argparse.Namespace,
    inputs: list[str],
    outputs: list[str],
    current: Sections,
) -> Sections:
    """`current` (the source's sections) with the given flags applied; refuses a mix of text
    and image flags, and image flags without a size for a source with no image preprocessing."""
    text, image = given(args, TEXT_FLAGS), given(args, IMAGE_FLAGS)
    if text and image:
        raise InputError(
            f"give either text ({_flags(text)}) or image ({_flags(image)}) preprocessing, not both"
        )
    result = Sections(current.task, current.preprocessing, current.postprocessing, {})
    pre = current.preprocessing or {}
    if text:
        result.preprocessing = _text(args, inputs, pre if pre.get("kind") == "text" else None)
        result.assets = _text_assets(args)
        if result.task in ("other", None):
            result.task = "text-classification"
    elif image:
        result.preprocessing = _image(args, inputs, pre if pre.get("kind") == "image" else None)
        if result.task in ("other", None):
            result.task = "image-classification"
    if given(args, POST_FLAGS):
        post = dict(current.postprocessing or {"output_name": outputs[0], "softmax": False})
        if args.output_name is not None:
            post["output_name"] = args.output_name
        if args.softmax is not None:
            post["softmax"] = args.softmax
        if args.labels is not None:
            post["labels"] = read_labels(args.labels)
        result.postprocessing = post
    return result


def _text(args: argparse.Namespace, inputs: list[str], base: dict | None) -> dict[str, Any]:
    if base is None and args.vocab is None:
        raise InputError(
            "text preprocessing needs --vocab (the tokenizer's vocab.txt): this source has none"
        )
    pre = dict(base) if base else {
        "kind": "text",
        "tokenizer": "wordpiece",
        "vocab_file": "vocab.txt",
        "lowercase": True,
        "strip_accents": None,
        "max_length": 128,
        "padding": "max_length",
        "truncation": True,
        "input_names": {role: role for role in TEXT_ROLES if role in inputs},
    }  # fmt: skip
    if args.vocab is not None:
        pre["vocab_file"] = "vocab.txt"
    if args.max_length is not None:
        pre["max_length"] = args.max_length
    if args.cased is not None:
        pre["lowercase"] = not args.cased
    if args.padding is not None:
        pre["padding"] = args.padding
    if args.tokenizer_json is not None:
        pre["tokenizer_file"] = "tokenizer.json"
    return pre


def _text_assets(args: argparse.Namespace) -> dict[str, tuple[str, str]]:
    assets = {}
    for path, name, role in ((args.vocab, "vocab.txt", "vocab"),
                             (args.tokenizer_json, "tokenizer.json", "tokenizer")):  # fmt: skip
        if path is not None:
            if not Path(path).is_file():
                raise InputError(f"no file {path}: expected the tokenizer's {name}")
            assets[name] = (path, role)
    return assets


def _image(args: argparse.Namespace, inputs: list[str], base: dict | None) -> dict[str, Any]:
    if base is None and args.image_size is None:
        raise InputError(
            "image preprocessing needs --image-size H W: this source has none to change"
        )
    new = base is None
    pre = dict(base or {"kind": "image", "input_name": inputs[0], **IMAGE_DEFAULTS})
    for flag in ("layout", "color", "scale", "mean", "std"):
        if getattr(args, flag) is not None:
            pre[flag] = getattr(args, flag)
    if args.image_size is not None:
        pre["size"] = list(args.image_size)
    if args.pixel_range is not None:
        low, high = args.pixel_range
        if not low < high:
            raise InputError(f"--pixel-range {low:g} {high:g}: LOW must be below HIGH")
        if args.scale is None and abs(pre["scale"] * 255 - 1) < 1e-9 and [low, high] != EIGHT_BIT:
            raise InputError(
                f"--pixel-range {low:g} {high:g} without --scale: say what the pixels are "
                f"multiplied by (--scale 1 feeds them as they are; --scale {1 / high:.4g} maps "
                f"{high:g} to 1), since the scale 1/255 is for 0..255 images"
            )
        pre["pixel_range"] = [_number(low), _number(high)]
    elif new:
        pre["pixel_range"] = EIGHT_BIT  # the default: 8-bit images, whatever the scale
    return pre


def change_pack(
    args: argparse.Namespace,
    source: str | Path,
    dest: str | Path,
    *,
    name: str | None = None,
    task: str | None = None,
    origin: str | None = None,
    recipe_output: str | None = None,
) -> tuple[PackManifest, list[str]]:
    """The pack option flags in `args` applied to the pack at `source`, written to `dest`
    (which may be `source`); `pack`, `quantize` and `compress` all change packs this way."""
    current = read_manifest(source)
    model = current.models[0]
    sections = pack_sections(
        args,
        [t.name for t in model.inputs],
        [t.name for t in model.outputs],
        Sections(current.task, current.preprocessing, current.postprocessing),
    )
    task = task or sections.task

    def changed(new, old):
        return KEEP if new == old else new

    changes = PackChanges(
        name=changed(name or current.name, current.name),
        task=changed(task, current.task),
        preprocessing=changed(sections.preprocessing, current.preprocessing),
        postprocessing=changed(sections.postprocessing, current.postprocessing),
        assets=sections.assets,
        origin=origin,
    )
    recipe = current.provenance.get("recipe")
    if recipe_output is not None and isinstance(recipe, dict):  # written to a scratch folder
        changes.provenance = {**current.provenance, "recipe": {**recipe, "output": recipe_output}}
    return repack(source, dest, changes), changes.changed()


def run_recipe_with_pack_options(
    recipe: Any, args: argparse.Namespace, progress: bool, **options: Any
) -> PackManifest | None:
    """run_recipe, then the pack option flags applied to what it wrote (quantize, compress):
    the recipe writes into a scratch folder and only the changed pack reaches recipe.output, so
    a refused option leaves nothing half-made there. --max-length also sets the evaluation's.
    options: run_recipe's others (report=...). None on a torchrun rank that writes nothing."""
    from edgepack.compress.errors import QuantizationError
    from edgepack.compress.recipe import run_recipe  # workstation only
    from edgepack.packing import scratch_dir

    if not given(args):
        return run_recipe(recipe, progress=progress, **options)
    if args.max_length is not None:
        recipe.data["max_length"] = args.max_length  # evaluated as the pack will tokenize
    output = recipe.output
    with scratch_dir("edgepack-options-") as tmp:
        recipe.output = str(Path(tmp) / Path(output).name)
        written = recipe.output
        try:
            manifest = run_recipe(recipe, progress=progress, **options)
        except QuantizationError:  # the pack was still written, with the last good models
            _finish(args, written, output, recipe.name)
            raise
        finally:
            recipe.output = output
        if manifest is None:
            return None
        return _finish(args, written, output, recipe.name)


def _finish(args: argparse.Namespace, written: str, output: str, name: str) -> PackManifest:
    return change_pack(args, written, output, name=name, origin="recipe", recipe_output=output)[0]


def describe_image_input(pre: dict[str, Any] | None) -> str | None:
    """What `run --image` takes for this pack, in one line (for `info`)."""
    if not pre or pre.get("kind") != "image":
        return None
    height, width = pre["size"]
    low_high = pre.get("pixel_range")
    if low_high is None and abs(float(pre["scale"]) * 255 - 1) < 1e-6:
        low_high = EIGHT_BIT
    if low_high is None:
        values = "pixel values of any range (the pack records none)"
    else:
        low, high = low_high
        scaled = f"{low * pre['scale']:.4g}..{high * pre['scale']:.4g}"
        values = f"pixel values in {low:g}..{high:g} (scaled by {pre['scale']:.4g} to {scaled})"
    channels = "grayscale (RGB is converted)" if pre["color"] == "grayscale" else "RGB"
    return (
        f"--image takes an image file (PNG, JPEG, ..., via Pillow) or a .npy array, HxW or "
        f"HxWxC (channels last), uint8 or float, {values}, {channels}; resized to "
        f"{height}x{width} and fed as {pre['layout']} float32 to {pre['input_name']!r}"
    )


def read_labels(value: str) -> list[str]:
    """A labels file (one a line) or a comma-separated list; one name alone is a file's."""
    path = Path(value)
    if path.is_file():
        try:
            text = path.read_text("utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"--labels {value}: cannot read it as UTF-8 text ({exc})") from exc
        return [line.strip() for line in text.splitlines() if line.strip()]
    if "," not in value:
        raise InputError(
            f"--labels {value}: no such file; give a labels file (one per line) or a "
            "comma-separated list such as cat,dog"
        )
    return [label.strip() for label in value.split(",")]


def _flags(dests: list[str]) -> str:
    return ", ".join("--" + d.replace("_", "-") for d in dests)


def _number(value: float) -> int | float:
    return int(value) if float(value).is_integer() else value
