"""Evaluation and calibration data: labelled text, .npz arrays, image folders, sklearn datasets.

Every loader returns model-ready arrays (`ArrayDataset`) or raw texts (`TextDataset`) to tokenize.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.runtime.errors import InputError

PathLike = str | os.PathLike[str]
Classes = Sequence[str] | int | None

_TEXT_COLUMNS = ("text", "sentence", "sentence1", "review", "content")
_LABEL_COLUMNS = ("label", "labels", "target", "class", "y")
_NPZ_LABEL_KEYS = ("labels", "label", "y", "targets")
# In an .npz, a 0-d string array holding JSON {input: sample axis or null}; see ArrayDataset.
SAMPLE_AXES_KEY = "_sample_axes"
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


@dataclass(frozen=True)
class ArrayDataset:
    """Named input arrays sharing a number of samples, with optional integer labels.

    Samples lie on axis 0 unless `sample_axes` says otherwise: {"state": 1} for a state tensor
    [2, batch, 128] batched on axis 1, {"sr": None} for an input that does not vary (the same
    array in every batch). A rank-0 array (a scalar sample rate) is such a constant.
    """

    inputs: dict[str, np.ndarray]
    labels: np.ndarray | None = None
    classes: tuple[str, ...] = ()
    sample_axes: dict[str, int | None] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.inputs:
            raise InputError("a dataset needs at least one input array; got none")
        axes = {name: self.sample_axes.get(name, 0) for name in self.inputs}
        for name, array in self.inputs.items():
            if np.ndim(array) == 0:
                axes[name] = None
            elif axes[name] is not None and not 0 <= axes[name] < np.ndim(array):
                raise InputError(
                    f"input {name!r} has shape {np.shape(array)}; its sample axis "
                    f"{axes[name]} is not one of its axes"
                )
        object.__setattr__(self, "sample_axes", axes)
        lengths = {n: np.shape(a)[axes[n]] for n, a in self.inputs.items() if axes[n] is not None}
        if not lengths:
            raise InputError(
                "every input array is a constant; expected at least one with samples on an axis"
            )
        if len(set(lengths.values())) != 1:
            raise InputError(f"input arrays disagree on the number of samples: {lengths}")
        if next(iter(lengths.values())) == 0:
            raise InputError("the dataset is empty; expected at least one sample")
        if self.labels is not None:
            if self.labels.ndim != 1 or len(self.labels) != len(self):
                raise InputError(
                    f"labels have shape {self.labels.shape}; expected ({len(self)},), "
                    "one integer class index per sample"
                )
            if self.labels.dtype.kind not in "iu":
                raise InputError(f"labels have dtype {self.labels.dtype}; expected integers")
            _check_label_range(self.labels, len(self.classes) or None)

    def __len__(self) -> int:
        return next(
            np.shape(a)[self.sample_axes[n]]
            for n, a in self.inputs.items()
            if self.sample_axes[n] is not None
        )

    def _take(self, name: str, indices: Sequence[int] | np.ndarray | slice) -> np.ndarray:
        axis = self.sample_axes[name]
        array = self.inputs[name]
        if axis is None:
            return array
        if isinstance(indices, slice):
            where = [slice(None)] * array.ndim
            where[axis] = indices
            return array[tuple(where)]
        return np.take(array, np.asarray(indices), axis=axis)

    def subset(self, indices: Sequence[int] | np.ndarray | slice) -> ArrayDataset:
        """The samples at `indices`, as a new dataset."""
        labels = None if self.labels is None else self.labels[indices]
        inputs = {k: self._take(k, indices) for k in self.inputs}
        return ArrayDataset(inputs, labels, self.classes, dict(self.sample_axes))

    def batches(self, batch_size: int) -> Iterator[dict[str, np.ndarray]]:
        """Consecutive feed dicts of up to `batch_size` samples (constants in every one)."""
        for start in range(0, len(self), batch_size):
            yield {k: self._take(k, slice(start, start + batch_size)) for k in self.inputs}


@dataclass(frozen=True)
class TextDataset:
    """Raw texts with optional labels; `tokenize` turns them into an ArrayDataset."""

    texts: tuple[str, ...]
    labels: np.ndarray | None = None
    classes: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.texts:
            raise InputError("the text dataset is empty; expected at least one row")

    def __len__(self) -> int:
        return len(self.texts)

    def tokenize(self, tokenizer: Any, max_length: int = 128) -> ArrayDataset:
        """Encode with a Hugging Face tokenizer (object or folder), padded to the longest text.

        Padding to the longest text rather than to max_length keeps evaluation fast; every array
        is int64, which is what exported transformer models take.
        """
        if isinstance(tokenizer, str | os.PathLike):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
        encoded = tokenizer(
            list(self.texts),
            padding="longest",
            truncation=True,
            max_length=max_length,
            return_tensors="np",
        )
        inputs = {k: np.asarray(v, dtype=np.int64) for k, v in encoded.items()}
        return ArrayDataset(inputs, self.labels, self.classes)


def load_dataset(source: PathLike, **options: Any) -> ArrayDataset | TextDataset:
    """Load by kind: "sklearn:NAME", .csv/.tsv/.jsonl text, .npz arrays, or an image folder.

    Keyword options go to the matching loader (see load_text, load_npz, load_image_folder,
    load_sklearn).

    >>> load_dataset("sklearn:digits", sample_shape=(1, 8, 8)).inputs["input"].shape
    (1797, 1, 8, 8)
    """
    text = str(source)
    if text.startswith("sklearn:"):
        return load_sklearn(text.removeprefix("sklearn:"), **options)
    path = Path(source)
    if path.is_dir():
        return load_image_folder(path, **options)
    loader = _LOADERS.get(path.suffix.lower())
    if loader is None:
        raise InputError(
            f"cannot tell what kind of data {source} is; expected 'sklearn:NAME', a .csv, .tsv, "
            ".jsonl or .npz file, or a folder of images in class subfolders"
        )
    if not path.is_file():
        raise InputError(f"data file {path} does not exist")
    return loader(path, **options)


def load_text(
    path: PathLike,
    *,
    text_column: str | None = None,
    label_column: str | None = None,
    classes: Classes = None,
) -> TextDataset:
    """Texts and labels from CSV, TSV (by suffix) or JSONL, columns found by common names.

    Labels may be class indices or class names; names map to indices in `classes` order (sorted
    names when `classes` is not given). A text dataset without a label column is unlabelled.
    """
    path = Path(path)
    rows = _read_jsonl(path) if path.suffix.lower() == ".jsonl" else _read_table(path)
    if not rows:
        raise InputError(f"{path} has no data rows; expected a header and at least one row")
    columns = list(rows[0])
    text_column = text_column or _pick_column(columns, _TEXT_COLUMNS, "text", path)
    if text_column not in columns:
        raise InputError(f"{path} has no column {text_column!r}; its columns are {columns}")
    if label_column is None:
        label_column = next((c for c in _LABEL_COLUMNS if c in columns), None)
    elif label_column not in columns:
        raise InputError(f"{path} has no column {label_column!r}; its columns are {columns}")
    texts = tuple(str(row[text_column]) for row in rows)
    if label_column is None:
        return TextDataset(texts, None, _class_names(classes))
    labels, names = _encode_labels([row[label_column] for row in rows], classes, path)
    return TextDataset(texts, labels, names)


def load_npz(
    path: PathLike, *, label_key: str | None = None, classes: Classes = None
) -> ArrayDataset:
    """Arrays from an .npz file: each array is a model input, except the labels array.

    The labels array is `label_key`, or the first of labels/label/y/targets present.
    """
    with np.load(path, allow_pickle=False) as archive:
        arrays = {name: archive[name] for name in archive.files}
    axes = _sample_axes(arrays.pop(SAMPLE_AXES_KEY, None), path)
    if label_key is None:
        label_key = next((k for k in _NPZ_LABEL_KEYS if k in arrays), None)
    elif label_key not in arrays:
        raise InputError(f"{path} has no array {label_key!r}; it has {sorted(arrays)}")
    labels = arrays.pop(label_key) if label_key else None
    if not arrays:
        raise InputError(f"{path} holds only labels; expected at least one input array")
    if labels is not None:
        labels = _integer_labels(labels, path)
    return ArrayDataset(arrays, labels, _class_names(classes), axes)


def _sample_axes(meta: np.ndarray | None, path: PathLike) -> dict[str, int | None]:
    """The npz's `_sample_axes` entry: a JSON object {input: axis or null} as a 0-d string."""
    if meta is None:
        return {}
    try:
        axes = json.loads(str(meta))
    except json.JSONDecodeError as exc:
        raise InputError(f"{path}: {SAMPLE_AXES_KEY} is not JSON: {exc}") from None
    if not isinstance(axes, dict) or not all(
        v is None or (isinstance(v, int) and v >= 0) for v in axes.values()
    ):
        raise InputError(
            f"{path}: {SAMPLE_AXES_KEY} must map input names to a sample axis (an integer) or "
            f'null for a constant, e.g. {{"state": 1, "sr": null}}; got {axes!r}'
        )
    return axes


def load_image_folder(
    path: PathLike,
    *,
    size: tuple[int, int] = (224, 224),
    mean: Sequence[float] = (0.485, 0.456, 0.406),
    std: Sequence[float] = (0.229, 0.224, 0.225),
    input_name: str = "pixel_values",
    classes: Sequence[str] | None = None,
) -> ArrayDataset:
    """RGB images in `path/<class>/*.png` as float32 NCHW, resized and normalized.

    Class indices follow `classes` when given (the model's label order), else sorted folder names.
    """
    try:
        from PIL import Image
    except ImportError as exc:
        raise InputError("loading an image folder needs Pillow: pip install pillow") from exc
    root = Path(path)
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    names = tuple(classes) if classes is not None else tuple(p.name for p in folders)
    unknown = [p.name for p in folders if p.name not in names]
    if unknown:
        raise InputError(
            f"image folders {unknown} in {root} are not among the classes {list(names)}"
        )
    images, labels = [], []
    for folder in folders:
        for file in sorted(folder.iterdir()):
            if file.suffix.lower() not in _IMAGE_SUFFIXES:
                continue
            with Image.open(file) as image:
                rgb = image.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
            images.append(np.asarray(rgb, dtype=np.float32) / 255.0)
            labels.append(names.index(folder.name))
    if not images:
        raise InputError(
            f"no images found in class subfolders of {root}; expected e.g. {root}/cat/1.png"
        )
    pixels = (np.stack(images) - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)
    pixels = np.ascontiguousarray(pixels.transpose(0, 3, 1, 2), dtype=np.float32)
    return ArrayDataset({input_name: pixels}, np.asarray(labels, np.int64), names)


def _sklearn_loaders() -> dict[str, Callable[[], Any]]:
    from sklearn import datasets

    return {
        "digits": datasets.load_digits,
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
    }


def load_sklearn(
    name: str, *, input_name: str = "input", sample_shape: Sequence[int] | None = None
) -> ArrayDataset:
    """A classification dataset bundled with scikit-learn (no download), as float32 features.

    sample_shape reshapes each sample, e.g. (1, 8, 8) to feed digits to a CNN.
    """
    loaders = _sklearn_loaders()
    if name not in loaders:
        raise InputError(f"unknown scikit-learn dataset {name!r}; expected one of {list(loaders)}")
    bunch = loaders[name]()
    features = np.asarray(bunch.data, dtype=np.float32)
    if sample_shape is not None:
        features = features.reshape(len(features), *sample_shape)
    names = tuple(str(n) for n in bunch.target_names)
    return ArrayDataset({input_name: features}, np.asarray(bunch.target, np.int64), names)


_LOADERS: dict[str, Callable[..., ArrayDataset | TextDataset]] = {
    ".csv": load_text,
    ".tsv": load_text,
    ".jsonl": load_text,
    ".npz": load_npz,
}


def _read_table(path: Path) -> list[dict[str, str]]:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    with path.open(newline="", encoding="utf-8") as f:
        # SST-2 style TSVs contain bare quotes inside sentences, so quoting is off for TSV.
        quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
        return list(csv.DictReader(f, delimiter=delimiter, quoting=quoting))


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    with path.open(encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{number} is not valid JSON: {exc}") from exc
            if not isinstance(row, dict):
                raise InputError(f"{path}:{number} is not a JSON object; expected one per line")
            rows.append(row)
    return rows


def _pick_column(columns: list[str], candidates: Sequence[str], what: str, path: Path) -> str:
    found = next((c for c in candidates if c in columns), None)
    if found is None:
        raise InputError(
            f"{path} has no {what} column among {columns}; name it one of {list(candidates)} "
            f"or pass {what}_column="
        )
    return found


def _encode_labels(
    raw: list[Any], classes: Classes, path: Path
) -> tuple[np.ndarray, tuple[str, ...]]:
    values = [str(v).strip() for v in raw]
    if all(_is_int(v) for v in values):
        labels = np.asarray([int(v) for v in values], np.int64)
        names = _class_names(classes)
        _check_label_range(labels, len(names) if classes is not None else None, path)
        return labels, names
    names = tuple(sorted(set(values))) if classes is None else _class_names(classes)
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise InputError(f"{path} has labels {unknown} that are not among the classes {names}")
    return np.asarray([names.index(v) for v in values], np.int64), names


def _class_names(classes: Classes) -> tuple[str, ...]:
    if isinstance(classes, int):
        return tuple(str(i) for i in range(classes))
    if classes is not None:
        return tuple(str(c) for c in classes)
    return ()


def _integer_labels(labels: np.ndarray, path: PathLike) -> np.ndarray:
    if labels.dtype.kind in "iu":
        return labels.astype(np.int64)
    if labels.dtype.kind == "f" and np.all(labels == np.round(labels)):
        return labels.astype(np.int64)
    raise InputError(f"labels in {path} have dtype {labels.dtype}; expected class indices")


def _check_label_range(labels: np.ndarray, num_classes: int | None, source: Any = None) -> None:
    where = f" in {source}" if source is not None else ""
    if labels.size and labels.min() < 0:
        raise InputError(f"labels{where} include {int(labels.min())}; class indices start at 0")
    if num_classes is not None and labels.size and labels.max() >= num_classes:
        bad = sorted({int(v) for v in labels[labels >= num_classes]})[:5]
        raise InputError(
            f"labels{where} include {bad}, outside the {num_classes} classes (0..{num_classes - 1})"
        )


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def as_dataset(data: ArrayDataset | Mapping[str, np.ndarray]) -> ArrayDataset:
    """Accept a dataset or a plain mapping of named arrays (unlabelled)."""
    return data if isinstance(data, ArrayDataset) else ArrayDataset(dict(data))


def match_inputs(data: ArrayDataset, specs: Sequence[Any], what: str = "data") -> ArrayDataset:
    """Fit a dataset to a model's inputs (runtime TensorSpecs), or say exactly what is wrong.

    A single array feeds a single-input model whatever its name; arrays the model does not take
    (e.g. token_type_ids for DistilBERT) are dropped. Dtypes must match exactly and ranks and
    fixed dimensions must agree: this runs before calibration or evaluation starts.
    """
    wanted = [s.name for s in specs]
    inputs = dict(data.inputs)
    if len(specs) == 1 and len(inputs) == 1 and wanted[0] not in inputs:
        inputs = {wanted[0]: next(iter(inputs.values()))}
    missing = [n for n in wanted if n not in inputs]
    if missing:
        raise InputError(
            f"{what} has no array for model input(s) {missing}; it has {sorted(inputs)}, "
            f"the model takes {_describe(specs)}"
        )
    axes = {**data.sample_axes, **({wanted[0]: 0} if len(specs) == 1 and len(inputs) == 1 else {})}
    fixed = [d for s in specs if s.name == "attention_mask" for d in s.shape[1:2]]
    if "attention_mask" in inputs and fixed and isinstance(fixed[0], int) and fixed[0] > 0:
        inputs = pad_text(inputs, fixed[0])  # a text model with a fixed length (TFLite)
    for spec in specs:
        array = inputs[spec.name]
        expected = np.dtype(spec.user_dtype)
        if array.dtype.kind in "iu" and expected.kind in "iu" and array.dtype != expected:
            info = np.iinfo(expected)  # token ids int64 -> int32, as the runtime casts them
            if not array.size or (info.min <= array.min() and array.max() <= info.max):
                array = inputs[spec.name] = array.astype(expected)
        if array.dtype != expected:
            raise InputError(
                f"{what} input {spec.name!r} has dtype {array.dtype}; the model expects "
                f"{expected}. Convert it first, e.g. array.astype(np.{expected.name})"
            )
        sample_axis = axes.get(spec.name, 0) if array.ndim else None
        if array.ndim != len(spec.shape):
            where = "a constant" if sample_axis is None else f"samples on axis {sample_axis}"
            raise InputError(
                f"{what} input {spec.name!r} has shape {array.shape} (rank {array.ndim}); the "
                f"model expects rank {len(spec.shape)}: {spec.shape} ({where}; another sample "
                f"axis or a constant is stated in {SAMPLE_AXES_KEY})"
            )
        for axis, (size, want) in enumerate(zip(array.shape, spec.shape, strict=True)):
            # The sample axis may differ: a model with a fixed batch is fed in slices of it.
            if axis != sample_axis and isinstance(want, int) and want >= 0 and size != want:
                raise InputError(
                    f"{what} input {spec.name!r} has shape {array.shape}; the model expects "
                    f"{spec.shape} (axis {axis} must be {want})"
                )
    kept = {n: axes[n] for n in wanted if n in axes}
    return ArrayDataset({n: inputs[n] for n in wanted}, data.labels, data.classes, kept)


def pad_text(inputs: Mapping[str, np.ndarray], width: int) -> dict[str, np.ndarray]:
    """Token arrays (samples, length) padded on the right, with the values they already hold
    under attention_mask 0 (the tokenizer's [PAD]), or cut, to `width`: how the pack's encoder
    pads for a model with a fixed sequence length."""
    mask = inputs["attention_mask"]
    have = mask.shape[1]
    out = {}
    for name, value in inputs.items():
        if value.ndim < 2 or value.shape[1] != have:
            out[name] = value
        elif have >= width:
            out[name] = value[:, :width]
        else:
            under = value[mask == 0]
            fill = under.flat[0] if under.size else 0
            extra = [(0, 0), (0, width - have)] + [(0, 0)] * (value.ndim - 2)
            out[name] = np.pad(value, extra, constant_values=fill)
    return out


def _describe(specs: Sequence[Any]) -> str:
    return ", ".join(f"{s.name} {s.user_dtype}{list(s.shape)}" for s in specs)
