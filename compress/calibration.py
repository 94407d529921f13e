"""Calibration data for static quantization: onnxruntime's reader protocol over checked batches."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from onnxruntime.quantization import CalibrationDataReader
from tqdm import tqdm

from edgepack.runtime.errors import InputError

from .data import ArrayDataset, match_inputs

Feeds = dict[str, np.ndarray]
CalibrationSource = (
    ArrayDataset | Mapping[str, np.ndarray] | Iterable[Mapping[str, np.ndarray]] | Any
)


class FeedReader(CalibrationDataReader):
    """Hands prepared input batches to an onnxruntime calibrator, one per get_next()."""

    def __init__(self, feeds: Sequence[Feeds], progress: bool = True, desc: str = "calibrate"):
        self.feeds = list(feeds)
        self.progress = progress
        self.desc = desc
        self.rewind()

    def get_next(self) -> Feeds | None:
        if self._bar is None:  # opened on first use so an unused reader prints nothing
            self._bar = tqdm(total=len(self.feeds), desc=self.desc, disable=not self.progress)
        if self._position == len(self.feeds):
            self._bar.close()
            return None
        self._bar.update(1)
        self._position += 1
        return self.feeds[self._position - 1]

    def rewind(self) -> None:
        self._position = 0
        self._bar: tqdm | None = None

    def __len__(self) -> int:
        return len(self.feeds)


def calibration_feeds(
    source: CalibrationSource,
    specs: Sequence[Any],
    *,
    max_samples: int = 128,
    batch_size: int = 16,
) -> list[Feeds]:
    """Checked calibration batches for a model with input `specs` (runtime TensorSpecs).

    source: an ArrayDataset or mapping of named arrays (samples on axis 0 unless its
    sample_axes say otherwise, rank-0 arrays constant; `max_samples` of them are taken evenly
    across the set, because files are often sorted by class), or any iterable of feed dicts,
    or an onnxruntime CalibrationDataReader. Wrong names, dtypes or shapes raise
    InputError here, before any calibration run.
    """
    fixed = specs[0].shape[0] if specs else None
    if isinstance(fixed, int) and fixed > 0:
        batch_size = fixed  # the model takes exactly this many samples per run
    if isinstance(source, ArrayDataset | Mapping):
        data = source if isinstance(source, ArrayDataset) else ArrayDataset(dict(source))
        data = match_inputs(data, specs, "calibration data")
        if len(data) > max_samples:
            data = data.subset(np.unique(np.linspace(0, len(data) - 1, max_samples).astype(int)))
        return list(data.batches(batch_size))
    feeds: list[Feeds] = []
    seen = 0
    for number, feed in enumerate(_iterate(source)):
        if not isinstance(feed, Mapping):
            raise InputError(
                f"calibration item {number} is a {type(feed).__name__}; expected a dict of "
                "input name -> array"
            )
        try:
            checked = match_inputs(ArrayDataset(dict(feed)), specs, f"calibration item {number}")
        except InputError as exc:
            if "disagree on the number of samples" not in str(exc):
                raise
            # One feed batched on different axes (a state batched on axis 1): taken as it is.
            feeds.append(dict(feed))
            seen += 1
            continue
        feeds.append(checked.inputs)
        seen += len(checked)
        if seen >= max_samples:
            break
    if not feeds:
        raise InputError("the calibration data is empty; expected at least one sample")
    return feeds


def _iterate(source: Any) -> Iterable[Any]:
    if hasattr(source, "get_next"):  # onnxruntime's protocol: get_next() until None
        return iter(source.get_next, None)
    return source
