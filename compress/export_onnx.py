"""Exports a PyTorch module or a Hugging Face model folder to ONNX, checked against PyTorch.

The check runs the exported file through edgepack.runtime, as a device would, on given inputs.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from edgepack.compress.errors import ExportError
from edgepack.runtime.errors import InputError

from .data import ArrayDataset, match_inputs
from .evaluate import open_model

PathLike = str | os.PathLike[str]
Task = Literal["text-classification", "image-classification"]

# The TorchScript exporter (dynamo=False): on torch 2.13 it exports a small CNN in 0.1 s and a
# 2-layer BERT in 0.3 s (dynamo: 3 s and 5 s), honours opset 17 (dynamo fails to down-convert
# and falls back to 18), and names nodes by module path ("/bert/encoder/layer.0/.../MatMul"),
# which is what the quantization report shows for nodes kept in float.
_DYNAMO = False
_HF_AUTO_CLASSES = {
    "text-classification": "AutoModelForSequenceClassification",
    "image-classification": "AutoModelForImageClassification",
}
_SAMPLE_TEXTS = (
    "a gripping, beautifully acted film.",
    "the plot never comes together and the jokes fall flat.",
    "an ordinary story told with real warmth",
    "I would not watch it again.",
)


@dataclass(frozen=True)
class ExportCheck:
    """Exported model vs PyTorch on the same inputs: worst absolute difference over all outputs
    and how often the first output's argmax agrees (percent)."""

    max_abs_diff: float
    argmax_agreement: float
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "export", **asdict(self)}


@dataclass(frozen=True)
class ExportResult:
    """The ONNX file, its check against PyTorch, and files written next to it (tokenizer...)."""

    path: Path
    check: ExportCheck
    files: tuple[Path, ...] = ()


def export_onnx(
    module: torch.nn.Module,
    example_inputs: Mapping[str, torch.Tensor],
    path: PathLike,
    *,
    dynamic_axes: Mapping[str, Mapping[int, str]] | None = None,
    output_names: Sequence[str] | None = None,
    opset: int = 17,
    check_inputs: Mapping[str, torch.Tensor] | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> ExportResult:
    """Export `module` called as module(**example_inputs), then check it on check_inputs.

    dynamic_axes: per input/output name, axis -> dim name; default: axis 0 ("batch") of every
    input and output. output_names: default "logits" for one output, else output_0, output_1...
    check_inputs: default example_inputs; use a different batch size to exercise dynamic axes.
    Raises ExportError naming the op and the module that has no ONNX conversion, or when the
    exported outputs differ from PyTorch beyond atol + rtol * |expected|.

    >>> export_onnx(model, {"input_ids": ids, "attention_mask": mask}, "bert.onnx",
    ...     dynamic_axes={n: {0: "batch", 1: "sequence"} for n in ("input_ids",
    ...     "attention_mask")})  # doctest: +SKIP
    """
    path = Path(path)
    module = module.eval()
    example_inputs = _in_signature_order(module, example_inputs)
    with torch.no_grad():
        count = len(_flatten(_call(module, example_inputs)))
    default_names = ["logits"] if count == 1 else [f"output_{i}" for i in range(count)]
    names = list(output_names or default_names)
    if dynamic_axes is None:
        dynamic_axes = {name: {0: "batch"} for name in [*example_inputs, *names]}
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
            warnings.filterwarnings("ignore", message="The feature will be removed")
            args, kwargs = _arguments(module, example_inputs)
            torch.onnx.export(
                module,
                args,
                str(path),
                kwargs=kwargs,
                input_names=list(example_inputs),
                output_names=names,
                dynamic_axes={k: dict(v) for k, v in dynamic_axes.items()},
                opset_version=opset,
                dynamo=_DYNAMO,
            )
    except Exception as exc:
        path.unlink(missing_ok=True)
        raise _export_error(exc, module, example_inputs, opset) from exc

    def run_torch(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            outputs = _call(module, {k: torch.from_numpy(v) for k, v in feeds.items()})
        return [t.detach().cpu().numpy() for t in _flatten(outputs)]

    feeds = {k: v.detach().cpu().numpy() for k, v in (check_inputs or example_inputs).items()}
    return ExportResult(path, _check_export(path, run_torch, feeds, atol, rtol))


def export_hf(
    model_dir: PathLike,
    out_dir: PathLike,
    task: Task = "text-classification",
    *,
    opset: int | None = None,
    check_inputs: Sequence[Any] | Mapping[str, np.ndarray] | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
) -> ExportResult:
    """Export a Hugging Face model folder with Optimum into out_dir/model.onnx, then check it.

    Batch and sequence (or image size) axes are dynamic. The tokenizer or image processor and
    config are written next to the model, for the pack. check_inputs: texts or images (run
    through the saved tokenizer / processor) or ready arrays; default a few sample texts or
    random images. opset: None lets Optimum pick the model's recommended one.
    """
    from optimum.exporters.onnx import onnx_export_from_model

    if task not in _HF_AUTO_CLASSES:
        raise InputError(f"unsupported task {task!r}; expected one of {list(_HF_AUTO_CLASSES)}")
    model_dir, out_dir = Path(model_dir), Path(out_dir)
    if not (model_dir / "config.json").is_file():
        raise InputError(f"{model_dir} is not a Hugging Face model folder (no config.json)")
    torch_model = load_hf(model_dir, task)
    with tempfile.TemporaryDirectory(prefix="edgepack-export-") as tmp:
        try:
            # Exporting the instance we check against matters: loading the folder twice gives a
            # base model (e.g. MiniLM) two different random classifier heads. Validation is ours.
            onnx_export_from_model(torch_model, tmp, task=task, opset=opset, do_validation=False)
        except Exception as exc:
            sample = _hf_inputs(model_dir, task, check_inputs)
            tensors = {k: torch.from_numpy(v) for k, v in sample.items()}
            raise _export_error(exc, torch_model, tensors, opset) from exc
        out_dir.mkdir(parents=True, exist_ok=True)
        files = []
        for item in sorted(Path(tmp).iterdir()):
            target = out_dir / item.name
            shutil.copyfile(item, target)
            files.append(target)
    model_path = out_dir / "model.onnx"

    def run_torch(feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        with torch.no_grad():
            outputs = torch_model(**{k: torch.from_numpy(v) for k, v in feeds.items()})
        return [outputs.logits.detach().cpu().numpy()]

    feeds = _hf_inputs(out_dir, task, check_inputs)
    check = _check_export(model_path, run_torch, feeds, atol, rtol)
    return ExportResult(model_path, check, tuple(f for f in files if f != model_path))


def _check_export(
    path: Path,
    run_torch: Callable[[dict[str, np.ndarray]], list[np.ndarray]],
    feeds: dict[str, np.ndarray],
    atol: float,
    rtol: float,
) -> ExportCheck:
    """Run the exported file through the runtime and PyTorch on the same feeds and compare."""
    runner = open_model(path)
    feeds = match_inputs(ArrayDataset(feeds), runner.entry.inputs, "check inputs").inputs
    exported = list(runner.run(feeds).values())
    expected = run_torch(feeds)
    if len(exported) != len(expected):
        raise ExportError(
            f"{path.name} has {len(exported)} outputs but PyTorch returned {len(expected)}"
        )
    worst = 0.0
    for index, (got, want) in enumerate(zip(exported, expected, strict=True)):
        if got.shape != want.shape:
            raise ExportError(
                f"output {index} of {path.name} has shape {got.shape}; PyTorch gives {want.shape}"
            )
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
        worst = max(worst, float(diff.max(initial=0.0)))
        if not np.all(diff <= atol + rtol * np.abs(want)):
            raise ExportError(
                f"the exported {path.name} differs from PyTorch on output {index}: max abs diff "
                f"{float(diff.max()):.3g} (allowed {atol} + {rtol} x |expected|). The export "
                "traced a different computation; look for data-dependent Python control flow"
            )
    first_got, first_want = exported[0], expected[0]
    agreement = 100.0 * float(np.mean(first_got.argmax(-1) == first_want.argmax(-1)))
    samples = len(first_want) if first_want.ndim else 1
    return ExportCheck(worst, agreement, samples)


def _export_error(
    exc: Exception, module: torch.nn.Module, inputs: Mapping[str, torch.Tensor], opset: int | None
) -> ExportError:
    """An ExportError naming the unsupported op and the module that calls it, when found."""
    match = re.search(r"([A-Za-z_]\w*::[\w.]*\w)", str(exc))
    model = type(module).__name__
    if match is None:
        return ExportError(f"could not export {model} to ONNX: {type(exc).__name__}: {exc}")
    op = match.group(1)
    where = _module_calling(module, inputs, op)
    if where is None:
        place = "(the calling module could not be determined)"
    else:
        name, cls = where
        place = f"in module '{name}' ({cls})" if name else f"in {cls}.forward itself"
    return ExportError(
        f"could not export {model} to ONNX: operator {op} {place} has no ONNX conversion at "
        f"opset {opset or 'default'}. Rewrite that call with supported ops, try another opset, "
        f"or register a conversion (torch.onnx.register_custom_op_symbolic). Exporter said: {exc}"
    )


def _module_calling(
    module: torch.nn.Module, inputs: Mapping[str, torch.Tensor], op: str
) -> tuple[str, str] | None:
    """(qualified name, class) of the innermost module whose forward first dispatches `op`."""
    from torch.utils._python_dispatch import TorchDispatchMode

    wanted = _op_key(op)
    stack: list[tuple[str, str]] = []
    found: list[tuple[str, str]] = []

    class Spy(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if not found and _op_key(func._schema.name) == wanted:
                found.append(stack[-1])
            return func(*args, **(kwargs or {}))

    def enter(sub: torch.nn.Module, args: Any) -> None:
        stack.append((names[sub], type(sub).__name__))

    def leave(sub: torch.nn.Module, args: Any, output: Any) -> None:
        stack.pop()  # returning anything here would replace the module's output

    names = {sub: name for name, sub in module.named_modules()}
    handles = []
    for sub in names:
        handles += [sub.register_forward_pre_hook(enter), sub.register_forward_hook(leave)]
    try:
        # Only locating: a failure here is beside the point; the export error gets reported.
        with contextlib.suppress(Exception), torch.no_grad(), Spy():
            _call(module, inputs)
    finally:
        for handle in handles:
            handle.remove()
    return found[0] if found else None


def _op_key(name: str) -> str:
    # Composite ops reach the dispatcher as their implementation: aten::linalg_svd runs as
    # aten::_linalg_svd, so leading underscores and the overload do not count.
    name = name.split(".")[0]
    namespace, _, op = name.rpartition("::")
    return f"{'' if namespace == 'aten' else namespace}::{op.lstrip('_')}"


def _arguments(
    module: torch.nn.Module, inputs: Mapping[str, torch.Tensor]
) -> tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
    """Pass inputs by keyword when forward() has parameters of those names, else in order.

    nn.Sequential and many plain modules take forward(x), whatever the input is called.
    """
    parameters = inspect.signature(module.forward).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    if takes_any or all(name in parameters for name in inputs):
        return (), dict(inputs)
    return tuple(inputs.values()), {}


def _in_signature_order(
    module: torch.nn.Module, inputs: Mapping[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Keyword inputs in forward()'s parameter order: the exporter lays the graph's inputs out in
    that order and input_names name them by position, so a tokenizer's order (input_ids,
    token_type_ids, attention_mask) would name BERT's attention mask 'token_type_ids'."""
    args, kwargs = _arguments(module, inputs)
    if args:
        return dict(inputs)
    order = list(inspect.signature(module.forward).parameters)
    return dict(
        sorted(kwargs.items(), key=lambda kv: order.index(kv[0]) if kv[0] in order else len(order))
    )


def _call(module: torch.nn.Module, inputs: Mapping[str, torch.Tensor]) -> Any:
    args, kwargs = _arguments(module, inputs)
    return module(*args, **kwargs)


def _flatten(outputs: Any) -> list[torch.Tensor]:
    """Tensors in the order the exporter lays them out: tensor, tuple/list, or dict/ModelOutput."""
    if isinstance(outputs, torch.Tensor):
        return [outputs]
    if isinstance(outputs, Mapping):
        outputs = list(outputs.values())
    flat: list[torch.Tensor] = []
    for item in outputs:
        flat.extend(_flatten(item))
    return flat


class UntrainedHeadError(InputError):
    """The folder holds a base model: its task head would be freshly initialised at random."""


def load_hf(model_dir: PathLike, task: str) -> torch.nn.Module:
    """The PyTorch model of a Hugging Face folder for `task`, in eval mode.

    Raises UntrainedHeadError when the folder has no weights for the task's head (a base
    checkpoint such as MiniLM): transformers would initialise one at random and only log it,
    and every pack made from it would answer at chance."""
    import transformers

    if task not in _HF_AUTO_CLASSES:
        raise InputError(
            f"task {task!r} has no Hugging Face model class; a Hugging Face folder needs its "
            f"task, one of {list(_HF_AUTO_CLASSES)} (e.g. --task text-classification)"
        )
    auto = getattr(transformers, _HF_AUTO_CLASSES[task])
    model, info = auto.from_pretrained(str(model_dir), output_loading_info=True)
    untrained = sorted(
        {*info.get("missing_keys", ()), *(k for k, *_ in info.get("mismatched_keys", ()))}
    )
    if untrained:
        shown = ", ".join(untrained[:4]) + (
            f" and {len(untrained) - 4} more" if len(untrained) > 4 else ""
        )
        what_to_do = (
            f"Fine-tune it first: edgepack finetune {model_dir} --train train.tsv --eval dev.tsv "
            f"-o {Path(model_dir).name}-finetuned"
            if task == "text-classification"
            else "Fine-tune it on labelled images first, and export the fine-tuned folder"
        )
        raise UntrainedHeadError(
            f"{model_dir} has no trained weights for {shown}: transformers would initialise "
            f"them at random, so a {task} pack made from it answers at chance. {what_to_do}"
        )
    return model.eval()


def _hf_inputs(
    folder: Path, task: str, given: Sequence[Any] | Mapping[str, np.ndarray] | None
) -> dict[str, np.ndarray]:
    """Model inputs for the check: given arrays, or texts / images through the saved processor."""
    if isinstance(given, Mapping):
        return {k: np.asarray(v) for k, v in given.items()}
    if task == "text-classification":
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(str(folder))
        texts = list(given or _SAMPLE_TEXTS)
        encoded = tokenizer(texts, padding=True, truncation=True, return_tensors="np")
        return {k: np.asarray(v, np.int64) for k, v in encoded.items()}
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(str(folder))
    if given is None:
        size = _image_size(folder)
        rng = np.random.default_rng(0)
        given = [rng.integers(0, 256, (*size, 3), dtype=np.uint8) for _ in range(2)]
    pixels = processor(images=list(given), return_tensors="np")["pixel_values"]
    return {"pixel_values": np.asarray(pixels, np.float32)}


def _image_size(folder: Path) -> tuple[int, int]:
    config = json.loads((folder / "preprocessor_config.json").read_text())
    size = config.get("size", 224)
    if isinstance(size, dict):
        side = size.get("shortest_edge")
        return (side, side) if side else (size["height"], size["width"])
    return (size, size)
