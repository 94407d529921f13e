"""Image preprocessing with numpy alone: resize, colour, scale, normalise, layout."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import PixelRangeWarning, PreprocessingError


class ImagePreprocessor:
    """Callable turning a list of images (arrays HxW / HxWxC, or file paths) into model input."""

    def __init__(self, config: dict[str, Any]):
        self.input_name = config["input_name"]
        self.height, self.width = config["size"]
        self.layout = config["layout"]
        self.channels = 3 if config["color"] == "rgb" else 1
        self.scale = float(config["scale"])
        self.mean = np.asarray(config["mean"], np.float32)
        self.std = np.asarray(config["std"], np.float32)
        self.pixel_range = pixel_range_of(config)
        if self.mean.size not in (1, self.channels) or self.std.size not in (1, self.channels):
            raise PreprocessingError(
                f"image mean/std need 1 or {self.channels} values, got {self.mean.size} and "
                f"{self.std.size}"
            )

    def __call__(self, images: list[Any]) -> dict[str, np.ndarray]:
        batch = np.stack([self._one(image) for image in images])
        if self.layout == "NCHW":
            batch = batch.transpose(0, 3, 1, 2)
        return {self.input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    def _one(self, image: Any) -> np.ndarray:
        array = _read_image(image) if isinstance(image, (str, Path)) else np.asarray(image)
        if array.ndim == 2:
            array = array[:, :, None]
        if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
            raise PreprocessingError(
                f"an image must be HxW or HxWxC with C in 1, 3, 4; got shape {array.shape}"
            )
        if array.shape[0] * array.shape[1] > 1 << 26:  # resized in float32: bound the memory
            raise PreprocessingError(f"an image of shape {array.shape} is over 64 megapixels")
        if array.dtype.kind not in "uif":
            raise PreprocessingError(f"image pixels must be numbers, got dtype {array.dtype}")
        check_pixel_range(array, self.pixel_range, self.scale)
        array = array[:, :, :3].astype(np.float32)
        if self.channels == 1 and array.shape[2] == 3:
            array = array @ np.array([[0.299], [0.587], [0.114]], np.float32)  # ITU-R 601 luma
        elif self.channels == 3 and array.shape[2] == 1:
            array = np.repeat(array, 3, axis=2)
        if array.shape[:2] != (self.height, self.width):
            array = resize_bilinear(array, self.height, self.width)
        return (array * self.scale - self.mean) / self.std


def pixel_range_of(config: dict[str, Any]) -> tuple[float, float] | None:
    """The raw pixel values the pack takes (`pixel_range`, schema 1.2); before it, 0..255 for a
    pack scaling by 1/255, else unknown: nothing is checked."""
    if "pixel_range" not in config:
        return (0.0, 255.0) if abs(float(config["scale"]) * 255 - 1) < 1e-6 else None
    low, high = map(float, config["pixel_range"])
    if not low < high:
        raise PreprocessingError(f"image pixel_range must be [low, high], low < high: {low, high}")
    return low, high


def check_pixel_range(image: np.ndarray, pixels: tuple[float, float] | None, scale: float) -> None:
    """Refuse values outside the pack's pixel range; warn when a float image fills only its
    bottom eighth. Both mean another unit than the model was trained on (sklearn's 0..16 digits
    given to a 0..255 pack), which would otherwise give confident, wrong answers."""
    if pixels is None or image.size == 0:
        return
    (low, high), seen = pixels, (float(np.nanmin(image)), float(np.nanmax(image)))
    span = f"image pixel values span {seen[0]:g}..{seen[1]:g} ({image.dtype})"
    took = f"this pack takes pixels in {low:g}..{high:g} (scaled by {scale:.4g} for the model)"
    if seen[0] < low - 1e-6 * (high - low) or seen[1] > high + 1e-6 * (high - low):
        raise PreprocessingError(
            f"{span}, outside the range the model was trained on: {took}; convert the image, "
            "or repack with `edgepack pack PACK --pixel-range LOW HIGH --scale S -o NEW`"
        )
    if image.dtype.kind == "f" and low < seen[1] <= low + (high - low) / 8:
        message = f"{span}, a small part of the range the model was trained on: {took}; is the "
        warnings.warn(message + "image in another unit (0..1, 0..16)?", PixelRangeWarning, 2)


def resize_bilinear(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of an HxWxC float array, sampling pixel centres (half-pixel offsets)."""
    in_h, in_w = image.shape[:2]
    ys = np.clip((np.arange(height) + 0.5) * in_h / height - 0.5, 0, in_h - 1)
    xs = np.clip((np.arange(width) + 0.5) * in_w / width - 0.5, 0, in_w - 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, in_h - 1), np.minimum(x0 + 1, in_w - 1)
    wy, wx = (ys - y0)[:, None, None], (xs - x0)[None, :, None]
    top = image[y0][:, x0] * (1 - wx) + image[y0][:, x1] * wx
    bottom = image[y1][:, x0] * (1 - wx) + image[y1][:, x1] * wx
    return top * (1 - wy) + bottom * wy


def _read_image(path: str | Path) -> np.ndarray:
    path = Path(path)
    if path.suffix == ".npy":
        return np.load(path)
    try:
        from PIL import Image
    except ImportError as exc:
        raise PreprocessingError(
            f"reading {path.name} needs Pillow (pip install pillow); or pass .npy or an array"
        ) from exc
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except OSError as exc:
        raise PreprocessingError(f"cannot read image {path}: {exc}") from exc
